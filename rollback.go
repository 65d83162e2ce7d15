package function

import (
	"context"
	"sync"

	"github.com/sre-kit/alert-rollback/alert"
	"github.com/sre-kit/alert-rollback/outcome"
)

// rollback runs the undo for every workload the notification is about (in parallel: they
// are independent, and the request has one deadline), records an Event and a log line for
// each outcome, and returns the report.
func (f *Function) rollback(ctx context.Context, msg *alert.Message) outcome.Response {
	p := f.pickTargets(ctx, msg)
	resp := outcome.Response{Ignored: p.ignored, TruncatedAlerts: msg.TruncatedAlerts, Results: []outcome.Result{}}
	// The caller's group key is logged once per notification, and clipped: it is caller
	// text, and could otherwise multiply the log by the number of results.
	log := f.log.With("groupKey", alert.Clip(msg.GroupKey))
	if msg.TruncatedAlerts > 0 {
		log.Warnw("Alertmanager left alerts out of this notification (max_alerts); set max_alerts: 0 on the receiver",
			"truncatedAlerts", msg.TruncatedAlerts)
	}

	results := make([]outcome.Result, len(p.jobs))
	var wg sync.WaitGroup
	for i, j := range p.jobs {
		wg.Go(func() {
			c, err := f.undoer.Undo(ctx, j.req)
			results[i] = outcome.Of(j.alerts, j.target.Ref, c, err)
			f.events.Record(c.UID, results[i])
			for _, ref := range c.Related {
				f.events.RecordRelated(ref, results[i])
			}
		})
	}
	wg.Wait()

	resp.Results = append(resp.Results, p.settled...)
	resp.Results = append(resp.Results, results...)
	for _, r := range resp.Results {
		log.Infow(r.Message, "action", r.Action, "reason", r.Reason, "namespace", r.Namespace, "kind", r.Kind,
			"name", r.Name, "alertname", r.AlertName, "fingerprint", r.Fingerprint, "alerts", r.Alerts,
			"fromRevision", r.FromRevision, "toRevision", r.ToRevision, "dryRun", r.DryRun)
	}
	return resp
}
