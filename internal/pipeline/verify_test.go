package pipeline

import (
	"context"
	"testing"
	"time"

	"encoding/json"
	"slices"
	"strings"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/sre-kit/alert-rollback/internal/alert"
	"github.com/sre-kit/alert-rollback/internal/fixture"
	"github.com/sre-kit/alert-rollback/internal/outcome"
)

// controllerRollsOut plays the Deployment controller after the undo of web from v2 to v1:
// v1's ReplicaSet renumbered 3, and the status given.
func controllerRollsOut(t *testing.T, c *fake.Clientset, status appsv1.DeploymentStatus) {
	t.Helper()
	ctx := context.Background()
	_, rss := fixture.Deployment(ownNamespace, "web", "web:v1", "web:v2")
	rs, err := c.AppsV1().ReplicaSets(ownNamespace).Get(ctx, rss[0].Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rs.Annotations["deployment.kubernetes.io/revision"] = "3"
	rs.Annotations["deployment.kubernetes.io/revision-history"] = "1"
	if _, err := c.AppsV1().ReplicaSets(ownNamespace).Update(ctx, rs, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	d, err := c.AppsV1().Deployments(ownNamespace).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.Annotations["deployment.kubernetes.io/revision"] = "3"
	d.Spec.Replicas = ptr.To[int32](1)
	d.Status = status
	if _, err := c.AppsV1().Deployments(ownNamespace).Update(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestResolvedVerifies: after an undo, each notification about the workload verifies it;
// a resolved alert never causes an undo, and only a verdict leaves an Event. A not-healed
// undo's alert, firing again, is refused, with an Event for people.
func TestResolvedVerifies(t *testing.T) {
	type step struct {
		// before, when set, changes the cluster first (the controller's part).
		before func(*testing.T, *fake.Clientset)
		// later is how long after the first step this one comes.
		later       time.Duration
		alerts      []alert.Alert
		want        []string
		wantWrites  []string // fields written, per patch
		wantEventOf outcome.Reason
	}
	web := firing(1, "deployment", "web")
	again := web
	again.StartsAt = web.StartsAt.Add(time.Hour) // the same alert firing again later
	resolved := web
	resolved.Status = "resolved"
	untouched := firing(2, "deployment", "api")
	untouched.Status = "resolved"
	rolledOut := func(t *testing.T, c *fake.Clientset) {
		controllerRollsOut(t, c, appsv1.DeploymentStatus{Replicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1})
	}
	gaveUp := func(t *testing.T, c *fake.Clientset) {
		controllerRollsOut(t, c, appsv1.DeploymentStatus{Replicas: 2, UpdatedReplicas: 1, Conditions: []appsv1.DeploymentCondition{
			{Type: appsv1.DeploymentProgressing, Status: "False", Reason: "ProgressDeadlineExceeded"}}})
	}
	undoWrite := []string{"metadata.annotations spec.template"}
	stateWrite := []string{"metadata.annotations"}
	tests := []struct {
		name  string
		steps []step
	}{
		{name: "healed", steps: []step{
			{alerts: []alert.Alert{web}, want: []string{"rolled-back rolled-back"}, wantWrites: undoWrite, wantEventOf: outcome.ReasonRolledBack},
			{alerts: []alert.Alert{resolved}, want: []string{"skipped verifying"}},
			{before: rolledOut, alerts: []alert.Alert{resolved}, want: []string{"healed healed"}, wantWrites: stateWrite, wantEventOf: outcome.ReasonHealed},
			{alerts: []alert.Alert{resolved}, want: []string{"skipped nothing-to-verify"}},
			{alerts: []alert.Alert{web}, want: []string{"skipped already-handled"}},
		}},
		{name: "not healed", steps: []step{
			{alerts: []alert.Alert{web}, want: []string{"rolled-back rolled-back"}, wantWrites: undoWrite, wantEventOf: outcome.ReasonRolledBack},
			{before: gaveUp, alerts: []alert.Alert{resolved}, want: []string{"not-healed revision-unhealthy"}, wantWrites: stateWrite, wantEventOf: outcome.ReasonRevisionUnhealthy},
			{alerts: []alert.Alert{web}, want: []string{"refused not-healed"}, wantEventOf: outcome.ReasonNotHealed},
			{alerts: []alert.Alert{again}, want: []string{"refused not-healed"}, wantEventOf: outcome.ReasonNotHealed},
		}},
		{name: "a repeat verifies too", steps: []step{
			{alerts: []alert.Alert{web}, want: []string{"rolled-back rolled-back"}, wantWrites: undoWrite, wantEventOf: outcome.ReasonRolledBack},
			// A copy within copyWindow is answered from memory; a repeat after it verifies.
			{before: rolledOut, alerts: []alert.Alert{web}, want: []string{"skipped already-handled"}},
			{later: copyWindow, alerts: []alert.Alert{web}, want: []string{"healed healed"}, wantWrites: stateWrite, wantEventOf: outcome.ReasonHealed},
			{later: copyWindow, alerts: []alert.Alert{web}, want: []string{"skipped already-handled"}},
		}},
		{name: "a workload never rolled back", steps: []step{
			{alerts: []alert.Alert{untouched}, want: []string{"skipped nothing-to-verify"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var objs []runtime.Object
			for _, name := range []string{"web", "api"} {
				d, rss := fixture.Deployment(ownNamespace, name, name+":v1", name+":v2")
				objs = append(append(objs, d), fixture.Objects(rss...)...)
			}
			c := fixture.Clientset(objs...)
			p, ev := newPipeline(t, c, Config{MaxAlerts: 10, MaxTargets: 10})
			start := time.Now()
			for i, s := range tt.steps {
				p.now = func() time.Time { return start.Add(s.later) }
				if s.before != nil {
					s.before(t, c)
				}
				c.ClearActions()
				ev.n = map[outcome.Reason]int{}
				resp := p.Run(context.Background(), &alert.Message{Alerts: s.alerts})
				var got []string
				for _, r := range resp.Results {
					got = append(got, string(r.Action)+" "+string(r.Reason))
				}
				if !cmp.Equal(got, s.want) {
					t.Fatalf("step %d: Run() = %v; want %v (%+v)", i, got, s.want, resp.Results)
				}
				var writes []string
				for _, a := range c.Actions() {
					if a.GetVerb() == "patch" {
						writes = append(writes, fieldsOf(t, a))
					}
				}
				if !cmp.Equal(writes, s.wantWrites) {
					t.Errorf("step %d: writes %v; want %v", i, writes, s.wantWrites)
				}
				want := map[outcome.Reason]int{}
				if s.wantEventOf != "" {
					want[s.wantEventOf] = 1
				}
				if diff := cmp.Diff(want, ev.n); diff != "" {
					t.Errorf("step %d: Events (-want +got):\n%s", i, diff)
				}
			}
		})
	}
}

// TestCopyWindow: a copy of an occurrence this process rolled back for is answered from
// memory for copyWindow; after it, a repeat reads the workload, which verifies the undo.
// An occurrence settled otherwise is answered from memory for as long as it is remembered.
func TestCopyWindow(t *testing.T) {
	at := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		v    handledUndo
		now  time.Time
		want bool
	}{
		{"an undo of this process, a copy right after", handledUndo{pending: true, at: at}, at.Add(time.Second), true},
		{"an undo of this process, a repeat later", handledUndo{pending: true, at: at}, at.Add(copyWindow), false},
		{"handled, as the workload's state said", handledUndo{at: at}, at.Add(time.Hour), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.v.fresh(tt.now); got != tt.want {
				t.Errorf("fresh() = %v; want %v", got, tt.want)
			}
		})
	}
}

// fieldsOf names what a recorded patch writes, as "metadata.annotations spec.template",
// the resourceVersion precondition apart.
func fieldsOf(t *testing.T, a k8stesting.Action) string {
	t.Helper()
	p := a.(k8stesting.PatchAction)
	var fields []string
	switch p.GetPatchType() {
	case types.JSONPatchType:
		var ops []struct{ Path string }
		if err := json.Unmarshal(p.GetPatch(), &ops); err != nil {
			t.Fatal(err)
		}
		for _, op := range ops {
			fields = append(fields, strings.ReplaceAll(strings.TrimPrefix(op.Path, "/"), "/", "."))
		}
	default:
		var m map[string]map[string]json.RawMessage
		if err := json.Unmarshal(p.GetPatch(), &m); err != nil {
			t.Fatal(err)
		}
		for top, inner := range m {
			for k := range inner {
				fields = append(fields, top+"."+k)
			}
		}
	}
	fields = slices.DeleteFunc(fields, func(f string) bool { return f == "metadata.resourceVersion" })
	slices.Sort(fields)
	return strings.Join(fields, " ")
}
