package function

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/sre-kit/alert-rollback/alert"
	"github.com/sre-kit/alert-rollback/outcome"
	"github.com/sre-kit/alert-rollback/target"
	"github.com/sre-kit/alert-rollback/undo"
)

// rollback runs the undo for every workload the notification is about (in parallel: they
// are independent, and the request has one deadline), records an Event and a log line for
// each outcome, and returns the report.
//
// Copies of a notification are common (re-sends, HA pairs, retries). While one is being
// handled, the others wait for it (seen.claim); once it settled, a copy is answered from
// what this process remembers, with no API call and no Event.
func (f *started) rollback(ctx context.Context, msg *alert.Message) outcome.Response {
	resp := outcome.Response{TruncatedAlerts: msg.TruncatedAlerts, Results: []outcome.Result{}}
	// The caller's group key is logged once per notification, and clipped: it is caller
	// text, and could otherwise multiply the log by the number of results.
	log := f.log.With("groupKey", alert.Clip(msg.GroupKey))
	if msg.TruncatedAlerts > 0 {
		log.Warnw("Alertmanager left alerts out of this notification (max_alerts); set max_alerts: 0 on the receiver",
			"truncatedAlerts", msg.TruncatedAlerts)
	}

	lookups, settled := f.lookups(msg, &resp.Ignored)
	resp.Results = append(resp.Results, settled...)
	var results []outcome.Result
	release, err := f.seen.claim(ctx, keysOf(lookups))
	if err != nil {
		err = fmt.Errorf("waiting for a copy of this notification in flight: %w", err)
		for _, l := range lookups {
			r := outcome.Of(l.alerts, target.Ref{}, undo.Change{}, err)
			r.Namespace = l.namespace
			results = append(results, r)
		}
	} else {
		results = f.undoAll(ctx, lookups)
		release()
	}
	resp.Results = append(resp.Results, results...)
	for _, r := range resp.Results {
		log.Infow(r.Message, "action", r.Action, "reason", r.Reason, "namespace", r.Namespace, "kind", r.Kind,
			"name", r.Name, "alertname", r.AlertName, "fingerprint", r.Fingerprint, "alerts", r.Alerts,
			"fromRevision", r.FromRevision, "toRevision", r.ToRevision, "dryRun", r.DryRun)
	}
	return resp
}

// undoAll picks the targets of the lookups and undoes each, remembering the occurrences
// that settle as handled.
func (f *started) undoAll(ctx context.Context, lookups []*lookup) []outcome.Result {
	p := f.pickTargets(ctx, lookups)
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
			results[i] = outcome.Of(j.alerts, j.target.Ref, c, err)
			f.remember(j, c, err)
			// An alert already handled is a copy too: its Event would only repeat the one its
			// undo made. Objects changed for it all the same (an owner this attempt suspended
			// before another replica's undo won) still get theirs.
			if !errors.Is(err, undo.ErrAlreadyHandled) {
				f.events.Record(c.UID, results[i])
			}
			for _, ref := range c.Related {
				f.events.RecordRelated(ref, results[i])
			}
		})
	}
	wg.Wait()
	return append(p.settled, results...)
}

// remember records the job's alerts that are now known as handled: all of them after an
// undo (the state annotation now lists them), those the state lists when the undo found
// the alert already handled. Nothing else: every other outcome may change with time.
func (f *started) remember(j *job, c undo.Change, err error) {
	v := handledUndo{ref: j.target.Ref, uid: c.UID, from: c.From, to: c.To}
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
