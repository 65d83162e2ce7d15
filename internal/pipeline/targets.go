package pipeline

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/sre-kit/alert-rollback/internal/alert"
	"github.com/sre-kit/alert-rollback/internal/outcome"
	"github.com/sre-kit/alert-rollback/internal/target"
	"github.com/sre-kit/alert-rollback/internal/undo"
)

// job is one undo to make: a workload and the alerts of the notification about it.
type job struct {
	target target.Target
	alerts []alert.Alert
	// keys are the alerts' keys in seen, in the same order.
	keys []string
	req  undo.Request
	// seen, when set, is what this process remembers of one of the alerts: it was handled,
	// so the job is answered from memory, with no API call.
	seen *handledUndo
}

// plan is what a notification asks for.
type plan struct {
	jobs []*job
	// settled holds the results decided without an undo: alerts whose workload cannot be
	// used (bad name, namespace not allowed, not found, not a rollout-able owner, or the
	// lookup failed) and, over the blast radius, every workload.
	settled []outcome.Result
}

// resolveParallelism bounds the target lookups in flight for one notification.
const resolveParallelism = 8

// pickTargets finds the workload each lookup is about (unless recall took it from what this
// process remembers of its alerts), and groups them: several alerts about one workload make one
// undo. When the notification names more workloads than ROLLBACK_MAX_TARGETS, nothing is
// undone: a monitoring glitch must not roll back a fleet.
func (f *Pipeline) pickTargets(ctx context.Context, lookups []*lookup) plan {
	var p plan
	// Workloads read to confirm an owner on the way are read once, and their undo uses the
	// same reads.
	reads := f.undoer.NewReads()

	// Resolve in rounds of resolveParallelism, stopping as soon as the notification is known
	// to name too many workloads: a flood of alerts costs a bounded number of API calls.
	resolved := 0
	for resolved < len(lookups) && distinct(lookups[:resolved]) <= f.cfg.MaxTargets {
		end := min(resolved+resolveParallelism, len(lookups))
		var wg sync.WaitGroup
		for _, l := range lookups[resolved:end] {
			if l.seen == nil {
				wg.Go(func() { l.target, l.err = f.resolver.Resolve(ctx, l.namespace, l.labels, reads) })
			}
		}
		wg.Wait()
		resolved = end
	}

	n, failed := distinct(lookups[:resolved]), failures(lookups[:resolved])
	var blocked error
	switch {
	case n > f.cfg.MaxTargets:
		more := ""
		if resolved < len(lookups) {
			more = fmt.Sprintf(" after looking up %d of %d workload labels", resolved, len(lookups))
		}
		blocked = fmt.Errorf("%w: at least %d workloads%s, limit %d", outcome.ErrTooManyTargets, n, more, f.cfg.MaxTargets)
	case n+failed > f.cfg.MaxTargets:
		// The lookups that failed might each be a workload: until they succeed, whether the
		// notification is within the limit is not known. Nothing is done, and the answer
		// asks for a retry.
		blocked = fmt.Errorf("%w: %d workloads found and %d lookups failed, limit %d", outcome.ErrTargetsUnknown, n, failed, f.cfg.MaxTargets)
	}

	byRef := map[target.Ref]*job{}
	for _, l := range lookups {
		err := l.err
		if blocked != nil && err == nil {
			err = blocked
		}
		if err != nil {
			r := outcome.Of(l.alerts, l.target.Ref, undo.Change{}, err)
			r.Namespace = alert.Clip(l.namespace) // the caller's, when it is no namespace
			p.settled = append(p.settled, r)
			continue
		}
		j := byRef[l.target.Ref]
		if j == nil {
			j = &job{target: l.target, req: undo.Request{Ref: l.target.Ref, Alert: alert.Clip(l.alerts[0].Name()), UID: l.target.UID, Reads: reads}}
			byRef[l.target.Ref] = j
			p.jobs = append(p.jobs, j)
		}
		if j.seen == nil {
			j.seen = l.seen
		}
		j.alerts = append(j.alerts, l.alerts...)
		j.keys = append(j.keys, l.keys...)
		firing := false
		for _, a := range l.alerts {
			if !a.Firing() {
				continue // a resolved alert only verifies (see undo.Request)
			}
			firing = true
			j.req.AlertIDs = append(j.req.AlertIDs, a.ID())
			j.req.Started = append(j.req.Started, a.StartsAt)
		}
		if firing {
			j.req.Revisions = append(j.req.Revisions, l.target.Revision)
		}
	}
	for _, j := range p.jobs {
		if slices.ContainsFunc(j.alerts, notFiring) {
			j.seen = nil // it verifies: never answered from memory
		}
	}
	return p
}

// distinct counts the workloads among resolved lookups.
func distinct(lookups []*lookup) int {
	refs := map[target.Ref]bool{}
	for _, l := range lookups {
		if l.err == nil {
			refs[l.target.Ref] = true
		}
	}
	return len(refs)
}

// failures counts the lookups that failed in a way a retry may fix. Refusals (bad name,
// namespace not allowed, not found...) name nothing to act on.
func failures(lookups []*lookup) int {
	n := 0
	for _, l := range lookups {
		if l.err != nil && outcome.Retryable(reasonOf(l.err)) {
			n++
		}
	}
	return n
}

func reasonOf(err error) outcome.Reason {
	_, r := outcome.Classify(err)
	return r
}
