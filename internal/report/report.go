// Package report records what the function did as Kubernetes Events on each workload, so
// `kubectl describe` shows it next to the rollout.
package report

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"

	"github.com/sre-kit/alert-rollback/internal/clip"
	"github.com/sre-kit/alert-rollback/internal/kinds"
	"github.com/sre-kit/alert-rollback/internal/kube"
	"github.com/sre-kit/alert-rollback/internal/outcome"
)

// Event reasons, one per action, as `kubectl describe` and `kubectl get events` show them.
// The outcome's own reason code is in the message and in the annotation ReasonAnnotation.
const (
	ReasonRolledBack = "RolledBack"
	ReasonDryRun     = "RollbackDryRun"
	ReasonSkipped    = "RollbackSkipped"
	ReasonRefused    = "RollbackRefused"
	ReasonFailed     = "RollbackFailed"
	// ReasonHealed and ReasonNotHealed are the verdicts on an earlier undo: the first says
	// how long the workload took to be healthy, the second what is wrong (the revision
	// rolled back to fails too), for people to act on.
	ReasonHealed    = "RollbackHealed"
	ReasonNotHealed = "RollbackNotHealed"
)

// ReasonAnnotation on an Event holds the outcome's reason code (outcome.Reason), so
// tools can select Events by it.
const ReasonAnnotation = "alert-rollback.dev/reason"

// Events records Kubernetes Events. Sending is asynchronous (client-go's broadcaster), so
// the answer to Alertmanager never waits on it, and repeated identical events are
// aggregated by client-go's correlator instead of flooding the API server.
type Events struct {
	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder
}

// NewEvents starts recording events through client as component.
func NewEvents(client kube.Client, component string) *Events {
	b := record.NewBroadcaster()
	b.StartRecordingToSink(kube.EventSink{Client: client})
	return &Events{broadcaster: b, recorder: b.NewRecorder(kube.Scheme(), corev1.EventSource{Component: component})}
}

// Record emits the event for a result about the workload w, whose UID is uid. Without a UID
// there is no object to attach it to (the workload was never found), so nothing is sent.
func (e *Events) Record(w kinds.Ref, uid types.UID, r outcome.Result) {
	if e == nil || uid == "" {
		return
	}
	ref := &corev1.ObjectReference{APIVersion: w.APIVersion(), Kind: w.Kind, Namespace: w.Namespace, Name: w.Name, UID: uid}
	reason, kind := EventReason(r)
	e.recorder.AnnotatedEventf(ref, map[string]string{ReasonAnnotation: string(r.Reason)}, kind, reason, "%s", message(r.String()))
}

// ReasonSuspended is the reason of the Event on a GitOps owner (an Argo CD Application, a
// Flux Kustomization) suspended so that a rollback lasts. A Warning: someone
// has to resume it once Git is fixed.
const ReasonSuspended = "SuspendedForRollback"

// RecordRelated emits the Event on an object changed for the undo of a result's workload
// besides the workload itself: a suspended GitOps owner. It names the workload and says
// what happened to it, so people looking at the owner know why it stopped reconciling.
func (e *Events) RecordRelated(ref corev1.ObjectReference, r outcome.Result) {
	if e == nil {
		return
	}
	e.recorder.AnnotatedEventf(&ref, map[string]string{ReasonAnnotation: string(r.Reason)}, corev1.EventTypeWarning,
		ReasonSuspended, "%s", message(fmt.Sprintf("for %s %s/%s: %s", r.Kind, r.Namespace, r.Name, r.String())))
}

// message is an Event's message as written: it quotes the alert, which is caller text, so
// it is clipped (clip.String).
func message(s string) string { return clip.String(s, clip.Max) }

// Shutdown flushes what it can and stops the broadcaster.
func (e *Events) Shutdown() {
	if e != nil {
		e.broadcaster.Shutdown()
	}
}

// EventReason is the event reason and type for a result.
func EventReason(r outcome.Result) (reason, eventType string) {
	switch r.Action {
	case outcome.RolledBack:
		if r.DryRun {
			return ReasonDryRun, corev1.EventTypeNormal
		}
		return ReasonRolledBack, corev1.EventTypeNormal
	case outcome.Skipped:
		return ReasonSkipped, corev1.EventTypeNormal
	case outcome.Refused:
		return ReasonRefused, corev1.EventTypeWarning
	case outcome.Healed:
		return ReasonHealed, corev1.EventTypeNormal
	case outcome.NotHealed:
		return ReasonNotHealed, corev1.EventTypeWarning
	}
	return ReasonFailed, corev1.EventTypeWarning
}
