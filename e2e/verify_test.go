package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
	"github.com/sre-kit/alert-rollback/e2e/fixture"
	"github.com/sre-kit/alert-rollback/e2e/run"
	"github.com/sre-kit/alert-rollback/internal/alert"
	"github.com/sre-kit/alert-rollback/internal/outcome"
	"github.com/sre-kit/alert-rollback/internal/undo"
)

// TestVerifyAfterUndo: the seed's alert goes through a real Alertmanager and the function
// rolls the Deployment back; Alertmanager's resolved notification (send_resolved, as the
// shipped route sends it) then verifies the undo against what the real Deployment controller
// reports. When the revision rolled back to becomes available (its pod reported ready, as a
// kubelet would: the Node here runs nothing), the verdict is healed; when it never does, the
// controller itself declares ProgressDeadlineExceeded, and the verdict is not-healed. Each
// verdict is an Event on the Deployment; a resolved notification before the rollout is
// complete is answered verifying and writes nothing; and a not-healed alert firing again is
// refused and writes nothing.
func TestVerifyAfterUndo(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	f := e.startFunction("rollback", nil)
	rec := newRecorder(t, f.URL)
	creds := writeFile(t, filepath.Join(e.dir, "credentials"), e.token+"\n")

	tests := []struct {
		name     string
		deadline int32
		// afterUndo plays what becomes of the revision rolled back to; undone is when the
		// undo was made, as its state records it.
		afterUndo  func(t *testing.T, name string, rev1 *appsv1.ReplicaSet, undone time.Time)
		wantAction outcome.Action
		wantReason outcome.Reason
		wantEvent  string
		wantSaid   []string
	}{
		{
			name: "healed", deadline: 600,
			afterUndo: func(t *testing.T, name string, rev1 *appsv1.ReplicaSet, _ time.Time) {
				// Still rolling out: a resolved notification now is answered verifying, and the
				// function writes nothing.
				e.resolvedBeforeComplete(t, f, name)
				pod, err := fixture.WaitPod(ctx, e.cs, e.ns, rev1, corev1.ConditionTrue, "")
				if err != nil {
					t.Fatal(err)
				}
				if err := fixture.MarkPodReady(ctx, e.cs, e.ns, pod); err != nil {
					t.Fatal(err)
				}
				d, err := fixture.WaitDeploymentCondition(ctx, e.cs, e.ns, name, appsv1.DeploymentProgressing, corev1.ConditionTrue, "NewReplicaSetAvailable", fixture.PollTimeout)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("after the undo: %s", describeRollout(d))
			},
			wantAction: outcome.Healed, wantReason: outcome.ReasonHealed, wantEvent: "RollbackHealed",
			wantSaid: []string{"healed: deployment", "successfully rolled out", "after the rollback"},
		},
		{
			name: "not healed", deadline: 5,
			afterUndo: func(t *testing.T, name string, _ *appsv1.ReplicaSet, undone time.Time) {
				d := e.waitTimedOutAfter(t, name, undone)
				t.Logf("after the undo: %s", describeRollout(d))
			},
			wantAction: outcome.NotHealed, wantReason: outcome.ReasonRevisionUnhealthy, wantEvent: "RollbackNotHealed",
			wantSaid: []string{"the revision rolled back to fails too", "ProgressDeadlineExceeded"},
		},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("verify-%d", i)
			pod := e.brokenWithDeadline(name, tc.deadline)
			rev1, err := fixture.ReplicaSetOfRevision(ctx, e.cs, e.ns, name, 1)
			if err != nil {
				t.Fatal(err)
			}
			am, err := run.StartAlertmanager(ctx, run.AlertmanagerOptions{
				Dir: e.dir, Name: fmt.Sprintf("alertmanager-%d", i), WebhookURL: rec.URL, CredentialsFile: creds,
				Timers: &run.Timers{GroupWait: "1s", GroupInterval: "1s", RepeatInterval: "1h"},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer am.Stop()

			a := seedAlert(e.ns, pod, time.Now())
			n := len(rec.deliveries())
			if err := am.Fire(ctx, amAlert(a)); err != nil {
				t.Fatal(err)
			}
			if r := oneResult(t, waitDelivery(t, rec, n, am.LogPath)); r.Action != outcome.RolledBack {
				t.Fatalf("the firing alert's answer: %+v; want rolled-back", r)
			}
			if err := fixture.WaitDeploymentRevision(ctx, e.cs, e.ns, name, 3); err != nil {
				t.Fatal(err)
			}
			s := e.state(name)
			if s.Pending == nil || s.Pending.Revision != rev1.Labels[appsv1.DefaultDeploymentUniqueLabelKey] || s.Pending.Number != 1 ||
				len(s.Pending.Alerts) != 1 || s.Pending.Alerts[0] != a.Fingerprint {
				t.Fatalf("state after the undo: pending %+v; want revision 1 (%s) awaiting verification, for alert %s", s.Pending, rev1.Name, a.Fingerprint)
			}
			tc.afterUndo(t, name, rev1, s.Pending.At)

			// Prometheus stops sending the alert; Alertmanager resolves it and, as the shipped
			// route has send_resolved, tells the function.
			ended := amAlert(a)
			ended.EndsAt = time.Now()
			n = len(rec.deliveries())
			if err := am.Fire(ctx, ended); err != nil {
				t.Fatal(err)
			}
			d := waitDelivery(t, rec, n, am.LogPath)
			var sent alert.Message
			if err := json.Unmarshal(d.body, &sent); err != nil || sent.Status != "resolved" {
				t.Fatalf("Alertmanager sent %s (%v); want a resolved notification", d.body, err)
			}
			r := oneResult(t, d)
			if d.status != http.StatusOK || r.Action != tc.wantAction || r.Reason != tc.wantReason {
				t.Fatalf("the resolved notification's answer: %d %+v; want 200 %s (%s)", d.status, r, tc.wantAction, tc.wantReason)
			}
			for _, want := range tc.wantSaid {
				if !strings.Contains(r.Message, want) {
					t.Errorf("message %q does not say %q", r.Message, want)
				}
			}
			t.Logf("answer: %s (%s): %s", r.Action, r.Reason, r.Message)
			events, err := fixture.WaitEvents(ctx, e.cs, e.ns, "Deployment", name, tc.wantEvent, 1)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("event: %s %s: %s", events[0].Type, events[0].Reason, events[0].Message)
			s = e.state(name)
			if s.Pending != nil || s.Verified == nil || string(s.Verified.Result) != string(tc.wantAction) {
				t.Fatalf("state after the verdict: pending %+v, verified %+v; want none pending, verified %s", s.Pending, s.Verified, tc.wantAction)
			}
			if tc.wantAction != outcome.NotHealed {
				return
			}

			// The same alert firing again (a new startsAt, the same fingerprint): refused, and
			// nothing written.
			before := e.resourceVersions(e.ns, name)
			mark, err := kube.AuditMark()
			if err != nil {
				t.Fatal(err)
			}
			status, resp, err := f.Post(ctx, notification(seedAlert(e.ns, pod, time.Now())), e.token)
			if err != nil || status != http.StatusOK || len(resp.Results) != 1 || resp.Results[0].Reason != outcome.ReasonNotHealed ||
				!strings.Contains(resp.Results[0].Message, "people must act") {
				t.Fatalf("the alert firing again: %d %+v, %v; want 200, refused not-healed, saying people must act", status, resp, err)
			}
			if _, err := fixture.WaitEvents(ctx, e.cs, e.ns, "Deployment", name, "RollbackRefused", 1); err != nil {
				t.Fatal(err)
			}
			if got := e.resourceVersions(e.ns, name); got != before {
				t.Errorf("resourceVersions %s; want %s, as before the refusal", got, before)
			}
			if w := e.functionWrites(mark, "events"); len(w) != 0 {
				t.Errorf("the function wrote %v for the refusal; want nothing (the Event apart)", w)
			}
		})
	}
}

// TestVerifyBadInputs: notifications that can only verify, about workloads with nothing
// (valid) to verify, each get a clear answer and change nothing: the workload's and its
// ReplicaSets' resourceVersions are the same afterwards, and the function made no write
// (no patch, no Event), as the API server's audit log shows.
func TestVerifyBadInputs(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const name = "checkout"
	e.brokenDeployment(name)
	rev1, err := fixture.ReplicaSetOfRevision(ctx, e.cs, e.ns, name, 1)
	if err != nil {
		t.Fatal(err)
	}
	other := e.ns + "-other"
	if err := kube.CreateNamespace(ctx, other); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cs.AppsV1().Deployments(other).Create(ctx, fixture.Deployment(other, name, fixture.Container("registry.invalid/x:v1", "100m")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.cs.AppsV1().Deployments(other).Delete(ctx, name, metav1.DeleteOptions{}) })
	f := e.startFunction("rollback", nil)

	at := time.Now().UTC().Add(-time.Minute).Format(time.RFC3339)
	pending := func(revision string) string {
		return fmt.Sprintf(`{"handled":["x@1"],"pending":{"at":%q,"revision":%q,"revisionNumber":1,"fromRevision":2,"alerts":["x"]}}`, at, revision)
	}
	tests := []struct {
		name string
		ns   string
		// state, when set, is the state annotation the test writes on the workload first.
		state      string
		wantAction outcome.Action
		wantReason outcome.Reason
		wantSaid   string
	}{
		{name: "a workload the function never touched", ns: e.ns,
			wantAction: outcome.Skipped, wantReason: outcome.ReasonNothingToVerify, wantSaid: "no rollback of this function awaits verification"},
		{name: "a workload never touched, in a namespace not allowed", ns: other,
			wantAction: outcome.Refused, wantReason: outcome.ReasonNamespaceDenied, wantSaid: "namespace not allowed"},
		{name: "pending verification of a revision that no longer exists", ns: e.ns, state: pending("5c8d9f7b6"),
			wantAction: outcome.Skipped, wantReason: outcome.ReasonVerificationStale, wantSaid: "no longer in the rollout history"},
		{name: "pending verification of a revision the workload moved on from", ns: e.ns, state: pending(rev1.Labels[appsv1.DefaultDeploymentUniqueLabelKey]),
			wantAction: outcome.Skipped, wantReason: outcome.ReasonVerificationStale, wantSaid: "rolled out again since"},
		{name: "a pending verification naming no revision", ns: e.ns, state: fmt.Sprintf(`{"pending":{"at":%q,"revision":""}}`, at),
			wantAction: outcome.Refused, wantReason: outcome.ReasonBadState, wantSaid: "pending names no revision"},
		{name: "a verdict that is none", ns: e.ns, state: fmt.Sprintf(`{"verified":{"at":%q,"revision":"x","result":"maybe"}}`, at),
			wantAction: outcome.Refused, wantReason: outcome.ReasonBadState, wantSaid: `result "maybe"`},
		{name: "not-healed alerts that are not a list", ns: e.ns, state: `{"notHealed":"x"}`,
			wantAction: outcome.Refused, wantReason: outcome.ReasonBadState, wantSaid: "not readable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.state != "" {
				patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{undo.StateAnnotation: tc.state}}})
				if _, err := e.cs.AppsV1().Deployments(tc.ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			e.settledIn(tc.ns, name)
			before := e.resourceVersions(tc.ns, name)
			mark, err := kube.AuditMark()
			if err != nil {
				t.Fatal(err)
			}
			a := alertWith(map[string]string{"alertname": "KubeDeploymentRolloutStuck", "namespace": tc.ns, "deployment": name, "severity": "rollback"}, time.Now().Add(-time.Hour))
			a.Status, a.EndsAt = "resolved", time.Now()
			status, resp, err := f.Post(ctx, notification(a), e.token)
			if err != nil || status != http.StatusOK || len(resp.Results) != 1 {
				t.Fatalf("POST the resolved alert = %d %+v, %v; want 200 and one result", status, resp, err)
			}
			r := resp.Results[0]
			if r.Action != tc.wantAction || r.Reason != tc.wantReason || !strings.Contains(r.Message, tc.wantSaid) {
				t.Fatalf("answer %s (%s): %s; want %s (%s) saying %q", r.Action, r.Reason, r.Message, tc.wantAction, tc.wantReason, tc.wantSaid)
			}
			t.Logf("answer: %s (%s): %s", r.Action, r.Reason, r.Message)
			// Events are sent asynchronously: watch for a while that none comes, and that
			// nothing else changes.
			consistently(t, 2*time.Second, func(context.Context) error {
				if got := e.resourceVersions(tc.ns, name); got != before {
					return fmt.Errorf("resourceVersions %s; want %s, as before the notification", got, before)
				}
				if w := e.functionWrites(mark); len(w) != 0 {
					return fmt.Errorf("the function wrote %v; want nothing", w)
				}
				return nil
			})
		})
	}
}

// brokenWithDeadline is brokenDeployment with the Deployment's progressDeadlineSeconds set:
// revision 1's pod is bound to the Node (and never ready: nothing runs it), revision 2's
// cannot be scheduled. It returns that pod's name.
func (e *env) brokenWithDeadline(name string, deadline int32) string {
	e.t.Helper()
	ctx := context.Background()
	d := fixture.Deployment(e.ns, name, fixture.Container("registry.invalid/"+name+":v1", "100m"))
	d.Spec.ProgressDeadlineSeconds = &deadline
	if _, err := e.cs.AppsV1().Deployments(e.ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	if err := fixture.WaitDeploymentRevision(ctx, e.cs, e.ns, name, 1); err != nil {
		e.t.Fatal(err)
	}
	rev1, err := fixture.ReplicaSetOfRevision(ctx, e.cs, e.ns, name, 1)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := fixture.WaitPod(ctx, e.cs, e.ns, rev1, corev1.ConditionTrue, ""); err != nil {
		e.t.Fatal(err)
	}
	err = fixture.UpdateDeployment(ctx, e.cs, e.ns, name, 2, func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.Containers[0] = fixture.Container("registry.invalid/"+name+":v2", "64")
	})
	if err != nil {
		e.t.Fatal(err)
	}
	rev2, err := fixture.ReplicaSetOfRevision(ctx, e.cs, e.ns, name, 2)
	if err != nil {
		e.t.Fatal(err)
	}
	pod, err := fixture.WaitPod(ctx, e.cs, e.ns, rev2, corev1.ConditionFalse, corev1.PodReasonUnschedulable)
	if err != nil {
		e.t.Fatal(err)
	}
	return pod
}

// resolvedBeforeComplete sends a resolved notification about Deployment name while its
// rollout is not complete: the answer is verifying, and the function writes nothing.
func (e *env) resolvedBeforeComplete(t *testing.T, f *run.Function, name string) {
	t.Helper()
	mark, err := kube.AuditMark()
	if err != nil {
		t.Fatal(err)
	}
	a := alertWith(map[string]string{"alertname": "KubeDeploymentRolloutStuck", "namespace": e.ns, "deployment": name, "severity": "rollback"}, time.Now().Add(-time.Minute))
	a.Status, a.EndsAt = "resolved", time.Now()
	status, resp, err := f.Post(context.Background(), notification(a), e.token)
	if err != nil || status != http.StatusOK || len(resp.Results) != 1 || resp.Results[0].Reason != outcome.ReasonVerifying {
		t.Fatalf("a resolved notification while rolling out: %d %+v, %v; want 200, skipped verifying", status, resp, err)
	}
	t.Logf("while rolling out: %s", resp.Results[0].Message)
	consistently(t, 2*time.Second, func(context.Context) error {
		if w := e.functionWrites(mark); len(w) != 0 {
			return fmt.Errorf("the function wrote %v while verifying; want nothing", w)
		}
		return nil
	})
}

// waitTimedOutAfter waits until the Deployment controller has declared the rollout of
// Deployment name failed (ProgressDeadlineExceeded) after undone: the failure of the
// revision rolled back to, not the bad rollout's.
func (e *env) waitTimedOutAfter(t *testing.T, name string, undone time.Time) *appsv1.Deployment {
	t.Helper()
	var d *appsv1.Deployment
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, fixture.PollTimeout, true, func(ctx context.Context) (bool, error) {
		var err error
		if d, err = e.cs.AppsV1().Deployments(e.ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
			return false, err
		}
		c := fixture.DeploymentCondition(d, appsv1.DeploymentProgressing)
		return d.Status.ObservedGeneration >= d.Generation && c != nil && c.Reason == "ProgressDeadlineExceeded" && c.LastUpdateTime.After(undone), nil
	})
	if err != nil {
		t.Fatalf("the controller never declared the rollout after the undo failed: %v; %s", err, describeRollout(d))
	}
	return d
}

// state reads the function's state annotation on Deployment name.
func (e *env) state(name string) undo.State {
	e.t.Helper()
	var s undo.State
	if err := json.Unmarshal([]byte(e.deployment(name).Annotations[undo.StateAnnotation]), &s); err != nil {
		e.t.Fatalf("state annotation of %s: %v", name, err)
	}
	return s
}

// resourceVersions lists the resourceVersions of Deployment ns/name and of the ReplicaSets
// in ns, as one string.
func (e *env) resourceVersions(ns, name string) string {
	e.t.Helper()
	ctx := context.Background()
	d, err := e.cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	rss, err := e.cs.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	out := "deployment " + d.ResourceVersion
	for _, rs := range rss.Items {
		out += ", " + rs.Name + " " + rs.ResourceVersion
	}
	return out
}

// settledIn is settled for a Deployment of any namespace.
func (e *env) settledIn(ns, name string) {
	e.t.Helper()
	prev := ""
	stable := 0
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, fixture.PollTimeout, false, func(context.Context) (bool, error) {
		rv := e.resourceVersions(ns, name)
		if rv == prev {
			stable++
		} else {
			stable = 0
		}
		prev = rv
		return stable >= 4, nil
	})
	if err != nil {
		e.t.Fatalf("Deployment %s/%s never settled: %v", ns, name, err)
	}
}

// functionWrites lists the requests other than reads that the function's ServiceAccount
// made since mark, in any namespace, except those about the resources allowed.
func (e *env) functionWrites(mark cluster.AuditMark, allowed ...string) []string {
	e.t.Helper()
	log, err := kube.AuditSince(context.Background(), mark)
	if err != nil {
		e.t.Fatal(err)
	}
	user := "system:serviceaccount:" + e.ns + ":alert-rollback"
	var out []string
	for _, ev := range log {
		switch ev.Verb {
		case "get", "list", "watch":
			continue
		}
		if ev.User.Username == user && !slices.Contains(allowed, ev.Resource()) {
			out = append(out, ev.Verb+" "+ev.Resource())
		}
	}
	return out
}

// oneResult decodes the function's answer to a delivery, which must hold one result.
func oneResult(t *testing.T, d delivery) outcome.Result {
	t.Helper()
	r := answer(t, d)
	if len(r.Results) != 1 {
		t.Fatalf("answer %s; want one result", d.answer)
	}
	return r.Results[0]
}
