package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/sre-kit/alert-rollback/internal/outcome"
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
			// The undo may have gone to the workload that runs the one named (kinds.Follower).
			ref := j.target.Ref
			if c.Ref.Name != "" {
				ref = c.Ref
			}
			results[i] = outcome.Of(j.alerts, ref, c, err)
			f.remember(j, c, err)
			// An alert already handled is a copy too: its Event would only repeat the one its
			// undo made. Objects changed for it all the same (an owner this attempt suspended
			// before another replica's undo won) still get theirs.
			if !errors.Is(err, undo.ErrAlreadyHandled) {
				f.Events.Record(ref, c.UID, results[i])
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
	v := handledUndo{ref: j.target.Ref, uid: c.UID, from: c.From, to: c.To}
	if c.Ref.Name != "" {
		v.ref = c.Ref // the workload that runs the one named, which the undo acted on
	}
	for i, a := range j.alerts {
		switch {
		case err == nil && !c.DryRun:
		case errors.Is(err, undo.ErrAlreadyHandled) && slices.Contains(c.Handled, a.ID()):
			v.from, v.to = 0, 0 // made by another process, or forgotten: not known here
		default:
			continue
		}
		f.seen.add(j.keys[i], v)
	}
}

// errSeen is the answer to a copy of an occurrence this process saw handled.
func errSeen(v *handledUndo) error {
	if v.from != 0 {
		return fmt.Errorf("%w (this process rolled %s back from revision %d to %d for it)", undo.ErrAlreadyHandled, v.ref, v.from, v.to)
	}
	return fmt.Errorf("%w (this process saw it handled)", undo.ErrAlreadyHandled)
}
