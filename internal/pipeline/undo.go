package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/sre-kit/alert-rollback/internal/outcome"
	"github.com/sre-kit/alert-rollback/internal/target"
	"github.com/sre-kit/alert-rollback/internal/undo"
)

// undoAll undoes each job of the plan (in parallel: they are independent, and the request
// has one deadline), records an Event for each outcome and remembers the occurrences that
// settle as handled. It returns the plan's settled results, then the jobs'.
func (f *Pipeline) undoAll(ctx context.Context, p plan) []outcome.Result {
	results := make([]outcome.Result, len(p.jobs))
	var wg sync.WaitGroup
	for i, j := range p.jobs {
		if j.seen != nil {
			// A copy of an occurrence this process saw handled: no API call, and no
			// Event, so copies never crowd out the Events (client-go's per-object
			// budget) and requests of notifications that need real work.
			results[i] = outcome.Of(j.alerts, j.target.Ref, undo.Change{UID: j.seen.uid}, errSeen(j.seen))
			continue
		}
		wg.Go(func() {
			c, err := f.undoer.Undo(ctx, j.req)
			results[i] = outcome.Of(j.alerts, actedOn(j, c), c, err)
			f.remember(j, c, err)
			// An alert already handled is a copy too: its Event would only repeat the one its
			// undo made. Objects changed for it all the same (an owner this attempt suspended
			// before another replica's undo won) still get theirs.
			if !quiet(j, c, err) {
				f.Events.Record(actedOn(j, c), c.UID, results[i])
			}
			for _, ref := range c.Related {
				f.Events.RecordRelated(ref, results[i])
			}
		})
	}
	wg.Wait()
	return append(p.settled, results...)
}

// remember records the job's alerts that are now known as handled: all of them after an
// undo (the state annotation now lists them), those the state lists when the undo found
// the alert already handled. Nothing else: every other outcome may change with time.
func (f *Pipeline) remember(j *job, c undo.Change, err error) {
	v := handledUndo{ref: actedOn(j, c), uid: c.UID, from: c.From, to: c.To}
	for i, a := range j.alerts {
		switch {
		case err == nil && c.Verified != "":
			// Verified (by a resolved alert, or a firing one): the firing alert's copies are
			// answered from the workload's state again (a not-healed alert is refused, with
			// what went wrong).
			f.seen.forget(firingKey(j.keys[i], a))
			continue
		case !a.Firing():
			continue // never answered from memory
		case err == nil && !c.DryRun:
			v.pending, v.at = true, f.now()
		case errors.Is(err, undo.ErrAlreadyHandled) && slices.Contains(c.Handled, a.ID()):
			v.from, v.to = 0, 0 // made by another process, or forgotten: not known here
			v.pending = false
		default:
			continue
		}
		f.seen.add(j.keys[i], v)
	}
}

// actedOn is the workload the job's undo was about in the end: the target, or the owner the
// undo followed it to (a Knative Revision's Deployment to its Service).
func actedOn(j *job, c undo.Change) target.Ref {
	if c.Ref != (target.Ref{}) {
		return c.Ref
	}
	return j.target.Ref
}

// errSeen is the answer to a copy of an occurrence this process saw handled.
func errSeen(v *handledUndo) error {
	if v.from != 0 {
		return fmt.Errorf("%w (this process rolled %s back from revision %d to %d for it)", undo.ErrAlreadyHandled, v.ref, v.from, v.to)
	}
	return fmt.Errorf("%w (this process saw it handled)", undo.ErrAlreadyHandled)
}

// quiet reports whether a job's outcome gets no Event: a copy of an alert already handled
// (its undo had one), a verification still in progress, and whatever a notification of
// resolved alerts alone finds other than a verdict. Those change nothing, and a resolved
// notification about a workload this function never touched leaves no trace on it.
func quiet(j *job, c undo.Change, err error) bool {
	switch {
	case errors.Is(err, undo.ErrAlreadyHandled), errors.Is(err, undo.ErrVerifying):
		return true
	case len(j.req.AlertIDs) == 0:
		return err != nil || c.Verified == ""
	}
	return false
}
