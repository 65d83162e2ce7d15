package function

import (
	"context"
	"sync"

	"github.com/sre-kit/alert-rollback/alert"
	"github.com/sre-kit/alert-rollback/report"
)

// rollback runs the undo for every workload the notification is about (in parallel: they
// are independent, and the request has one deadline), records an Event and a log line for
// each outcome, and returns the report.
func (f *Function) rollback(ctx context.Context, msg *alert.Message) report.Response {
	p := f.pickTargets(ctx, msg)
	resp := report.Response{Ignored: p.ignored, TruncatedAlerts: msg.TruncatedAlerts, Results: []report.Result{}}
	if msg.TruncatedAlerts > 0 {
		f.log.Warnw("Alertmanager left alerts out of this notification (max_alerts); set max_alerts: 0 on the receiver",
			"truncatedAlerts", msg.TruncatedAlerts, "groupKey", msg.GroupKey)
	}

	results := make([]report.Result, len(p.jobs))
	var wg sync.WaitGroup
	for i, j := range p.jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := f.undoer.Undo(ctx, j.req)
			r := resultFor(j.alerts[0], j.target.Ref, o)
			r.Alerts = len(j.alerts)
			results[i] = r
			f.events.Record(o.UID, r)
		}()
	}
	wg.Wait()

	resp.Results = append(resp.Results, p.settled...)
	resp.Results = append(resp.Results, results...)
	for _, r := range resp.Results {
		f.log.Infow(report.Message(r), "action", r.Action, "namespace", r.Namespace, "kind", r.Kind, "name", r.Name,
			"alertname", r.AlertName, "fingerprint", r.Fingerprint, "fromRevision", r.FromRevision,
			"toRevision", r.ToRevision, "dryRun", r.DryRun, "groupKey", msg.GroupKey)
	}
	return resp
}
