// Package undo rolls a workload back the way `kubectl rollout undo` does, with guards that
// make it safe to run from an alert: it does not go back to a revision it rolled back from
// (as long as the state kept on the workload remembers it: see State), does not undo twice
// for one alert occurrence, and writes only under a resourceVersion precondition.
//
// It only returns errors; package outcome says what each means for the caller.
package undo

import (
	"errors"

	"github.com/sre-kit/alert-rollback/internal/kinds"
)

// Why an undo ends without changing the workload.
var (
	// The function will not act; a human should look. Sending the notification again gives
	// the same answer.
	ErrPaused             = errors.New("you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume' and try again")
	ErrNoPreviousRevision = errors.New("no rollout history found: there is no earlier revision to roll back to")
	ErrNoGoodRevision     = errors.New("every earlier revision was already rolled back from by this function; roll forward by hand")
	ErrCooldown           = errors.New("rolled back too recently (ROLLBACK_COOLDOWN)")
	ErrOptOut             = errors.New("the workload opted out with the annotation " + OptOutAnnotation + `="true"`)
	ErrBadState           = errors.New("the annotation " + StateAnnotation + " is not readable; fix or remove it")
	ErrNotFound           = kinds.ErrNotFound
	// ErrTooOld refuses to undo a rollout that is not recent: a revision that ran well for
	// weeks and starts failing today is not a bad rollout, and going back weeks is worse.
	ErrTooOld = errors.New("the current revision is older than ROLLBACK_MAX_AGE; this is not a recent rollout")
	// ErrPredatesRollout refuses an undo for alerts that all began firing before the current
	// revision was rolled out: that rollout did not cause them.
	ErrPredatesRollout = errors.New("every alert started before the current revision was rolled out")
	ErrUnsupportedKind = errors.New("not a " + kinds.Names())
	// ErrControllerOwned refuses a workload that another object controls (a Knative
	// Revision, an operator's custom resource): that controller writes the workload's
	// template, and would put the undone revision back or fight the undo.
	ErrControllerOwned = errors.New("the workload belongs to another controller, which would revert an undo")
	// ErrTrafficPinned refuses a Knative Service whose traffic does not follow its latest
	// revision (see kinds.ErrTrafficPinned).
	ErrTrafficPinned = kinds.ErrTrafficPinned
	// ErrForeignHistory means the rollout history holds entries the workload's controller
	// cannot have made (see kinds.ErrForeignHistory).
	ErrForeignHistory = kinds.ErrForeignHistory

	// ErrNotHealed refuses an undo for an alert whose earlier undo of this workload did not
	// heal it: the revision rolled back to fails too, so another undo for the same alert
	// would only dig further back.
	ErrNotHealed = errors.New("this alert's earlier rollback did not heal the workload; it causes no other rollback: people must act")

	// There is nothing to do.
	ErrAlreadyHandled  = errors.New("this alert already caused a rollback")
	ErrStale           = errors.New("stale: the alert is about a revision that is no longer the current one")
	ErrAlreadyAtTarget = errors.New("current template already matches the revision to roll back to")

	// Verification after an undo (see verify): nothing is written.
	ErrVerifying         = errors.New("the rollback's rollout is still in progress; a later notification verifies it")
	ErrVerificationStale = errors.New("the rollback awaiting verification is no longer the workload's rollout; nothing to verify")
	ErrNothingToVerify   = errors.New("no rollback of this function awaits verification on the workload; a resolved alert never causes one")

	// ErrRolloutPending means the controller has not yet recorded the current template as a
	// revision, so "the previous revision" is not known yet. Unlike the others, a retry a
	// moment later helps.
	ErrRolloutPending = errors.New("the controller has not recorded the current template as a revision yet")
)
