package undo

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/sre-kit/alert-rollback/internal/clip"
	"github.com/sre-kit/alert-rollback/internal/kinds"
)

// verify checks the undo awaiting verification on w (State.Pending) by the rules of
// `kubectl rollout status` for its kind, on any notification about the workload: a
// resolved one (Request.AlertIDs empty), a repeat or a retry. It is driven by notifications,
// so the function keeps nothing running between them.
//
// It returns done=false when the request goes on to the undo's own guards: it has firing
// alerts, and there is nothing to verify, or the rollout is still in progress, or the undo
// awaiting verification is stale (the workload was rolled out again since, and alerts about
// that rollout are decided afresh).
// Otherwise its Change and error are the request's outcome: a verdict written to the state
// (Change.Verified) under the resourceVersion precondition, or why nothing was written.
func (u *Undoer) verify(ctx context.Context, k kinds.Kind, w *kinds.Workload, req Request) (c Change, done bool, err error) {
	verifyOnly := len(req.AlertIDs) == 0
	c = Change{UID: w.UID}
	state, err := readState(w.Annotations)
	if err != nil {
		// A firing alert gets the same refusal from the guards.
		return c, verifyOnly, err
	}
	if fps := state.notHealedOf(req.AlertIDs); len(fps) > 0 {
		return c, true, fmt.Errorf("%w (alert fingerprint %s%s)", ErrNotHealed, summary(fps), lastVerdict(state))
	}
	p := state.Pending
	v, ok := k.(kinds.Verifier)
	if p == nil || !ok {
		if verifyOnly {
			return c, true, fmt.Errorf("%w%s", ErrNothingToVerify, lastVerdict(state))
		}
		return c, false, nil
	}
	c.From, c.To = p.From, p.Number

	status := v.RolloutStatus(w)
	at := slices.IndexFunc(w.History, func(r kinds.Revision) bool { return r.ID == p.Revision })
	switch {
	case at == 0 && kinds.EqualIgnoreHash(w.History[0].Template, w.Template):
		// The revision rolled back to is the current one: its status decides.
	case at > 0 && kinds.EqualIgnoreHash(w.History[at].Template, w.Template) && status.Aborted:
		// The workload serves the revision rolled back to without making it its newest (an
		// aborted Argo Rollout serves its stable one): its status decides.
	case at > 0 && kinds.EqualIgnoreHash(w.History[at].Template, w.Template):
		// The undo's template is there, and the controller has not recorded it as the
		// current revision yet.
		status = kinds.RolloutStatus{Message: "waiting for the controller to record the revision rolled back to", Deadline: status.Deadline}
	default:
		if !verifyOnly {
			return c, false, nil
		}
		return c, true, fmt.Errorf("%w: %s", ErrVerificationStale, moved(w, p, at))
	}

	if status.Failed && !status.FailedAt.IsZero() && !status.FailedAt.After(p.At) {
		// The Deployment controller keeps the bad rollout's ProgressDeadlineExceeded until it
		// sees the undo's rollout progress: that failure is not the undo's.
		status.Failed = false
		status.Message = fmt.Sprintf("waiting for the controller to see the rollback's progress (its %s is from %s, before the rollback)",
			status.Message, status.FailedAt.UTC().Format(time.RFC3339))
	}
	now := u.opts.Now().UTC().Truncate(time.Second)
	verdict := Verdict{Verification: *p, VerifiedAt: now}
	since := fmt.Sprintf("the rollback at %s to revision %d (%s)", p.At.UTC().Format(time.RFC3339), p.Number, p.Revision)
	switch {
	case status.Done:
		verdict.Result = Healed
		verdict.Message = fmt.Sprintf("healed: %s, %s", status.Message, healedAfter(p.At, status.DoneAt, now))
	case status.Failed:
		verdict.Result = NotHealed
		verdict.Message = fmt.Sprintf("not healed: the revision rolled back to fails too: %s (since %s)", status.Message, since)
	case now.Sub(p.At) > status.Deadline && !status.Paused:
		verdict.Result = NotHealed
		verdict.Message = fmt.Sprintf("not healed: the revision rolled back to fails too: its rollout is not complete %s after %s (deadline %s): %s",
			now.Sub(p.At), since, status.Deadline, status.Message)
	case !verifyOnly:
		// Still rolling out: firing alerts get the undo's own answer (a copy of the alert
		// that caused it is already handled; the cooldown holds back others).
		return c, false, nil
	default:
		return c, true, fmt.Errorf("%w: %s (since %s; it counts as not healed if not complete %s after it)", ErrVerifying, status.Message, since, status.Deadline)
	}
	verdict.Message = clip.String(verdict.Message, clip.Max)
	next, err := state.verdict(verdict).encode()
	if err != nil {
		return c, true, err
	}
	if err := v.WriteState(ctx, u.env, w, next, u.opts.DryRun); err != nil {
		return c, true, err
	}
	c.Verified, c.Message = verdict.Result, verdict.Message
	return c, true, nil
}

// healedAfter says how long after the undo the workload was healthy: when the kind records
// when its rollout completed, from that; otherwise at most until now, when it was seen.
func healedAfter(undone, doneAt, now time.Time) string {
	if !doneAt.IsZero() && !doneAt.Before(undone) {
		return fmt.Sprintf("healthy %s after the rollback (rollout complete at %s)", doneAt.Sub(undone), doneAt.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("healthy within %s of the rollback (seen at %s)", now.Sub(undone), now.Format(time.RFC3339))
}

// moved says why an undo awaiting verification is not the workload's rollout any more.
func moved(w *kinds.Workload, p *Verification, at int) string {
	what := fmt.Sprintf("the rollback at %s to revision %d (%s)", p.At.UTC().Format(time.RFC3339), p.Number, p.Revision)
	if at < 0 {
		return what + " names a revision that is no longer in the rollout history"
	}
	if len(w.History) > 0 && w.History[0].ID != p.Revision {
		return fmt.Sprintf("the workload was rolled out again since %s: it is at revision %d (%s)", what, w.History[0].Number, w.History[0].ID)
	}
	return fmt.Sprintf("the workload's template was changed since %s", what)
}

// lastVerdict is the state's last verdict, for messages; "" when there is none.
func lastVerdict(s State) string {
	v := s.Verified
	if v == nil {
		return ""
	}
	return fmt.Sprintf("; last verified %s at %s: %s", v.Result, v.VerifiedAt.UTC().Format(time.RFC3339), v.Message)
}
