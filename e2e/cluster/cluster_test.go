package cluster_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
)

const (
	namespace = "shop"
	waitFor   = 60 * time.Second
)

// TestCluster checks on one control plane what the end-to-end tests rely on:
// rollouts with revisions, the scheduler's verdicts on a kubelet-less Node, and
// ServiceAccount identities under RBAC.
func TestCluster(t *testing.T) {
	c := cluster.StartT(t)
	ctx := t.Context()
	if err := c.CreateNamespace(ctx, namespace); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateNode(ctx, "node-1"); err != nil {
		t.Fatal(err)
	}
	t.Run("rollout", func(t *testing.T) { testRollout(t, c) })
	t.Run("service account", func(t *testing.T) { testServiceAccount(t, c) })
}

// testRollout makes a Deployment whose first revision fits on the node and whose
// second asks for more CPU than any node has: the situation the function is
// alerted about.
func testRollout(t *testing.T, c *cluster.Cluster) {
	ctx := t.Context()
	deployments := c.Clientset.AppsV1().Deployments(namespace)
	labels := map[string]string{"app": "web"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name:      "app",
					Image:     "registry.invalid/app:v1",
					Resources: cpuRequest("100m"),
				}}},
			},
		},
	}
	if _, err := deployments.Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitForPod(t, c, "1", corev1.ConditionTrue, "")

	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := deployments.Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		d.Spec.Template.Spec.Containers[0].Image = "registry.invalid/app:v2"
		d.Spec.Template.Spec.Containers[0].Resources = cpuRequest("64")
		_, err = deployments.Update(ctx, d, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	waitForPod(t, c, "2", corev1.ConditionFalse, corev1.PodReasonUnschedulable)

	// kubectl, pinned and run as admin, sees the same history.
	out, err := c.Kubectl(ctx, "-n", namespace, "rollout", "history", "deployment/web")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "1 ") || !strings.Contains(out, "2 ") {
		t.Errorf("kubectl rollout history = %q; want revisions 1 and 2", out)
	}
}

// waitForPod waits until the web Deployment's ReplicaSet of the given revision
// has a pod whose PodScheduled condition has status and, if set, reason.
func waitForPod(t *testing.T, c *cluster.Cluster, revision string, status corev1.ConditionStatus, reason string) {
	t.Helper()
	var seen string
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, waitFor, true, func(ctx context.Context) (bool, error) {
		rs, err := replicaSet(ctx, c.Clientset, revision)
		if rs == nil || err != nil {
			seen = "no ReplicaSet"
			return false, err
		}
		pods, err := c.Clientset.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		seen = "no pod"
		for _, p := range pods.Items {
			if !metav1.IsControlledBy(&p, rs) {
				continue
			}
			for _, cond := range p.Status.Conditions {
				if cond.Type == corev1.PodScheduled {
					seen = string(cond.Status) + " " + cond.Reason + " " + cond.Message
					if cond.Status == status && (reason == "" || cond.Reason == reason) {
						return true, nil
					}
				}
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("revision %s: want a pod with PodScheduled=%s %s; last seen: %s: %v", revision, status, reason, seen, err)
	}
}

// replicaSet returns the web Deployment's ReplicaSet with the given revision
// annotation, or nil if the controller has not made it yet.
func replicaSet(ctx context.Context, cs kubernetes.Interface, revision string) (*appsv1.ReplicaSet, error) {
	d, err := cs.AppsV1().Deployments(namespace).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	list, err := cs.AppsV1().ReplicaSets(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i, rs := range list.Items {
		if metav1.IsControlledBy(&rs, d) && rs.Annotations["deployment.kubernetes.io/revision"] == revision {
			return &list.Items[i], nil
		}
	}
	return nil, nil
}

func cpuRequest(cpu string) corev1.ResourceRequirements {
	return corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}}
}

// testServiceAccount checks that a ServiceAccount's token, used directly and
// through a kubeconfig file, authenticates as that ServiceAccount and that
// RBAC, with no Role bound, refuses it.
func testServiceAccount(t *testing.T, c *cluster.Cluster) {
	ctx := t.Context()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "rollback"}}
	if _, err := c.Clientset.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const want = "system:serviceaccount:" + namespace + ":rollback"

	cfg, err := c.ConfigFor(ctx, namespace, "rollback")
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	if got := whoAmI(t, cs); got != want {
		t.Errorf("SelfSubjectReview with ConfigFor = %q; want %q", got, want)
	}
	_, err = cs.AppsV1().Deployments(namespace).List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("list Deployments as %s = %v; want 403 Forbidden", want, err)
	}

	token, err := c.Token(ctx, namespace, "rollback")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := c.WriteKubeconfig(path, namespace, token); err != nil {
		t.Fatal(err)
	}
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: path}, nil)
	if ns, _, err := loader.Namespace(); err != nil || ns != namespace {
		t.Errorf("kubeconfig namespace = %q, %v; want %q", ns, err, namespace)
	}
	fileCfg, err := loader.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if got := whoAmI(t, kubernetes.NewForConfigOrDie(fileCfg)); got != want {
		t.Errorf("SelfSubjectReview with WriteKubeconfig = %q; want %q", got, want)
	}
}

// whoAmI returns the user name the apiserver authenticated cs as.
func whoAmI(t *testing.T, cs kubernetes.Interface) string {
	t.Helper()
	r, err := cs.AuthenticationV1().SelfSubjectReviews().Create(t.Context(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SelfSubjectReview: %v", err)
	}
	return r.Status.UserInfo.Username
}
