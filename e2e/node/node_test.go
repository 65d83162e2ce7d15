package node

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
	"github.com/sre-kit/alert-rollback/e2e/fixture"
	"github.com/sre-kit/alert-rollback/e2e/run"
)

// TestFunctionPod runs the function as a pod on the real node, from each of its images, with
// kservice.yaml's ServiceAccount, Role and RoleBinding applied unchanged and the token the
// kubelet mounts, and rolls back real workloads: one whose new revision cannot be scheduled
// (the seed's alert) and one whose new image crashes (CrashLoopBackOff). After the undo,
// revision 1's pods run again.
func TestFunctionPod(t *testing.T) {
	images := []struct {
		name, image string
	}{
		{"kservice", cluster.RollbackImage}, // ./cmd/rollback, as ko builds it
		{"func", cluster.FuncImage},         // func's scaffold around the root package
	}
	for _, img := range images {
		t.Run(img.name, func(t *testing.T) {
			ctx := context.Background()
			ns := "pod-" + img.name
			if err := kube.CreateNamespace(ctx, ns); err != nil {
				t.Fatal(err)
			}
			token := "node-token-" + img.name
			url := startFunctionPod(t, ns, img.image, token)

			t.Run("unschedulable", func(t *testing.T) {
				pod, rev1, err := run.BrokenDeployment(ctx, kube, ns, "checkout-api", func(c *corev1.Container) {
					c.Resources.Requests[corev1.ResourceCPU] = resource.MustParse("64")
				})
				if err != nil {
					t.Fatal(err)
				}
				labels := map[string]string{"alertname": "KubePodUnschedulable", "namespace": ns, "pod": pod, "severity": "rollback"}
				rollBack(t, ns, "checkout-api", url, token, labels, rev1)
			})
			t.Run("crashloop", func(t *testing.T) {
				pod, rev1, err := run.BrokenDeployment(ctx, kube, ns, "inventory-sync", func(c *corev1.Container) {
					c.Image = cluster.CrashImage
				})
				if err != nil {
					t.Fatal(err)
				}
				// As kube-state-metrics' kube_pod_container_status_waiting_reason reports it.
				labels := map[string]string{"alertname": "KubePodCrashLooping", "namespace": ns, "pod": pod,
					"container": "app", "reason": "CrashLoopBackOff", "severity": "rollback"}
				rollBack(t, ns, "inventory-sync", url, token, labels, rev1)
			})
		})
	}
}

// startFunctionPod applies kservice.yaml's RBAC objects and the token Secret in ns, runs
// the function's pod from image, and returns its URL (the pod's address, reachable inside
// the node's namespace only).
func startFunctionPod(t *testing.T, ns, image, token string) string {
	t.Helper()
	ctx := context.Background()
	if out, err := kube.Kubectl(ctx, "apply", "-n", ns, "-l", "app.kubernetes.io/component=rbac", "-f", "../../kservice.yaml"); err != nil {
		t.Fatalf("apply kservice.yaml's RBAC: %v: %s", err, out)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "alert-rollback-auth"}, StringData: map[string]string{"token": token}}
	if _, err := kube.Clientset.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod, err := run.FunctionPod("../../kservice.yaml", ns, "alert-rollback", image)
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if _, err := kube.Clientset.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if out, err := kube.Kubectl(ctx, "logs", "-n", ns, "alert-rollback"); err == nil {
				t.Logf("function's log:\n%s", out)
			}
		}
	})
	ready, err := run.WaitPodReady(ctx, kube.Clientset, ns, pod.Name)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("function pod %s (%s) Ready in %s at %s", pod.Name, image, time.Since(began).Round(time.Millisecond), ready.Status.PodIP)
	// The kubelet mounted the token: the pod's identity is kservice.yaml's ServiceAccount.
	if ready.Spec.ServiceAccountName != "alert-rollback" {
		t.Fatalf("pod runs as %q; want alert-rollback", ready.Spec.ServiceAccountName)
	}
	// Whichever runtime serves it, the function bounds its heap by the container's memory
	// limit (kservice.yaml's 128Mi), found in the cgroup the kubelet and runc made.
	limit := ready.Spec.Containers[0].Resources.Limits.Memory().Value()
	log, err := kube.Kubectl(ctx, "logs", "-n", ns, pod.Name)
	if err != nil {
		t.Fatalf("function's log: %v: %s", err, log)
	}
	want := fmt.Sprintf("GOMEMLIMIT=%d (90%% of %d bytes from the cgroup)", int64(float64(limit)*0.9), limit)
	if limit == 0 || !strings.Contains(log, want) {
		t.Fatalf("function's log does not say %q (limit %d):\n%s", want, limit, log)
	}
	return "http://" + net.JoinHostPort(ready.Status.PodIP, "8080") + "/"
}

// rollBack posts the alert to the function and checks the outcome on the cluster: the answer
// says rolled-back, the Event is on the Deployment, and only revision 1's pods run.
func rollBack(t *testing.T, ns, name, url, token string, labels map[string]string, rev1 *appsv1.ReplicaSet) {
	t.Helper()
	ctx := context.Background()
	body := run.Notification(run.AlertOf(labels, time.Now()))
	began := time.Now()
	status, resp, err := run.PostNotification(ctx, kube.HTTP, url, body, token)
	took := time.Since(began)
	if err != nil || status != http.StatusOK {
		t.Fatalf("POST the alert = %d %+v, %v; want 200", status, resp, err)
	}
	if action, err := run.OneAction(resp); err != nil || action != "rolled-back" {
		t.Fatalf("answer %+v (%v); want one rolled-back", resp, err)
	}
	t.Logf("answered rolled-back in %s", took.Round(time.Millisecond))
	if err := fixture.WaitDeploymentRevision(ctx, kube.Clientset, ns, name, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := fixture.WaitEvents(ctx, kube.Clientset, ns, "Deployment", name, "RolledBack", 1); err != nil {
		t.Fatal(err)
	}
	pods, err := run.WaitOnlyRevisionRunning(ctx, kube.Clientset, ns, name, rev1)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range pods {
		names = append(names, fmt.Sprintf("%s %s", p.Name, p.Status.Phase))
	}
	t.Logf("after the undo: %s", strings.Join(names, ", "))
}
