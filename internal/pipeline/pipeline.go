// Package pipeline handles one Alertmanager notification, in one pass: which alerts count
// and which workload label each names (lookups.go), copies of them in flight and what this
// process remembers of them (seen.go), the workloads they name and the blast radius
// (targets.go), the undo of each, whose guards are package undo's and the Gate's (undo.go,
// gate.go), and what is reported: a result, an Event and a log line each.
package pipeline

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sre-kit/alert-rollback/internal/alert"
	"github.com/sre-kit/alert-rollback/internal/kinds"
	"github.com/sre-kit/alert-rollback/internal/outcome"
	"github.com/sre-kit/alert-rollback/internal/target"
	"github.com/sre-kit/alert-rollback/internal/undo"
)

// Config is what the pipeline is told of the settings.
type Config struct {
	// Match selects the alerts that count (ROLLBACK_MATCH).
	Match alert.Matcher
	// MaxAlerts bounds the firing, matching alerts of one notification that are looked
	// at (ROLLBACK_MAX_ALERTS); MaxTargets the workloads one may undo (ROLLBACK_MAX_TARGETS).
	MaxAlerts, MaxTargets int
}

// Events records what happened as Kubernetes Events (report.Events).
type Events interface {
	Record(w kinds.Ref, uid types.UID, r outcome.Result)
	RecordRelated(ref corev1.ObjectReference, r outcome.Result)
	Shutdown()
}

// Pipeline handles notifications. It is safe for concurrent use.
type Pipeline struct {
	cfg      Config
	log      *zap.SugaredLogger
	resolver *target.Resolver
	undoer   *undo.Undoer
	// Events records each outcome; tests replace it to count them.
	Events Events
	// seen remembers the alert occurrences this process saw handled (see seen).
	seen *seen
	// now is the clock of that memory; tests replace it.
	now func() time.Time
}

// New returns a Pipeline that finds workloads with resolver, undoes them with undoer and
// records Events with events.
func New(cfg Config, log *zap.SugaredLogger, resolver *target.Resolver, undoer *undo.Undoer, events Events) *Pipeline {
	return &Pipeline{cfg: cfg, log: log, resolver: resolver, undoer: undoer, Events: events, seen: newSeen(seenCapacity), now: time.Now}
}

// Run runs the undo for every workload the notification is about, records an Event and a
// log line for each outcome, and returns the report.
//
// Copies of a notification are common (re-sends, HA pairs, retries). While one is being
// handled, the others wait for it (seen.claim); once it settled, a copy is answered from
// what this process remembers, with no API call and no Event.
func (p *Pipeline) Run(ctx context.Context, msg *alert.Message) outcome.Response {
	resp := outcome.Response{TruncatedAlerts: msg.TruncatedAlerts, Results: []outcome.Result{}}
	// The caller's group key is logged once per notification, and clipped: it is caller
	// text, and could otherwise multiply the log by the number of results.
	log := p.log.With("groupKey", alert.Clip(msg.GroupKey))
	if msg.TruncatedAlerts > 0 {
		log.Warnw("Alertmanager left alerts out of this notification (max_alerts); set max_alerts: 0 on the receiver",
			"truncatedAlerts", msg.TruncatedAlerts)
	}

	// 1. The alerts that count, grouped by the workload label they name.
	lookups, settled := p.lookups(msg, &resp.Ignored)
	resp.Results = append(resp.Results, settled...)
	// 2. Copies of these occurrences in flight settle first.
	release, err := p.seen.claim(ctx, keysOf(lookups))
	if err != nil {
		err = fmt.Errorf("waiting for a copy of this notification in flight: %w", err)
		for _, l := range lookups {
			r := outcome.Of(l.alerts, target.Ref{}, undo.Change{}, err)
			r.Namespace = l.namespace
			resp.Results = append(resp.Results, r)
		}
	} else {
		// 3. Occurrences this process saw handled are answered from memory.
		p.recall(lookups)
		// 4. The workloads, and the blast radius.
		plan := p.pickTargets(ctx, lookups)
		// 5. The undos, each behind its guards; what settles as handled is remembered.
		resp.Results = append(resp.Results, p.undoAll(ctx, plan)...)
		release()
	}
	// 6. The report: a log line per result (the Events are recorded as each undo ends).
	for _, r := range resp.Results {
		log.Infow(r.Message, "action", r.Action, "reason", r.Reason, "namespace", r.Namespace, "kind", r.Kind,
			"name", r.Name, "alertname", r.AlertName, "fingerprint", r.Fingerprint, "alerts", r.Alerts,
			"fromRevision", r.FromRevision, "toRevision", r.ToRevision, "dryRun", r.DryRun)
	}
	return resp
}

// Waits counts the notifications that waited for a copy in flight.
func (p *Pipeline) Waits() int {
	p.seen.mu.Lock()
	defer p.seen.mu.Unlock()
	return p.seen.waits
}
