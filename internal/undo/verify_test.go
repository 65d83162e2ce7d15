package undo

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/sre-kit/alert-rollback/internal/fixture"
	"github.com/sre-kit/alert-rollback/internal/kinds"
)

// undoneAt is when the undo awaiting verification was made: a minute before now.
var undoneAt = now.Add(-time.Minute)

// rolledBack is a Deployment as the controller leaves it once this function rolled it back
// from v2 (revision 2) to v1 for the alert fp1: v1's ReplicaSet renumbered 3, the state
// awaiting verification of that undo, and the rollout status set by status.
func rolledBack(status func(*appsv1.Deployment)) (*appsv1.Deployment, []*appsv1.ReplicaSet) {
	d, rss := fixture.Deployment(ns, "web-front-end", "app:v1", "app:v2")
	rss[0].Annotations["deployment.kubernetes.io/revision"] = "3"
	rss[0].Annotations["deployment.kubernetes.io/revision-history"] = "1"
	d.Annotations["deployment.kubernetes.io/revision"] = "3"
	d.Spec.Template = fixture.Template("web-front-end", "app:v1")
	d.Spec.Replicas = ptr.To[int32](1)
	d.Generation = 2
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 2, UpdatedReplicas: 1}
	withState(d, State{Bad: []string{fixture.Hash("app:v2")}, Handled: []string{"fp1@1764118800"},
		Last:    &Record{At: undoneAt, Alert: "KubePodUnschedulable", From: 2, To: 1},
		Pending: &Verification{At: undoneAt, Revision: fixture.Hash("app:v1"), Number: 1, From: 2, Alerts: []string{"fp1"}}})
	if status != nil {
		status(d)
	}
	return d, rss
}

func available(d *appsv1.Deployment) {
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1,
		Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Reason: "NewReplicaSetAvailable",
			LastUpdateTime: metav1.NewTime(undoneAt.Add(20 * time.Second))}}}
}

func deadlineExceeded(d *appsv1.Deployment) { timedOut(d, undoneAt.Add(30*time.Second)) }

// timedOut sets the Deployment controller's ProgressDeadlineExceeded, found at at.
func timedOut(d *appsv1.Deployment, at time.Time) {
	d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: "False",
		Reason: "ProgressDeadlineExceeded", Message: `ReplicaSet "web-front-end-x" has timed out progressing.`,
		LastUpdateTime: metav1.NewTime(at), LastTransitionTime: metav1.NewTime(at)}}
}

// TestVerify: the state transitions of an undo awaiting verification, on each notification
// about the workload, resolved (no firing alert) or firing. Only a verdict writes, and only
// the state annotation, under the resourceVersion precondition; a resolved alert never
// causes an undo.
func TestVerify(t *testing.T) {
	resolved := Request{Ref: kinds.RefOf(kinds.Deployment, ns, "web-front-end"), Alert: "KubePodUnschedulable"}
	firing := func(ids ...string) Request { r := resolved; r.AlertIDs = ids; return r }
	stateWrite := []string{"get deployments", "list replicasets", "patch deployments"}
	tests := []struct {
		name string
		// workload builds the Deployment and its ReplicaSets.
		workload    func() (*appsv1.Deployment, []*appsv1.ReplicaSet)
		req         Request
		clock       time.Time
		wantErr     error
		wantVerdict Result
		wantActions []string
		wantSaid    []string
		// wantImage, when set, is the template's image afterwards: an undo was made.
		wantImage string
	}{
		{
			name: "rolled out: healed, with the time from the undo to healthy", workload: func() (*appsv1.Deployment, []*appsv1.ReplicaSet) { return rolledBack(available) },
			req: resolved, wantVerdict: Healed, wantActions: stateWrite,
			wantSaid: []string{"healed", `deployment "web-front-end" successfully rolled out`, "healthy 20s after the rollback"},
		},
		{
			name: "still rolling out within its deadline: verifying, nothing written", workload: func() (*appsv1.Deployment, []*appsv1.ReplicaSet) { return rolledBack(nil) },
			req: resolved, wantErr: ErrVerifying, wantActions: readDeployment,
			wantSaid: []string{"1 old replicas are pending termination", "10m0s"},
		},
		{
			name: "the Deployment controller gave up: not healed", workload: func() (*appsv1.Deployment, []*appsv1.ReplicaSet) { return rolledBack(deadlineExceeded) },
			req: resolved, wantVerdict: NotHealed, wantActions: stateWrite,
			wantSaid: []string{"the revision rolled back to fails too", "ProgressDeadlineExceeded", "has timed out progressing"},
		},
		{
			// The controller has not seen the undo's rollout progress yet: the failure it
			// shows is the bad rollout's, from before the undo.
			name: "the bad rollout's own ProgressDeadlineExceeded: verifying",
			workload: func() (*appsv1.Deployment, []*appsv1.ReplicaSet) {
				return rolledBack(func(d *appsv1.Deployment) { timedOut(d, undoneAt.Add(-time.Minute)) })
			},
			req: resolved, wantErr: ErrVerifying, wantActions: readDeployment,
			wantSaid: []string{"waiting for the controller to see the rollback's progress", "before the rollback"},
		},
		{
			name: "not rolled out past its deadline: not healed", workload: func() (*appsv1.Deployment, []*appsv1.ReplicaSet) { return rolledBack(nil) },
			req: resolved, clock: undoneAt.Add(11 * time.Minute), wantVerdict: NotHealed, wantActions: stateWrite,
			wantSaid: []string{"the revision rolled back to fails too", "not complete 11m0s after", "deadline 10m0s", "1 old replicas are pending termination"},
		},
		{
			name: "the undo not recorded by the controller yet: verifying",
			workload: func() (*appsv1.Deployment, []*appsv1.ReplicaSet) {
				d, rss := rolledBack(available)
				rss[0].Annotations["deployment.kubernetes.io/revision"] = "1"
				delete(rss[0].Annotations, "deployment.kubernetes.io/revision-history")
				d.Annotations["deployment.kubernetes.io/revision"] = "2"
				return d, rss
			},
			req: resolved, wantErr: ErrVerifying, wantActions: readDeployment,
			wantSaid: []string{"waiting for the controller to record the revision rolled back to"},
		},
		{
			name: "rolled out again since the undo: stale, nothing written",
			workload: func() (*appsv1.Deployment, []*appsv1.ReplicaSet) {
				d, rss := rolledBack(available)
				_, v4 := fixture.Deployment(ns, "web-front-end", "app:v4")
				v4[0].Annotations["deployment.kubernetes.io/revision"] = "4"
				d.Annotations["deployment.kubernetes.io/revision"] = "4"
				d.Spec.Template = fixture.Template("web-front-end", "app:v4")
				return d, append(rss, v4[0])
			},
			req: resolved, wantErr: ErrVerificationStale, wantActions: readDeployment,
			wantSaid: []string{"rolled out again", "revision 4 (" + fixture.Hash("app:v4") + ")"},
		},
		{
			name: "the template changed since the undo, not recorded yet: stale",
			workload: func() (*appsv1.Deployment, []*appsv1.ReplicaSet) {
				d, rss := rolledBack(available)
				d.Spec.Template = fixture.Template("web-front-end", "app:v4")
				return d, rss
			},
			req: resolved, wantErr: ErrVerificationStale, wantActions: readDeployment,
			wantSaid: []string{"template was changed since"},
		},
		{
			name: "the revision rolled back to is gone: stale, nothing written",
			workload: func() (*appsv1.Deployment, []*appsv1.ReplicaSet) {
				d, rss := rolledBack(available)
				s, _ := readState(d.Annotations)
				s.Pending.Revision = "5c8d9f7b6"
				return withState(d, s), rss
			},
			req: resolved, wantErr: ErrVerificationStale, wantActions: readDeployment,
			wantSaid: []string{"5c8d9f7b6", "no longer in the rollout history"},
		},
		{
			name: "never rolled back: nothing to verify, and no undo",
			workload: func() (*appsv1.Deployment, []*appsv1.ReplicaSet) {
				return fixture.Deployment(ns, "web-front-end", "app:v1", "app:v2")
			},
			req: resolved, wantErr: ErrNothingToVerify, wantActions: readDeployment,
		},
		{
			name: "garbage in the pending verification: bad state, nothing written",
			workload: func() (*appsv1.Deployment, []*appsv1.ReplicaSet) {
				d, rss := rolledBack(available)
				d.Annotations[StateAnnotation] = `{"pending":{"at":"2026-11-26T02:59:00Z","revision":"","alerts":["fp1"]}}`
				return d, rss
			},
			req: resolved, wantErr: ErrBadState, wantActions: readDeployment, wantSaid: []string{"pending names no revision"},
		},
		{
			name:     "a repeat while rolling out: the undo's own answer, already handled",
			workload: func() (*appsv1.Deployment, []*appsv1.ReplicaSet) { return rolledBack(nil) },
			req:      firing("fp1@1764118800"), wantErr: ErrAlreadyHandled, wantActions: readDeployment,
		},
		{
			name:     "a repeat once rolled out: healed, and no undo",
			workload: func() (*appsv1.Deployment, []*appsv1.ReplicaSet) { return rolledBack(available) },
			req:      firing("fp1@1764118800"), wantVerdict: Healed, wantActions: stateWrite, wantImage: "app:v1",
		},
		{
			name: "a firing alert after a stale verification: decided afresh, rolled back",
			workload: func() (*appsv1.Deployment, []*appsv1.ReplicaSet) {
				d, rss := rolledBack(available)
				_, v4 := fixture.Deployment(ns, "web-front-end", "app:v4")
				v4[0].Annotations["deployment.kubernetes.io/revision"] = "4"
				d.Annotations["deployment.kubernetes.io/revision"] = "4"
				d.Spec.Template = fixture.Template("web-front-end", "app:v4")
				s, _ := readState(d.Annotations)
				s.Last.At = now.Add(-time.Hour) // past the cooldown
				return withState(d, s), append(rss, v4[0])
			},
			req: firing("fp9@1764120000"), clock: now, wantActions: stateWrite, wantImage: "app:v1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, rss := tt.workload()
			objs := append(fixture.Objects(rss...), d)
			client := fixture.Clientset(objs...)
			u := undoer(client, false)
			if !tt.clock.IsZero() {
				u.opts.Now = func() time.Time { return tt.clock }
			}
			c, err := u.Undo(context.Background(), tt.req)
			if tt.wantErr == nil && err != nil || !errors.Is(err, tt.wantErr) {
				t.Fatalf("Undo() = %v; want %v", err, tt.wantErr)
			}
			if c.Verified != tt.wantVerdict {
				t.Errorf("Undo() verified %q; want %q", c.Verified, tt.wantVerdict)
			}
			said := c.Message
			if err != nil {
				said = err.Error()
			}
			for _, w := range tt.wantSaid {
				if !strings.Contains(said, w) {
					t.Errorf("the answer %q does not say %q", said, w)
				}
			}
			var got []string
			for _, a := range client.Actions() {
				got = append(got, a.GetVerb()+" "+a.GetResource().Resource)
			}
			if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(tt.wantActions))) {
				t.Errorf("API actions = %q; want %q", got, tt.wantActions)
			}
			changes, err := fixture.Changes(objs, client.Actions())
			if err != nil {
				t.Fatal(err)
			}
			for _, ch := range changes {
				if ch.Precondition != d.ResourceVersion {
					t.Errorf("patch precondition %q; want the resourceVersion read, %q", ch.Precondition, d.ResourceVersion)
				}
				if tt.wantVerdict != "" && !slices.Equal(ch.Fields, []string{"metadata.annotations"}) {
					t.Errorf("the verdict's patch changed %v; want the state annotation alone", ch.Fields)
				}
			}
			if tt.wantImage != "" {
				if got := image(t, client, kinds.Deployment, "web-front-end"); got != tt.wantImage {
					t.Errorf("image = %q; want %q", got, tt.wantImage)
				}
			}
			if tt.wantVerdict == "" {
				return
			}
			after, _ := client.AppsV1().Deployments(ns).Get(context.Background(), "web-front-end", metav1.GetOptions{})
			s, err := readState(after.Annotations)
			if err != nil {
				t.Fatal(err)
			}
			if s.Pending != nil || s.Verified == nil || s.Verified.Result != tt.wantVerdict || s.Verified.Revision != fixture.Hash("app:v1") {
				t.Errorf("state after the verdict: pending %+v, verified %+v; want none pending, verified %s of %s", s.Pending, s.Verified, tt.wantVerdict, fixture.Hash("app:v1"))
			}
			notHealed := slices.Contains(s.NotHealed, "fp1") && slices.Contains(s.Bad, fixture.Hash("app:v1"))
			if notHealed != (tt.wantVerdict == NotHealed) {
				t.Errorf("state after %s: not healed %v, bad %v; want fp1 and the revision rolled back to recorded only when not healed", tt.wantVerdict, s.NotHealed, s.Bad)
			}
		})
	}
}

// TestNotHealedIsNeverUndoneAgainByTheSameAlert: once an undo did not heal, the alert that
// caused it (its fingerprint, whatever its startsAt: the same condition firing again) is
// refused with its own reason and causes no write; another alert may still cause an undo,
// which does not go back to the revision that failed.
func TestNotHealedIsNeverUndoneAgainByTheSameAlert(t *testing.T) {
	d, rss := fixture.Deployment(ns, "web-front-end", "app:v1", "app:v2", "app:v3")
	withState(d, State{Bad: []string{fixture.Hash("app:v3")}, NotHealed: []string{"fp1"},
		Last:     &Record{At: now.Add(-time.Hour), From: 3, To: 2},
		Verified: &Verdict{Verification: Verification{At: now.Add(-time.Hour), Revision: fixture.Hash("app:v2"), Number: 2, From: 3, Alerts: []string{"fp1"}}, Result: NotHealed, VerifiedAt: now.Add(-50 * time.Minute)}})
	d.Spec.Template = fixture.Template("web-front-end", "app:v2")
	tests := []struct {
		name      string
		id        string
		wantErr   error
		wantImage string
	}{
		{"the same occurrence", "fp1@1764118800", ErrNotHealed, "app:v2"},
		{"the same alert firing again later", "fp1@" + strconv.FormatInt(now.Unix(), 10), ErrNotHealed, "app:v2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := fixture.Clientset(append(fixture.Objects(rss...), d.DeepCopy())...)
			_, err := undoer(client, false).Undo(context.Background(), request(kinds.Deployment, "web-front-end", tt.id))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Undo() = %v; want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), "people must act") || !strings.Contains(err.Error(), "not-healed") {
				t.Errorf("the refusal %q does not say that people must act, and what was found", err)
			}
			if w := writesOf(client); len(w) != 0 {
				t.Errorf("writes %v; want none", w)
			}
		})
	}
}

// TestVerdictConflictIsRetried: the verdict is written under the resourceVersion read; when
// the workload changed in between (the controller's status write), it reads and decides
// again, and the second write lands.
func TestVerdictConflictIsRetried(t *testing.T) {
	d, rss := rolledBack(available)
	client := fixture.Clientset(append(fixture.Objects(rss...), d)...)
	n := 0
	client.PrependReactor("patch", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) {
		n++
		if n == 1 {
			return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "apps", Resource: "deployments"}, "web-front-end", errors.New("changed"))
		}
		return false, nil, nil
	})
	c, err := undoer(client, false).Undo(context.Background(), Request{Ref: kinds.RefOf(kinds.Deployment, ns, "web-front-end")})
	if err != nil || c.Verified != Healed {
		t.Fatalf("Undo() = %+v, %v; want healed after one conflict", c, err)
	}
	if n != 2 {
		t.Errorf("%d patches; want 2: the conflict, then the verdict", n)
	}
}

// TestVerifyControllerRevisionKinds: a StatefulSet's or DaemonSet's undo is verified by its
// ControllerRevision's name, and by its own kind's rules: a StatefulSet with the OnDelete
// strategy cannot roll the undo out at all.
func TestVerifyControllerRevisionKinds(t *testing.T) {
	pending := func(name string) State {
		return State{Handled: []string{"fp1@1764118800"}, Last: &Record{At: undoneAt, From: 2, To: 1},
			Pending: &Verification{At: undoneAt, Revision: name + "-" + fixture.Hash("app:v1"), Number: 1, From: 2, Alerts: []string{"fp1"}}}
	}
	statefulSet := func(strategy appsv1.StatefulSetUpdateStrategyType, status appsv1.StatefulSetStatus) []runtime.Object {
		s, crs := fixture.StatefulSet(ns, "db", "app:v1", "app:v2")
		crs[0].Revision = 3 // the controller renumbers the revision rolled back to
		s.Spec.Template = fixture.Template("db", "app:v1")
		s.Spec.Replicas = ptr.To[int32](2)
		s.Spec.UpdateStrategy.Type = strategy
		s.Generation, s.Annotations = 2, map[string]string{}
		status.ObservedGeneration, status.UpdateRevision = 2, crs[0].Name
		s.Status = status
		b, _ := pending("db").encode()
		s.Annotations[StateAnnotation] = b
		return append(fixture.Objects(crs...), s)
	}
	daemonSet := func(status appsv1.DaemonSetStatus, renumbered bool) []runtime.Object {
		d, crs := fixture.DaemonSet(ns, "agent", "app:v1", "app:v2")
		if renumbered {
			crs[0].Revision = 3
		}
		d.Spec.Template = fixture.Template("agent", "app:v1")
		d.Generation, d.Annotations = 2, map[string]string{}
		status.ObservedGeneration = 2
		d.Status = status
		b, _ := pending("agent").encode()
		d.Annotations[StateAnnotation] = b
		return append(fixture.Objects(crs...), d)
	}
	tests := []struct {
		name        string
		kind        schema.GroupKind
		objects     []runtime.Object
		wantErr     error
		wantVerdict Result
		wantSaid    string
	}{
		{"StatefulSet rolled out", kinds.StatefulSet,
			statefulSet(appsv1.RollingUpdateStatefulSetStrategyType, appsv1.StatefulSetStatus{ReadyReplicas: 2, UpdatedReplicas: 2, CurrentReplicas: 2, CurrentRevision: "db-" + fixture.Hash("app:v1")}),
			nil, Healed, "rolling update complete"},
		{"StatefulSet pods not ready", kinds.StatefulSet,
			statefulSet(appsv1.RollingUpdateStatefulSetStrategyType, appsv1.StatefulSetStatus{ReadyReplicas: 1, UpdatedReplicas: 1}),
			ErrVerifying, "", "waiting for 1 pods"},
		{"StatefulSet with OnDelete", kinds.StatefulSet,
			statefulSet(appsv1.OnDeleteStatefulSetStrategyType, appsv1.StatefulSetStatus{ReadyReplicas: 2}),
			nil, NotHealed, "no pod is replaced until it is deleted"},
		{"DaemonSet rolled out", kinds.DaemonSet,
			daemonSet(appsv1.DaemonSetStatus{DesiredNumberScheduled: 1, UpdatedNumberScheduled: 1, NumberAvailable: 1}, true),
			nil, Healed, "successfully rolled out"},
		{"DaemonSet rolling out", kinds.DaemonSet,
			daemonSet(appsv1.DaemonSetStatus{DesiredNumberScheduled: 1, UpdatedNumberScheduled: 1}, true),
			ErrVerifying, "", "0 of 1 updated pods are available"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := fixture.Clientset(tt.objects...)
			name := tt.objects[len(tt.objects)-1].(metav1.Object).GetName()
			c, err := undoer(client, false).Undo(context.Background(), Request{Ref: kinds.RefOf(tt.kind, ns, name)})
			if tt.wantErr == nil && err != nil || !errors.Is(err, tt.wantErr) {
				t.Fatalf("Undo() = %v; want %v", err, tt.wantErr)
			}
			said := c.Message
			if err != nil {
				said = err.Error()
			}
			if c.Verified != tt.wantVerdict || !strings.Contains(said, tt.wantSaid) {
				t.Errorf("Undo() verified %q: %q; want %q saying %q", c.Verified, said, tt.wantVerdict, tt.wantSaid)
			}
			changes, err := fixture.Changes(tt.objects, client.Actions())
			if err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{true: 1, false: 0}[tt.wantVerdict != ""]; len(changes) != want {
				t.Fatalf("%d writes; want %d", len(changes), want)
			}
			for _, ch := range changes {
				if !slices.Equal(ch.Fields, []string{"metadata.annotations"}) || ch.Precondition != ch.Read {
					t.Errorf("the verdict's patch changed %v under precondition %q; want the state annotation alone, under %q", ch.Fields, ch.Precondition, ch.Read)
				}
			}
		})
	}
}
