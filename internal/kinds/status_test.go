package kinds

import (
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
)

// The cases mirror k8s.io/kubectl pkg/polymorphichelpers/rollout_status_test.go: each
// status field that decides, on its own, for each kind. want is the start of the message.
type statusCase struct {
	name       string
	done, fail bool
	want       string
}

func TestDeploymentStatus(t *testing.T) {
	progressing := func(reason string) []appsv1.DeploymentCondition {
		return []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Reason: reason, Message: "rs progress",
			LastUpdateTime: metav1.NewTime(time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC))}}
	}
	tests := []struct {
		statusCase
		generation int64
		replicas   *int32
		deadline   *int32
		status     appsv1.DeploymentStatus
		wantAt     bool
	}{
		{statusCase: statusCase{name: "spec not observed yet", want: "waiting for deployment spec update to be observed"},
			generation: 2, replicas: ptr.To[int32](1), status: appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1}},
		{statusCase: statusCase{name: "progress deadline exceeded", fail: true, want: `deployment "web" exceeded its progress deadline`},
			generation: 1, replicas: ptr.To[int32](1), status: appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 2, UpdatedReplicas: 1, Conditions: progressing(timedOutReason)}},
		{statusCase: statusCase{name: "replicas not all updated", want: `waiting for deployment "web" rollout to finish: 1 out of 2 new replicas have been updated`},
			generation: 1, replicas: ptr.To[int32](2), status: appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 2, UpdatedReplicas: 1}},
		{statusCase: statusCase{name: "old replicas pending termination", want: `waiting for deployment "web" rollout to finish: 1 old replicas are pending termination`},
			generation: 1, replicas: ptr.To[int32](1), status: appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 2, UpdatedReplicas: 1, AvailableReplicas: 1}},
		{statusCase: statusCase{name: "updated replicas not available", want: `waiting for deployment "web" rollout to finish: 0 of 1 updated replicas are available`},
			generation: 1, replicas: ptr.To[int32](1), status: appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 1, UpdatedReplicas: 1}},
		{statusCase: statusCase{name: "rolled out", done: true, want: `deployment "web" successfully rolled out`},
			generation: 1, replicas: ptr.To[int32](1), wantAt: true,
			status: appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1, Conditions: progressing(newRSAvailableReason)}},
		{statusCase: statusCase{name: "rolled out, no Progressing condition: no time", done: true, want: `deployment "web" successfully rolled out`},
			generation: 1, replicas: ptr.To[int32](1), status: appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1}},
		{statusCase: statusCase{name: "its own deadline", want: "waiting"},
			generation: 1, replicas: ptr.To[int32](1), deadline: ptr.To[int32](30), status: appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 1, UpdatedReplicas: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Generation: tt.generation},
				Spec: appsv1.DeploymentSpec{Replicas: tt.replicas, ProgressDeadlineSeconds: tt.deadline}, Status: tt.status}
			got := deployment{}.RolloutStatus(&Workload{object: d})
			check(t, tt.statusCase, got)
			if tt.wantAt == got.DoneAt.IsZero() {
				t.Errorf("DoneAt = %v; want it set %v (from the Progressing condition when it says NewReplicaSetAvailable)", got.DoneAt, tt.wantAt)
			}
			want := 600 * time.Second
			if tt.deadline != nil {
				want = time.Duration(*tt.deadline) * time.Second
			}
			if got.Deadline != want {
				t.Errorf("Deadline = %s; want %s (progressDeadlineSeconds)", got.Deadline, want)
			}
		})
	}
}

func TestStatefulSetStatus(t *testing.T) {
	rolling := func(partition *int32) appsv1.StatefulSetUpdateStrategy {
		return appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType,
			RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: partition}}
	}
	tests := []struct {
		statusCase
		generation int64
		strategy   appsv1.StatefulSetUpdateStrategy
		status     appsv1.StatefulSetStatus
	}{
		{statusCase: statusCase{name: "OnDelete: an undo rolls nothing out", fail: true, want: `statefulset "db" has the OnDelete update strategy`},
			generation: 1, strategy: appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType},
			status: appsv1.StatefulSetStatus{ObservedGeneration: 1, ReadyReplicas: 3, UpdatedReplicas: 3}},
		{statusCase: statusCase{name: "never observed", want: "waiting for statefulset spec update to be observed"},
			generation: 1, strategy: rolling(ptr.To[int32](0))},
		{statusCase: statusCase{name: "spec not observed yet", want: "waiting for statefulset spec update to be observed"},
			generation: 2, strategy: rolling(ptr.To[int32](0)), status: appsv1.StatefulSetStatus{ObservedGeneration: 1, ReadyReplicas: 3}},
		{statusCase: statusCase{name: "pods not ready", want: `waiting for 1 pods of statefulset "db" to be ready`},
			generation: 1, strategy: rolling(ptr.To[int32](0)), status: appsv1.StatefulSetStatus{ObservedGeneration: 1, ReadyReplicas: 2, UpdatedReplicas: 3}},
		{statusCase: statusCase{name: "partitioned, not all updated", want: `waiting for partitioned roll out of statefulset "db" to finish: 1 out of 2 new pods`},
			generation: 1, strategy: rolling(ptr.To[int32](1)), status: appsv1.StatefulSetStatus{ObservedGeneration: 1, ReadyReplicas: 3, UpdatedReplicas: 1}},
		{statusCase: statusCase{name: "partitioned, complete", done: true, want: `partitioned roll out of statefulset "db" complete: 2 new pods`},
			generation: 1, strategy: rolling(ptr.To[int32](1)), status: appsv1.StatefulSetStatus{ObservedGeneration: 1, ReadyReplicas: 3, UpdatedReplicas: 2}},
		{statusCase: statusCase{name: "revisions differ", want: `waiting for statefulset "db" rolling update to complete: 2 pods at revision db-2`},
			generation: 1, strategy: appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType},
			status: appsv1.StatefulSetStatus{ObservedGeneration: 1, ReadyReplicas: 3, UpdatedReplicas: 2, CurrentRevision: "db-1", UpdateRevision: "db-2"}},
		{statusCase: statusCase{name: "rolling update complete", done: true, want: `statefulset "db" rolling update complete: 3 pods at revision db-2`},
			generation: 1, strategy: appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType},
			status: appsv1.StatefulSetStatus{ObservedGeneration: 1, ReadyReplicas: 3, UpdatedReplicas: 3, CurrentReplicas: 3, CurrentRevision: "db-2", UpdateRevision: "db-2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db", Generation: tt.generation},
				Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](3), UpdateStrategy: tt.strategy}, Status: tt.status}
			got := statefulSet{}.RolloutStatus(&Workload{object: s})
			check(t, tt.statusCase, got)
			if got.Deadline != DefaultDeadline {
				t.Errorf("Deadline = %s; want %s", got.Deadline, DefaultDeadline)
			}
		})
	}
}

func TestDaemonSetStatus(t *testing.T) {
	rolling := appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType}
	tests := []struct {
		statusCase
		generation int64
		strategy   appsv1.DaemonSetUpdateStrategy
		status     appsv1.DaemonSetStatus
	}{
		{statusCase: statusCase{name: "OnDelete: an undo rolls nothing out", fail: true, want: `daemon set "agent" has the OnDelete update strategy`},
			generation: 1, strategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.OnDeleteDaemonSetStrategyType},
			status: appsv1.DaemonSetStatus{ObservedGeneration: 1, DesiredNumberScheduled: 2, UpdatedNumberScheduled: 2, NumberAvailable: 2}},
		{statusCase: statusCase{name: "spec not observed yet", want: "waiting for daemon set spec update to be observed"},
			generation: 2, strategy: rolling, status: appsv1.DaemonSetStatus{ObservedGeneration: 1, DesiredNumberScheduled: 2, UpdatedNumberScheduled: 2, NumberAvailable: 2}},
		{statusCase: statusCase{name: "pods not all updated", want: `waiting for daemon set "agent" rollout to finish: 1 out of 2 new pods have been updated`},
			generation: 1, strategy: rolling, status: appsv1.DaemonSetStatus{ObservedGeneration: 1, DesiredNumberScheduled: 2, UpdatedNumberScheduled: 1, NumberAvailable: 2}},
		{statusCase: statusCase{name: "updated pods not available", want: `waiting for daemon set "agent" rollout to finish: 1 of 2 updated pods are available`},
			generation: 1, strategy: rolling, status: appsv1.DaemonSetStatus{ObservedGeneration: 1, DesiredNumberScheduled: 2, UpdatedNumberScheduled: 2, NumberAvailable: 1}},
		{statusCase: statusCase{name: "rolled out", done: true, want: `daemon set "agent" successfully rolled out`},
			generation: 1, strategy: rolling, status: appsv1.DaemonSetStatus{ObservedGeneration: 1, DesiredNumberScheduled: 2, UpdatedNumberScheduled: 2, NumberAvailable: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "agent", Generation: tt.generation},
				Spec: appsv1.DaemonSetSpec{UpdateStrategy: tt.strategy}, Status: tt.status}
			check(t, tt.statusCase, daemonSet{}.RolloutStatus(&Workload{object: d}))
		})
	}
}

// TestEveryKindVerifies: every kind of the registry says whether its rollout finished, so
// every undo can be verified; a new kind adds its own RolloutStatus.
func TestEveryKindVerifies(t *testing.T) {
	for _, k := range All() {
		if _, ok := k.(Verifier); !ok {
			t.Errorf("%s has no RolloutStatus: its undos cannot be verified", k.GroupVersionKind().Kind)
		}
	}
}

func check(t *testing.T, tt statusCase, got RolloutStatus) {
	t.Helper()
	if got.Done != tt.done || got.Failed != tt.fail || !strings.HasPrefix(got.Message, tt.want) {
		t.Errorf("RolloutStatus() = done %v, failed %v, %q; want done %v, failed %v, %q...", got.Done, got.Failed, got.Message, tt.done, tt.fail, tt.want)
	}
}

func TestRolloutStatus(t *testing.T) {
	healthy := map[string]any{"type": "Healthy", "status": "True", "lastTransitionTime": "2026-12-07T10:00:00Z"}
	aborted := func(phase, message string, available int64) map[string]any {
		return map[string]any{"phase": phase, "message": message, "abort": true, "stableRS": "abc", "availableReplicas": available}
	}
	tests := []struct {
		statusCase
		status map[string]any
		// state is what Load found: the spec observed, the stable ReplicaSet's available pods.
		state   rolloutState
		aborted bool
		paused  bool
		doneAt  string
	}{
		{statusCase: statusCase{name: "spec not observed", want: "waiting for rollout spec update to be observed"},
			status: map[string]any{"phase": "Healthy"}},
		{statusCase: statusCase{name: "healthy", done: true, want: `rollout "web" is Healthy: 2 of 2 replicas available`},
			status: map[string]any{"phase": "Healthy", "availableReplicas": int64(2), "conditions": []any{healthy}},
			state:  rolloutState{observed: true}, doneAt: "2026-12-07T10:00:00Z"},
		{statusCase: statusCase{name: "paused at a canary step: waits for people, no deadline", want: `rollout "web" is paused (CanaryPauseStep)`},
			status: map[string]any{"phase": "Paused", "message": "CanaryPauseStep", "availableReplicas": int64(2)},
			state:  rolloutState{observed: true}, paused: true},
		{statusCase: statusCase{name: "progress deadline exceeded", fail: true, want: `rollout "web" is Degraded: ProgressDeadlineExceeded`},
			status: map[string]any{"phase": "Degraded", "message": "ProgressDeadlineExceeded: ReplicaSet has timed out progressing"},
			state:  rolloutState{observed: true}},
		{statusCase: statusCase{name: "aborted, seen by the controller, the stable pods available", done: true, want: `rollout "web" aborted: its stable revision (abc) serves, 2 of 2`},
			status: aborted("Degraded", "RolloutAborted: Rollout aborted update to revision 2", 2),
			state:  rolloutState{observed: true, stableAvailable: 2}, aborted: true},
		{statusCase: statusCase{name: "aborted, the stable pods not all available (the canary's count)", want: `waiting for rollout "web": aborted (Degraded RolloutAborted`},
			status: aborted("Degraded", "RolloutAborted: Rollout aborted update to revision 2", 2),
			state:  rolloutState{observed: true, stableAvailable: 1}, aborted: true},
		{statusCase: statusCase{name: "aborted by the undo, not yet acted on by the controller", want: `waiting for rollout "web": aborted (Paused CanaryPauseStep)`},
			status: aborted("Paused", "CanaryPauseStep", 2),
			state:  rolloutState{observed: true, stableAvailable: 2}, aborted: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := &unstructured.Unstructured{Object: map[string]any{
				"metadata": map[string]any{"name": "web", "generation": int64(2)},
				"spec":     map[string]any{"replicas": int64(2), "progressDeadlineSeconds": int64(120)},
				"status":   tt.status,
			}}
			got := rollout{}.RolloutStatus(&Workload{object: u, Own: &tt.state})
			check(t, tt.statusCase, got)
			if got.Aborted != tt.aborted || got.Paused != tt.paused || got.Deadline != 2*time.Minute {
				t.Errorf("aborted %v, paused %v, deadline %s; want %v, %v, 2m0s", got.Aborted, got.Paused, got.Deadline, tt.aborted, tt.paused)
			}
			if at := got.DoneAt.UTC().Format(time.RFC3339); tt.doneAt != "" && at != tt.doneAt {
				t.Errorf("DoneAt %s; want %s", at, tt.doneAt)
			}
		})
	}
}

func TestObservedAtLeast(t *testing.T) {
	tests := []struct {
		name   string
		status string
		want   bool
	}{
		{"equal", "3", true},
		{"newer", "4", true},
		{"older", "2", false},
		{"empty: never observed is not a number either, as Argo reads it", "", true},
		{"a hash, as older controllers wrote", "7b5c9f", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := observedAtLeast(tt.status, 3); got != tt.want {
				t.Errorf("observedAtLeast(%q, 3) = %v; want %v", tt.status, got, tt.want)
			}
		})
	}
}
