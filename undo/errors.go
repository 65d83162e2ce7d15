// Package undo rolls a workload back the way `kubectl rollout undo` does, with guards that
// make it safe to run from an alert: it never goes back to a revision it rolled back from,
// never undoes twice for one alert, and writes only under a resourceVersion precondition.
package undo

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/sre-kit/alert-rollback/target"
)

// Reasons an undo ends without changing the workload. Each is final: sending the same
// notification again gives the same answer, so none of them is worth a retry.
var (
	// Refusals: the function will not act; a human should look.
	ErrPaused             = errors.New("you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume' and try again")
	ErrNoPreviousRevision = errors.New("no rollout history found: there is no earlier revision to roll back to")
	ErrNoGoodRevision     = errors.New("every earlier revision was already rolled back from by this function; roll forward by hand")
	ErrCooldown           = errors.New("rolled back too recently (ROLLBACK_COOLDOWN)")
	ErrOptOut             = errors.New("the workload opted out with the annotation " + OptOutAnnotation + `="true"`)
	ErrBadState           = errors.New("the annotation " + StateAnnotation + " is not readable; fix or remove it")
	ErrTooManyTargets     = errors.New("the notification names more workloads than ROLLBACK_MAX_TARGETS; nothing was changed")

	// Skips: there is nothing to do.
	ErrAlreadyHandled  = errors.New("this alert already caused a rollback")
	ErrStale           = errors.New("stale: the alert is about a revision that is no longer the current one")
	ErrAlreadyAtTarget = errors.New("current template already matches the revision to roll back to")

	// ErrRolloutPending means the controller has not yet recorded the current template as a
	// revision, so "the previous revision" is not known yet. A retry a moment later helps.
	ErrRolloutPending = errors.New("the controller has not recorded the current template as a revision yet")
)

// Action is what happened to one target, as reported to the caller.
type Action string

// The four actions of the report.
const (
	RolledBack Action = "rolled-back"
	Skipped    Action = "skipped"
	Refused    Action = "refused"
	Failed     Action = "failed"
)

// ActionFor classifies the error an undo (or the target lookup before it) ended with.
func ActionFor(err error) Action {
	switch {
	case err == nil:
		return RolledBack
	case errors.Is(err, ErrAlreadyHandled), errors.Is(err, ErrStale), errors.Is(err, ErrAlreadyAtTarget):
		return Skipped
	case errors.Is(err, ErrPaused), errors.Is(err, ErrNoPreviousRevision), errors.Is(err, ErrNoGoodRevision),
		errors.Is(err, ErrCooldown), errors.Is(err, ErrOptOut), errors.Is(err, ErrBadState),
		errors.Is(err, ErrTooManyTargets),
		errors.Is(err, target.ErrNoWorkloadLabel), errors.Is(err, target.ErrInvalidName),
		errors.Is(err, target.ErrNamespaceDenied), errors.Is(err, target.ErrNotFound),
		errors.Is(err, target.ErrUnsupportedOwner):
		return Refused
	}
	return Failed
}

// Retryable reports whether a failure may go away if Alertmanager sends the notification
// again: the API server was unreachable, slow, overloaded or kept conflicting. Forbidden,
// invalid and similar answers will be the same next time.
func Retryable(err error) bool {
	if err == nil || ActionFor(err) != Failed {
		return false
	}
	if errors.Is(err, ErrRolloutPending) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		// Not an answer from the API server: retry only if it never got there (a transport
		// error). Anything else (a malformed ControllerRevision, say) will fail the same way.
		var netErr net.Error
		var urlErr *url.Error
		return errors.As(err, &netErr) || errors.As(err, &urlErr)
	}
	code := status.Status().Code
	return code >= http.StatusInternalServerError || code == http.StatusTooManyRequests ||
		code == http.StatusConflict || apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err)
}
