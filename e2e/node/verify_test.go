package node

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
	"github.com/sre-kit/alert-rollback/e2e/fixture"
	"github.com/sre-kit/alert-rollback/e2e/run"
	"github.com/sre-kit/alert-rollback/internal/alert"
	"github.com/sre-kit/alert-rollback/internal/outcome"
	"github.com/sre-kit/alert-rollback/internal/undo"
)

// TestVerifyOnNode verifies undos on the real node, where containers run and the kubelet
// reports them: the function runs as a pod of its image; a revision whose image crashes is
// alerted on and rolled back; then the resolved notification (the crashing pod is gone, so
// the alert resolves) checks the rollout. When the revision rolled back to runs, the verdict
// is healed; when it crashes too, its rollout does not complete within progressDeadlineSeconds
// and the verdict is not-healed, and the same alert firing again is refused and changes
// nothing.
func TestVerifyOnNode(t *testing.T) {
	ctx := context.Background()
	const ns = "verify-node"
	if err := kube.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	const token = "node-token-verify"
	url := startFunctionPod(t, ns, cluster.RollbackImage, token)

	t.Run("healed", func(t *testing.T) {
		const name = "shop-api"
		pod, rev1, err := run.BrokenDeployment(ctx, kube, ns, name, func(c *corev1.Container) { c.Image = cluster.CrashImage })
		if err != nil {
			t.Fatal(err)
		}
		a := crashAlert(ns, pod)
		if r := post(t, url, token, a); r.Action != outcome.RolledBack {
			t.Fatalf("the alert's answer: %+v; want rolled-back", r)
		}
		if err := fixture.WaitDeploymentRevision(ctx, kube.Clientset, ns, name, 3); err != nil {
			t.Fatal(err)
		}
		if _, err := run.WaitOnlyRevisionRunning(ctx, kube.Clientset, ns, name, rev1); err != nil {
			t.Fatal(err)
		}
		d, err := fixture.WaitDeploymentCondition(ctx, kube.Clientset, ns, name, appsv1.DeploymentProgressing, corev1.ConditionTrue, "NewReplicaSetAvailable", fixture.PollTimeout)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("revision 1's pods Ready; Deployment: %d of %d available", d.Status.AvailableReplicas, d.Status.UpdatedReplicas)

		r := post(t, url, token, resolved(a))
		if r.Action != outcome.Healed || r.Reason != outcome.ReasonHealed || !strings.Contains(r.Message, "after the rollback") {
			t.Fatalf("the resolved notification's answer: %+v; want healed, with the time from the undo", r)
		}
		t.Logf("answer: %s", r.Message)
		events, err := fixture.WaitEvents(ctx, kube.Clientset, ns, "Deployment", name, "RollbackHealed", 1)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("event: %s %s: %s", events[0].Type, events[0].Reason, events[0].Message)
		if s := state(t, ns, name); s.Pending != nil || s.Verified == nil || s.Verified.Result != undo.Healed {
			t.Errorf("state: pending %+v, verified %+v; want verified healed", s.Pending, s.Verified)
		}
	})

	t.Run("the revision rolled back to crashes too", func(t *testing.T) {
		const name = "billing-api"
		pod := crashingTwice(t, ns, name, 10)
		a := crashAlert(ns, pod)
		if r := post(t, url, token, a); r.Action != outcome.RolledBack {
			t.Fatalf("the alert's answer: %+v; want rolled-back", r)
		}
		if err := fixture.WaitDeploymentRevision(ctx, kube.Clientset, ns, name, 3); err != nil {
			t.Fatal(err)
		}
		s := state(t, ns, name)
		if s.Pending == nil {
			t.Fatalf("state after the undo: %+v; want the undo awaiting verification", s)
		}
		// Revision 1's pods do not become available within progressDeadlineSeconds of the undo.
		// The controller says so in one of two ways, depending on when the undo came: if
		// revision 2's rollout had not timed out yet, it declares ProgressDeadlineExceeded
		// again after the undo; if it had, the condition stays the one from before the undo
		// (no progress since, so nothing to update), and the function's own deadline decides.
		// Either way the resolved notification must find the revision rolled back to failing.
		var d *appsv1.Deployment
		err := wait.PollUntilContextTimeout(ctx, time.Second, 2*fixture.PollTimeout, true, func(ctx context.Context) (bool, error) {
			var err error
			if d, err = kube.Clientset.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
				return false, err
			}
			c := fixture.DeploymentCondition(d, appsv1.DeploymentProgressing)
			timedOut := c != nil && c.Reason == "ProgressDeadlineExceeded"
			return d.Status.ObservedGeneration >= d.Generation && d.Status.AvailableReplicas == 0 && timedOut &&
				(c.LastUpdateTime.After(s.Pending.At) || time.Since(s.Pending.At) > time.Duration(*d.Spec.ProgressDeadlineSeconds+2)*time.Second), nil
		})
		if err != nil {
			t.Fatalf("revision 1's rollout never failed after the undo: %v; %+v", err, d.Status)
		}
		t.Logf("after the undo: %s", fixture.DeploymentCondition(d, appsv1.DeploymentProgressing).Message)

		r := post(t, url, token, resolved(a))
		if r.Action != outcome.NotHealed || r.Reason != outcome.ReasonRevisionUnhealthy || !strings.Contains(r.Message, "fails too") {
			t.Fatalf("the resolved notification's answer: %+v; want not-healed: the revision rolled back to fails too", r)
		}
		t.Logf("answer: %s", r.Message)
		events, err := fixture.WaitEvents(ctx, kube.Clientset, ns, "Deployment", name, "RollbackNotHealed", 1)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("event: %s %s: %s", events[0].Type, events[0].Reason, events[0].Message)

		// The same alert firing again (the crashing pods keep it going): refused, nothing written.
		before, err := kube.Clientset.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		again := a
		again.StartsAt = time.Now().UTC()
		r = post(t, url, token, again)
		if r.Action != outcome.Refused || r.Reason != outcome.ReasonNotHealed || !strings.Contains(r.Message, "people must act") {
			t.Fatalf("the same alert firing again: %+v; want refused not-healed, saying people must act", r)
		}
		after, err := kube.Clientset.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if after.Annotations[undo.StateAnnotation] != before.Annotations[undo.StateAnnotation] || !fixture.SameTemplate(after.Spec.Template, before.Spec.Template) {
			t.Errorf("the refusal changed the Deployment: state %s, template %v; want them as before", after.Annotations[undo.StateAnnotation], after.Spec.Template)
		}
		if _, err := fixture.WaitEvents(ctx, kube.Clientset, ns, "Deployment", name, "RollbackRefused", 1); err != nil {
			t.Fatal(err)
		}
	})
}

// crashingTwice creates Deployment name whose revision 1 already crashes, then revision 2
// (the same crashing image, another environment), with progressDeadlineSeconds deadline,
// and returns the name of revision 2's pod once it is in CrashLoopBackOff.
func crashingTwice(t *testing.T, ns, name string, deadline int32) string {
	t.Helper()
	ctx := context.Background()
	c := fixture.Container(cluster.CrashImage, "100m")
	c.ImagePullPolicy = corev1.PullNever
	c.Env = []corev1.EnvVar{{Name: "RELEASE", Value: "1"}}
	d := fixture.Deployment(ns, name, c)
	d.Spec.ProgressDeadlineSeconds = &deadline
	// A container that exits at once can still be seen running, and so Ready, for an instant
	// on a busy node; that would make the rollout complete, and a complete rollout never
	// times out. Pods must stay Ready 5 s to count as available, which these never do (the
	// API server wants it below progressDeadlineSeconds).
	d.Spec.MinReadySeconds = 5
	if _, err := kube.Clientset.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := fixture.WaitDeploymentRevision(ctx, kube.Clientset, ns, name, 1); err != nil {
		t.Fatal(err)
	}
	rev1, err := fixture.ReplicaSetOfRevision(ctx, kube.Clientset, ns, name, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := run.WaitContainerWaiting(ctx, kube.Clientset, ns, rev1, "CrashLoopBackOff"); err != nil {
		t.Fatal(err)
	}
	err = fixture.UpdateDeployment(ctx, kube.Clientset, ns, name, 2, func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "RELEASE", Value: "2"}}
	})
	if err != nil {
		t.Fatal(err)
	}
	rev2, err := fixture.ReplicaSetOfRevision(ctx, kube.Clientset, ns, name, 2)
	if err != nil {
		t.Fatal(err)
	}
	pod, err := run.WaitContainerWaiting(ctx, kube.Clientset, ns, rev2, "CrashLoopBackOff")
	if err != nil {
		t.Fatal(err)
	}
	return pod
}

// crashAlert is KubePodCrashLooping about pod, as kube-state-metrics' series label it.
func crashAlert(ns, pod string) alert.Alert {
	return run.AlertOf(map[string]string{"alertname": "KubePodCrashLooping", "namespace": ns, "pod": pod,
		"container": "app", "reason": "CrashLoopBackOff", "severity": "rollback"}, time.Now())
}

// resolved is a as Alertmanager sends it once it has ended.
func resolved(a alert.Alert) alert.Alert {
	a.Status, a.EndsAt = "resolved", time.Now().UTC()
	return a
}

// post sends the alert to the function as Alertmanager does, and returns its one result.
func post(t *testing.T, url, token string, a alert.Alert) outcome.Result {
	t.Helper()
	body, err := json.Marshal(alert.Message{Version: "4", Status: a.Status, Receiver: "alert-rollback", Alerts: []alert.Alert{a}})
	if err != nil {
		t.Fatal(err)
	}
	status, resp, err := run.PostNotification(context.Background(), kube.HTTP, url, body, token)
	if err != nil || status != http.StatusOK || len(resp.Results) != 1 {
		t.Fatalf("POST the %s alert = %d %+v, %v; want 200 and one result", a.Status, status, resp, err)
	}
	return resp.Results[0]
}

// state reads the function's state annotation on Deployment ns/name.
func state(t *testing.T, ns, name string) undo.State {
	t.Helper()
	d, err := kube.Clientset.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var s undo.State
	if err := json.Unmarshal([]byte(d.Annotations[undo.StateAnnotation]), &s); err != nil {
		t.Fatalf("state annotation of %s: %v", name, err)
	}
	return s
}
