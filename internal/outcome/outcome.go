// Package outcome is the one vocabulary for what happened to a notification: the action
// taken for each workload, a stable reason code beside the human sentence, the result rows
// of the answer, and the HTTP status Alertmanager gets. The steps of the data path (target,
// undo) only return errors; this package classifies them, in one table.
package outcome

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/sre-kit/alert-rollback/internal/alert"
	"github.com/sre-kit/alert-rollback/internal/budget"
	"github.com/sre-kit/alert-rollback/internal/gitops"
	"github.com/sre-kit/alert-rollback/internal/target"
	"github.com/sre-kit/alert-rollback/internal/undo"
)

// Action is what happened to one workload (or one alert that named no usable workload).
type Action string

// The actions of the report: the four of an undo, and the two verdicts of a verification
// of an earlier undo.
const (
	RolledBack Action = "rolled-back"
	Skipped    Action = "skipped"
	Refused    Action = "refused"
	Failed     Action = "failed"
	Healed     Action = "healed"
	NotHealed  Action = "not-healed"
)

// Reason is a stable, machine-readable code for why an outcome is what it is. Users alert
// and build dashboards on these: a code, once published, keeps its meaning.
type Reason string

// The reason codes, documented in the README.
const (
	// rolled-back
	ReasonRolledBack Reason = "rolled-back"
	ReasonDryRun     Reason = "dry-run"

	// healed, not-healed: the verdict on an earlier undo.
	ReasonHealed            Reason = "healed"
	ReasonRevisionUnhealthy Reason = "revision-unhealthy"

	// skipped: there is nothing to do.
	ReasonAlreadyHandled    Reason = "already-handled"
	ReasonStale             Reason = "stale"
	ReasonAlreadyAtTarget   Reason = "already-at-target"
	ReasonVerifying         Reason = "verifying"
	ReasonVerificationStale Reason = "verification-stale"
	ReasonNothingToVerify   Reason = "nothing-to-verify"

	// refused: the function will not act; a human should look.
	ReasonPaused             Reason = "paused"
	ReasonNoPreviousRevision Reason = "no-previous-revision"
	ReasonNoGoodRevision     Reason = "no-good-revision"
	ReasonCooldown           Reason = "cooldown"
	ReasonOptedOut           Reason = "opted-out"
	ReasonBadState           Reason = "bad-state"
	ReasonTooManyTargets     Reason = "too-many-targets"
	ReasonTooManyAlerts      Reason = "too-many-alerts"
	ReasonNoWorkloadLabel    Reason = "no-workload-label"
	ReasonNoNamespace        Reason = "no-namespace"
	ReasonInvalidName        Reason = "invalid-name"
	ReasonNamespaceDenied    Reason = "namespace-denied"
	ReasonNotFound           Reason = "not-found"
	ReasonUnsupportedOwner   Reason = "unsupported-owner"
	ReasonControllerOwned    Reason = "controller-owned"
	ReasonTrafficPinned      Reason = "traffic-pinned"
	ReasonForeignHistory     Reason = "foreign-history"
	ReasonTooOld             Reason = "too-old"
	ReasonPredatesRollout    Reason = "predates-rollout"
	ReasonNotHealed          Reason = "not-healed"
	ReasonBudgetExhausted    Reason = "budget-exhausted"
	ReasonGitOpsManaged      Reason = "gitops-managed"
	ReasonGitOpsOwnerMissing Reason = "gitops-owner-missing"
	ReasonGitOpsUnknown      Reason = "gitops-unknown"
	ReasonGitOpsParent       Reason = "gitops-parent-managed"
	ReasonGitOpsUnverified   Reason = "gitops-unverified"

	// failed: a retry may help (retryable) or not.
	ReasonRolloutPending Reason = "rollout-pending"
	ReasonTargetsUnknown Reason = "targets-unknown"
	ReasonTimeout        Reason = "timeout"
	ReasonAPIUnavailable Reason = "api-unavailable"
	ReasonConflict       Reason = "conflict"
	ReasonForbidden      Reason = "forbidden"
	ReasonAPIError       Reason = "api-error"
	ReasonInternal       Reason = "internal"
)

// ErrTooManyTargets refuses a whole notification that names more workloads than
// ROLLBACK_MAX_TARGETS: a monitoring glitch must not roll back a fleet.
var ErrTooManyTargets = errors.New("the notification names more workloads than ROLLBACK_MAX_TARGETS; nothing was changed")

// ErrTooManyAlerts refuses a whole notification with more alerts (firing or resolved) than
// ROLLBACK_MAX_ALERTS, before any lookup: each alert may cost API requests, and a flood of
// them would crowd out the notifications that need real work.
var ErrTooManyAlerts = errors.New("the notification has more alerts than ROLLBACK_MAX_ALERTS; nothing was looked up or changed")

// ErrTargetsUnknown holds back a notification while lookups that failed might each be a
// workload: whether it is within ROLLBACK_MAX_TARGETS is not known until they succeed.
var ErrTargetsUnknown = errors.New("some workload lookups failed, so the blast radius is not known; nothing was changed")

// classes maps the sentinel errors of the data path to their action and reason. The first
// match wins; errors that match none are API or transport failures (see Classify).
var classes = []struct {
	err    error
	action Action
	reason Reason
}{
	{undo.ErrAlreadyHandled, Skipped, ReasonAlreadyHandled},
	{undo.ErrStale, Skipped, ReasonStale},
	{undo.ErrAlreadyAtTarget, Skipped, ReasonAlreadyAtTarget},
	{undo.ErrVerifying, Skipped, ReasonVerifying},
	{undo.ErrVerificationStale, Skipped, ReasonVerificationStale},
	{undo.ErrNothingToVerify, Skipped, ReasonNothingToVerify},
	{undo.ErrNotHealed, Refused, ReasonNotHealed},

	{undo.ErrPaused, Refused, ReasonPaused},
	{undo.ErrNoPreviousRevision, Refused, ReasonNoPreviousRevision},
	{undo.ErrNoGoodRevision, Refused, ReasonNoGoodRevision},
	{undo.ErrCooldown, Refused, ReasonCooldown},
	{undo.ErrOptOut, Refused, ReasonOptedOut},
	{undo.ErrBadState, Refused, ReasonBadState},
	{undo.ErrNotFound, Refused, ReasonNotFound},
	{undo.ErrUnsupportedKind, Refused, ReasonUnsupportedOwner},
	{undo.ErrControllerOwned, Refused, ReasonControllerOwned},
	{undo.ErrTrafficPinned, Refused, ReasonTrafficPinned},
	{undo.ErrForeignHistory, Refused, ReasonForeignHistory},
	{undo.ErrTooOld, Refused, ReasonTooOld},
	{undo.ErrPredatesRollout, Refused, ReasonPredatesRollout},
	{budget.ErrExhausted, Refused, ReasonBudgetExhausted},
	{budget.ErrCooldown, Refused, ReasonCooldown},
	{gitops.ErrManaged, Refused, ReasonGitOpsManaged},
	{gitops.ErrOwnerMissing, Refused, ReasonGitOpsOwnerMissing},
	{gitops.ErrParentManaged, Refused, ReasonGitOpsParent},
	{gitops.ErrUnverified, Refused, ReasonGitOpsUnverified},
	// Before the API's own classes: it wraps the apiserver's 403, which a retry does not fix
	// either, but the refusal says how to.
	{gitops.ErrUnknown, Refused, ReasonGitOpsUnknown},
	{ErrTooManyTargets, Refused, ReasonTooManyTargets},
	{ErrTooManyAlerts, Refused, ReasonTooManyAlerts},
	{target.ErrNoWorkloadLabel, Refused, ReasonNoWorkloadLabel},
	{target.ErrNoNamespace, Refused, ReasonNoNamespace},
	{target.ErrInvalidName, Refused, ReasonInvalidName},
	{target.ErrNamespaceDenied, Refused, ReasonNamespaceDenied},
	{target.ErrNotFound, Refused, ReasonNotFound},
	{target.ErrUnsupportedOwner, Refused, ReasonUnsupportedOwner},

	{undo.ErrRolloutPending, Failed, ReasonRolloutPending},
	// Another writer kept changing the budget's Lease: a retry a moment later may get a turn.
	{budget.ErrContended, Failed, ReasonConflict},
	{ErrTargetsUnknown, Failed, ReasonTargetsUnknown},
}

// Verdict is the action and reason of a verification's verdict.
func Verdict(r undo.Result) (Action, Reason) {
	if r == undo.Healed {
		return Healed, ReasonHealed
	}
	return NotHealed, ReasonRevisionUnhealthy
}

// Classify says what an error the data path ended with means: nil is a rollback.
func Classify(err error) (Action, Reason) {
	if err == nil {
		return RolledBack, ReasonRolledBack
	}
	for _, c := range classes {
		if errors.Is(err, c.err) {
			return c.action, c.reason
		}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		apierrors.IsTimeout(err), apierrors.IsServerTimeout(err), throttledPastDeadline(err):
		return Failed, ReasonTimeout
	case apierrors.IsNotFound(err):
		// The workload went away between the alert and the undo.
		return Refused, ReasonNotFound
	case apierrors.IsConflict(err):
		return Failed, ReasonConflict
	case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err):
		return Failed, ReasonForbidden
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		if code := status.Status().Code; code >= http.StatusInternalServerError || code == http.StatusTooManyRequests {
			return Failed, ReasonAPIUnavailable
		}
		return Failed, ReasonAPIError
	}
	// Not an answer from the API server: it never got there (a transport error), or the
	// data read makes no sense (a malformed ControllerRevision, say).
	var netErr net.Error
	var urlErr *url.Error
	if errors.As(err, &netErr) || errors.As(err, &urlErr) {
		return Failed, ReasonAPIUnavailable
	}
	return Failed, ReasonInternal
}

// Retryable reports whether a failure may go away if Alertmanager sends the notification
// again: the API server was unreachable, slow, overloaded or kept conflicting, or the
// controller had not recorded the rollout yet. Forbidden, invalid and the like will be the
// same next time.
func Retryable(r Reason) bool {
	switch r {
	case ReasonRolloutPending, ReasonTargetsUnknown, ReasonTimeout, ReasonAPIUnavailable, ReasonConflict:
		return true
	}
	return false
}

// Request errors: why a request is turned away before anything else happens. None of them
// touches the cluster.
var (
	ErrMethod       = errors.New("method not allowed: POST an Alertmanager notification")
	ErrUnauthorized = errors.New("missing or wrong credentials: send Authorization: Bearer <token>")
	ErrMediaType    = errors.New("unsupported content type: want application/json, or a CloudEvent (binary mode with JSON data, or application/cloudevents+json)")
	ErrTooLarge     = errors.New("body too large (ROLLBACK_MAX_BODY_BYTES)")
	ErrStarting     = errors.New("starting: send again")
	ErrStopping     = errors.New("shutting down: send again")
	ErrBusy         = errors.New("too many notifications at once (ROLLBACK_MAX_CONCURRENT): send again")
)

// HTTPStatus is the one place outcomes become HTTP status codes. Alertmanager retries 5xx
// and drops every 4xx for good, so 5xx means exactly "a retry can help".
//
// err is why the request was turned away, nil if it was handled. A handled notification is
// answered 200 when every workload reached a final outcome (the verdict of a verification,
// healed or not, is one; so is "still verifying", which the next notification checks
// again); 503 when any failure may pass
// (API unreachable, timeout, conflicts), which makes Alertmanager send it again, safely,
// since an alert that already caused an undo causes no other; 422 when a failure will not
// pass by itself (forbidden, invalid), so Alertmanager records a failed notification
// without retrying in vain.
func HTTPStatus(err error, results []Result) int {
	switch {
	case errors.Is(err, ErrMethod):
		return http.StatusMethodNotAllowed
	case errors.Is(err, ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, ErrMediaType):
		return http.StatusUnsupportedMediaType
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, alert.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, ErrStarting), errors.Is(err, ErrStopping), errors.Is(err, ErrBusy):
		return http.StatusServiceUnavailable
	case err != nil:
		return http.StatusInternalServerError
	}
	status := http.StatusOK
	for _, r := range results {
		if r.Action != Failed {
			continue
		}
		if r.Retryable {
			return http.StatusServiceUnavailable
		}
		status = http.StatusUnprocessableEntity
	}
	return status
}

// throttledPastDeadline recognises client-go's own rate limiter giving up because the wait
// for a token would pass the request's deadline. client-go wraps the limiter's error, which
// does not wrap context.DeadlineExceeded, so its text is the only sign; it is a timeout,
// and a retry helps like any other.
func throttledPastDeadline(err error) bool {
	return strings.Contains(err.Error(), "client rate limiter Wait returned an error")
}
