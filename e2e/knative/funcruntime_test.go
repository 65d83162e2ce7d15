package knative

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
	"sigs.k8s.io/yaml"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
	"github.com/sre-kit/alert-rollback/e2e/run"
)

// TestFuncRuntimeBehindQueueProxy runs func's image as func.yaml sets up its runtime
// (func-go's server on loopback, the function's liveness server on the pod's address),
// deployed from kservice.yaml with a pod kept up (min-scale 1), and checks it on the node:
// a notification through Knative's own path (the ingress, then the pod's queue-proxy) is
// answered by the function; at the pod's address, port 8080, only kubelet's liveness probe
// is answered (a notification with the token is not, and 1 MB of header gets 431 after
// 4 KiB); and kubelet does not restart the container once its liveness probe has failed
// as often as it may. Without the liveness server (func's runtime on loopback alone),
// kubelet restarts it: why func.yaml has one.
func TestFuncRuntimeBehindQueueProxy(t *testing.T) {
	tests := []struct {
		name string
		// drop are func.yaml's settings left out.
		drop        []string
		wantRestart bool
	}{
		{name: "func.yaml"},
		{name: "loopback without the liveness server", drop: []string{"ROLLBACK_LIVENESS_ADDRESS"}, wantRestart: true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			ns := fmt.Sprintf("func-loopback-%d", i)
			token := "knative-token-" + ns
			if err := kube.CreateNamespace(ctx, ns); err != nil {
				t.Fatal(err)
			}
			secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "alert-rollback-auth"}, StringData: map[string]string{"token": token}}
			if _, err := kube.Clientset.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			env := slices.DeleteFunc(funcRuntimeEnv(t), func(e corev1.EnvVar) bool { return slices.Contains(tc.drop, e.Name) })
			err := run.ApplyKService(ctx, kube, t.TempDir(), "../../kservice.yaml", ns, cluster.FuncImage, func(svc *servingv1.Service) {
				svc.Spec.Template.Annotations["autoscaling.knative.dev/min-scale"] = "1"
				c := &svc.Spec.Template.Spec.Containers[0]
				c.Env = append(c.Env, env...)
			})
			if err != nil {
				t.Fatal(err)
			}
			pod := waitFunctionPod(t, ns)
			t.Cleanup(func() {
				if t.Failed() {
					out, _ := kube.Kubectl(ctx, "logs", "-n", ns, pod.Name, "-c", "rollback", "--tail=30")
					t.Logf("function's log:\n%s", out)
				}
			})
			direct := net.JoinHostPort(pod.Status.PodIP, "8080")

			if !tc.wantRestart {
				// Knative's path: the ingress, then the queue-proxy, which forwards to func's
				// runtime on the pod's loopback.
				if got := postThroughKnative(t, ns, token); got != http.StatusOK {
					t.Errorf("a notification through Knative: %d; want 200", got)
				}
				checks := []struct {
					name, request string
					want          int
				}{
					{"liveness probe", "GET /health/liveness HTTP/1.1\r\nHost: " + direct + "\r\nUser-Agent: kube-probe/1.35\r\n\r\n", http.StatusOK},
					{"a notification with the token", notificationRequest(direct, token), http.StatusNotFound},
					{"func's runtime's readiness", "GET /health/readiness HTTP/1.1\r\nHost: " + direct + "\r\n\r\n", http.StatusNotFound},
					{"a header of 1 MB", "POST / HTTP/1.1\r\nHost: " + direct + "\r\nX-Pad: " + strings.Repeat("a", 1_000_000), http.StatusRequestHeaderFieldsTooLarge},
				}
				var seen []string
				for _, c := range checks {
					got, err := rawStatus(ctx, direct, c.request)
					if err != nil || got != c.want {
						t.Errorf("%s at the pod's address %s: %d, %v; want %d", c.name, direct, got, err, c.want)
					}
					seen = append(seen, fmt.Sprintf("%s %d", c.name, got))
				}
				t.Logf("at the pod's address %s: %s", direct, strings.Join(seen, ", "))
			}

			restarts, ran := watchRestarts(t, ns, pod)
			t.Logf("%s: container ran %s, restarts %d", tc.name, ran.Round(time.Second), restarts)
			if (restarts > 0) != tc.wantRestart {
				t.Errorf("the container was restarted %d times in %s; want restarts: %v", restarts, ran.Round(time.Second), tc.wantRestart)
			}
			if _, err := kube.Kubectl(ctx, "delete", "ksvc", "-n", ns, "alert-rollback", "--wait=true"); err != nil {
				t.Logf("delete ksvc: %v", err)
			}
		})
	}
}

// funcRuntimeEnv is what func.yaml sets that kservice.yaml does not: its settings for func's
// runtime. The func image deployed from kservice.yaml with them runs as `func deploy` runs it.
func funcRuntimeEnv(t *testing.T) []corev1.EnvVar {
	t.Helper()
	b, err := os.ReadFile("../../func.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Run struct {
			Envs []struct{ Name, Value string } `json:"envs"`
		} `json:"run"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("func.yaml: %v", err)
	}
	svc, err := run.KnativeService("../../kservice.yaml")
	if err != nil {
		t.Fatal(err)
	}
	inKService := map[string]bool{}
	for _, e := range svc.Spec.Template.Spec.Containers[0].Env {
		inKService[e.Name] = true
	}
	var env []corev1.EnvVar
	for _, e := range f.Run.Envs {
		if !inKService[e.Name] {
			env = append(env, corev1.EnvVar{Name: e.Name, Value: e.Value})
		}
	}
	return env
}

// waitFunctionPod waits for the function's pod in ns to be Ready, and returns it.
func waitFunctionPod(t *testing.T, ns string) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	if out, err := kube.Kubectl(ctx, "wait", "-n", ns, "--for=condition=Ready", "--timeout=180s", "ksvc/alert-rollback"); err != nil {
		t.Fatalf("ksvc not Ready: %v: %s", err, out)
	}
	pods, err := kube.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "serving.knative.dev/service=alert-rollback"})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("function pods: %v, %v; want one", pods, err)
	}
	return &pods.Items[0]
}

// postThroughKnative posts a notification with the token to the function's cluster-local
// address, through the ingress, and returns the status. Its alert is not one the function
// acts on: the answer needs no workload. The ingress may take a moment more than the
// Knative Service to route the new name: its own 404 is asked again.
func postThroughKnative(t *testing.T, ns, token string) int {
	t.Helper()
	body := run.Notification(run.AlertOf(map[string]string{"alertname": "Test", "namespace": ns, "pod": "web-0", "severity": "info"}, time.Now()))
	var status int
	var answer string
	err := wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+net.JoinHostPort(cluster.NodeIP, "8081")+"/", bytes.NewReader(body))
		if err != nil {
			return false, err
		}
		req.Host = "alert-rollback." + ns + ".svc.cluster.local"
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := kube.HTTP.Do(req)
		if err != nil {
			answer = err.Error()
			return false, nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		status, answer = resp.StatusCode, strings.TrimSpace(string(b))
		// The function answers in JSON; the ingress's own 404 is text.
		return resp.Header.Get("Content-Type") == "application/json", nil
	})
	if err != nil {
		t.Fatalf("POST through Knative: %d %s: %v", status, answer, err)
	}
	t.Logf("through Knative: %d %s", status, answer)
	return status
}

// notificationRequest is a whole notification with the token, as an HTTP/1.1 request to host.
func notificationRequest(host, token string) string {
	body := run.Notification(run.AlertOf(map[string]string{"alertname": "Test", "severity": "info"}, time.Now()))
	return fmt.Sprintf("POST / HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		host, token, len(body), body)
}

// rawStatus writes request on a new connection to addr, from inside the node's network, and
// returns the answer's status. It writes and reads at once: a server may answer before the
// request is all sent.
func rawStatus(ctx context.Context, addr, request string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	c, err := kube.Dial(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	go func() { _, _ = io.WriteString(c, request) }()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// watchRestarts waits until the function's container has run for as long as kubelet's
// liveness probe takes to restart it (its failure threshold of periods, and one more), and
// returns the container's restarts by then and how long it ran.
func watchRestarts(t *testing.T, ns string, pod *corev1.Pod) (int32, time.Duration) {
	t.Helper()
	var probe *corev1.Probe
	for _, c := range pod.Spec.Containers {
		if c.Name == "rollback" {
			probe = c.LivenessProbe
		}
	}
	if probe == nil {
		t.Fatal("the function's container has no liveness probe")
	}
	// Kubernetes' defaults, where the probe leaves them unset.
	period, threshold := 10*time.Second, int32(3)
	if probe.PeriodSeconds > 0 {
		period = time.Duration(probe.PeriodSeconds) * time.Second
	}
	if probe.FailureThreshold > 0 {
		threshold = probe.FailureThreshold
	}
	patience := time.Duration(threshold+1)*period + time.Duration(probe.InitialDelaySeconds)*time.Second
	began := time.Now()
	var restarts int32
	_ = wait.PollUntilContextTimeout(context.Background(), time.Second, patience+20*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := kube.Clientset.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, s := range p.Status.ContainerStatuses {
			if s.Name == "rollback" {
				restarts = s.RestartCount
			}
		}
		return restarts > 0 || time.Since(began) >= patience, nil
	})
	return restarts, time.Since(pod.CreationTimestamp.Time)
}
