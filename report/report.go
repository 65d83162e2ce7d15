// Package report says what the function did: the JSON answer for the caller, and a
// Kubernetes Event on each workload so `kubectl describe` shows it next to the rollout.
package report

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/sre-kit/alert-rollback/undo"
)

// Result is what happened for one workload (or one alert that named no usable workload).
type Result struct {
	AlertName    string      `json:"alertname"`
	Fingerprint  string      `json:"fingerprint"`
	Namespace    string      `json:"namespace"`
	Kind         string      `json:"kind"`
	Name         string      `json:"name"`
	Action       undo.Action `json:"action"`
	Reason       string      `json:"reason"`
	FromRevision int64       `json:"fromRevision"`
	ToRevision   int64       `json:"toRevision"`
	// DryRun is true when nothing was changed on purpose (ROLLBACK_DRY_RUN).
	DryRun bool `json:"dryRun"`
	// Alerts counts the alerts of the notification this result answers (several alerts
	// about one workload make one undo).
	Alerts int `json:"alerts"`
	// Retryable marks a failure a later delivery may fix; it decides the HTTP status.
	Retryable bool `json:"retryable,omitempty"`
}

// Response is the body of the answer (the data of the CloudEvent answer).
type Response struct {
	Results []Result `json:"results"`
	// Ignored counts alerts not acted on: resolved, or not matching ROLLBACK_MATCH.
	Ignored int `json:"ignored"`
	// TruncatedAlerts is Alertmanager's count of alerts it left out (max_alerts).
	TruncatedAlerts int `json:"truncatedAlerts"`
}

// Event reasons, one per outcome, as `kubectl describe` and `kubectl get events` show them.
const (
	ReasonRolledBack = "RolledBack"
	ReasonDryRun     = "RollbackDryRun"
	ReasonSkipped    = "RollbackSkipped"
	ReasonRefused    = "RollbackRefused"
	ReasonFailed     = "RollbackFailed"
)

// Events records Kubernetes Events. Sending is asynchronous (client-go's broadcaster), so
// the answer to Alertmanager never waits on it, and repeated identical events are
// aggregated by client-go's correlator instead of flooding the API server.
type Events struct {
	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder
}

// NewEvents starts recording events through client as component.
func NewEvents(client kubernetes.Interface, component string) *Events {
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	return &Events{broadcaster: b, recorder: b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: component})}
}

// Record emits the event for a result about a workload with the given UID. Without a UID
// there is no object to attach it to (the workload was never found), so nothing is sent.
func (e *Events) Record(uid types.UID, r Result) {
	if e == nil || uid == "" {
		return
	}
	ref := &corev1.ObjectReference{APIVersion: "apps/v1", Kind: r.Kind, Namespace: r.Namespace, Name: r.Name, UID: uid}
	reason, kind := EventReason(r)
	e.recorder.Event(ref, kind, reason, Message(r))
}

// Shutdown flushes what it can and stops the broadcaster.
func (e *Events) Shutdown() {
	if e != nil {
		e.broadcaster.Shutdown()
	}
}

// EventReason is the event reason and type for a result.
func EventReason(r Result) (reason, eventType string) {
	switch r.Action {
	case undo.RolledBack:
		if r.DryRun {
			return ReasonDryRun, corev1.EventTypeNormal
		}
		return ReasonRolledBack, corev1.EventTypeNormal
	case undo.Skipped:
		return ReasonSkipped, corev1.EventTypeNormal
	case undo.Refused:
		return ReasonRefused, corev1.EventTypeWarning
	}
	return ReasonFailed, corev1.EventTypeWarning
}

// Message is the one-line human account of a result, used for events and logs.
func Message(r Result) string {
	alert := fmt.Sprintf("alert %s (%s)", r.AlertName, r.Fingerprint)
	switch {
	case r.Action == undo.RolledBack && r.DryRun:
		return fmt.Sprintf("dry run: %s would roll back from revision %d to revision %d", alert, r.FromRevision, r.ToRevision)
	case r.Action == undo.RolledBack:
		return fmt.Sprintf("%s rolled back from revision %d to revision %d", alert, r.FromRevision, r.ToRevision)
	}
	return fmt.Sprintf("%s: %s: %s", alert, r.Action, r.Reason)
}
