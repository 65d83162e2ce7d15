package kinds

import (
	"context"
	"encoding/json"
	"time"
)

// RolloutStatus is what `kubectl rollout status` says of a workload, by the rules of its
// kind (k8s.io/kubectl pkg/polymorphichelpers/rollout_status.go).
type RolloutStatus struct {
	// Done: the rollout is complete and its pods are available.
	Done bool
	// Failed: the rollout will not complete by itself (the Deployment controller gave up
	// on it, or the kind's strategy does not roll pods out at all).
	Failed bool
	// Message says which condition or which replica counts decide, in kubectl's words.
	Message string
	// DoneAt, when the kind records it, is when the rollout completed; zero otherwise.
	DoneAt time.Time
	// FailedAt, when the kind records it, is when the failure was found (the Deployment
	// controller's ProgressDeadlineExceeded): a failure found before an undo is the bad
	// rollout's, which the controller has not yet replaced with the undo's progress.
	FailedAt time.Time
	// Aborted: the rollout was aborted, so the revision that serves is not the newest one
	// (an Argo Rollout's stable revision); Done then says that revision's pods are available.
	Aborted bool
	// Paused: the rollout waits for people (an Argo Rollout paused at a canary step), so its
	// deadline does not run.
	Paused bool
	// Deadline is how long a rollout may take before it counts as failed: the kind's own
	// (a Deployment's progressDeadlineSeconds), else DefaultDeadline.
	Deadline time.Duration
}

// DefaultDeadline is the rollout deadline of kinds that have none of their own: the
// Deployment controller's default progressDeadlineSeconds, 600.
const DefaultDeadline = 10 * time.Minute

// Verifier is a Kind whose rollout can be checked after an undo: package undo then records
// the undo as awaiting verification, and later notifications check it.
type Verifier interface {
	// RolloutStatus is the status of w's rollout, from the object Load read.
	RolloutStatus(w *Workload) RolloutStatus
	// WriteState writes the state annotation alone, under the precondition that the
	// workload is still at w.ResourceVersion.
	WriteState(ctx context.Context, e *Env, w *Workload, state string, dryRun bool) error
}

// statePatch is a strategic merge patch of the state annotation
// alone, with the resourceVersion precondition.
func statePatch(w *Workload, state string) ([]byte, error) {
	return json.Marshal(map[string]any{"metadata": map[string]any{
		"resourceVersion": w.ResourceVersion,
		"annotations":     map[string]string{StateAnnotation: state},
	}})
}
