package function

import (
	"context"
	"fmt"
	"sync"

	"github.com/sre-kit/alert-rollback/alert"
	"github.com/sre-kit/alert-rollback/report"
	"github.com/sre-kit/alert-rollback/target"
	"github.com/sre-kit/alert-rollback/undo"
)

// job is one undo to make: a workload and the alerts of the notification about it.
type job struct {
	target target.Target
	alerts []alert.Alert
	req    undo.Request
}

// plan is what a notification asks for.
type plan struct {
	jobs []*job
	// settled holds the results decided without an undo: alerts whose workload cannot be
	// used (bad name, namespace not allowed, not found, not a rollout-able owner, or the
	// lookup failed) and, over the blast radius, every workload.
	settled []report.Result
	ignored int
}

// resolveParallelism bounds the target lookups in flight for one notification.
const resolveParallelism = 8

// pickTargets keeps the firing alerts that match ROLLBACK_MATCH, finds the workload each is
// about, and groups them: several alerts about one workload make one undo. When the
// notification names more workloads than ROLLBACK_MAX_TARGETS, nothing is undone: a
// monitoring glitch must not roll back a fleet.
func (f *Function) pickTargets(ctx context.Context, msg *alert.Message) plan {
	var p plan
	var acted []alert.Alert
	for _, a := range msg.Alerts {
		if !a.Firing() || !f.cfg.match.Matches(a.Labels) {
			p.ignored++
			continue
		}
		acted = append(acted, a)
	}

	// Resolve in rounds of resolveParallelism, stopping as soon as the notification is known
	// to name too many workloads: a flood of alerts costs a bounded number of API calls.
	// A lookup that failed counts as a workload of its own, since it might be one: when the
	// API server is degraded the limit must hold all the more.
	targets := make([]target.Target, len(acted))
	errs := make([]error, len(acted))
	resolved := 0
	for resolved < len(acted) && f.distinct(targets[:resolved], errs[:resolved]) <= f.cfg.maxTargets {
		end := min(resolved+resolveParallelism, len(acted))
		var wg sync.WaitGroup
		for i := resolved; i < end; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				targets[i], errs[i] = f.resolver.Resolve(ctx, f.namespaceOf(acted[i]), acted[i].Labels)
			}()
		}
		wg.Wait()
		resolved = end
	}

	if n := f.distinct(targets[:resolved], errs[:resolved]); n > f.cfg.maxTargets {
		more := ""
		if resolved < len(acted) {
			more = fmt.Sprintf(" after looking up %d of %d alerts", resolved, len(acted))
		}
		err := fmt.Errorf("%w: at least %d workloads%s, limit %d", undo.ErrTooManyTargets, n, more, f.cfg.maxTargets)
		for i, a := range acted {
			r := resultFor(a, targets[i].Ref, undo.Outcome{Err: err, Action: undo.ActionFor(err)})
			r.Namespace = f.namespaceOf(a)
			p.settled = append(p.settled, r)
		}
		return p
	}

	byRef := map[target.Ref]*job{}
	for i, a := range acted {
		if errs[i] != nil {
			r := resultFor(a, targets[i].Ref, undo.Outcome{Err: errs[i], Action: undo.ActionFor(errs[i])})
			r.Namespace = f.namespaceOf(a)
			p.settled = append(p.settled, r)
			continue
		}
		j := byRef[targets[i].Ref]
		if j == nil {
			j = &job{target: targets[i], req: undo.Request{Ref: targets[i].Ref, Alert: a.Name()}}
			byRef[targets[i].Ref] = j
			p.jobs = append(p.jobs, j)
		}
		j.alerts = append(j.alerts, a)
		j.req.AlertIDs = append(j.req.AlertIDs, a.ID())
		j.req.Revisions = append(j.req.Revisions, targets[i].Revision)
	}
	return p
}

// distinct counts the workloads among resolved alerts, plus the lookups that failed.
// Refusals (bad name, namespace not allowed, not found...) name nothing to act on.
func (f *Function) distinct(targets []target.Target, errs []error) int {
	refs := map[target.Ref]bool{}
	failed := 0
	for i, err := range errs {
		switch {
		case err == nil:
			refs[targets[i].Ref] = true
		case undo.ActionFor(err) == undo.Failed:
			failed++
		}
	}
	return len(refs) + failed
}

// namespaceOf is the namespace an alert is about: its namespace label, else the function's
// own.
func (f *Function) namespaceOf(a alert.Alert) string {
	if ns := a.Labels["namespace"]; ns != "" {
		return ns
	}
	return f.ownNamespace
}

// resultFor reports an outcome for the alert a about the workload ref.
func resultFor(a alert.Alert, ref target.Ref, o undo.Outcome) report.Result {
	r := report.Result{
		AlertName:    a.Name(),
		Fingerprint:  a.Fingerprint,
		Namespace:    ref.Namespace,
		Kind:         ref.Kind,
		Name:         ref.Name,
		Action:       o.Action,
		FromRevision: o.From,
		ToRevision:   o.To,
		DryRun:       o.DryRun,
		Alerts:       1,
		Retryable:    undo.Retryable(o.Err),
	}
	if o.Err != nil {
		r.Reason = o.Err.Error()
	} else {
		r.Reason = fmt.Sprintf("rolled back from revision %d to revision %d", o.From, o.To)
		if o.DryRun {
			r.Reason = "dry run: would have " + r.Reason
		}
	}
	return r
}
