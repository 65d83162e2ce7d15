package pipeline

import (
	"fmt"

	"github.com/sre-kit/alert-rollback/internal/alert"
	"github.com/sre-kit/alert-rollback/internal/kinds"
	"github.com/sre-kit/alert-rollback/internal/outcome"
	"github.com/sre-kit/alert-rollback/internal/target"
	"github.com/sre-kit/alert-rollback/internal/undo"
)

// lookup is one distinct workload reference among the alerts: alerts naming the same
// workload label in the same namespace share one lookup.
type lookup struct {
	namespace string
	labels    map[string]string
	target    target.Target
	err       error
	alerts    []alert.Alert
	keys      []string
	// seen, when set, is what this process remembers of one of the alerts (see seen).
	seen *handledUndo
}

// lookups keeps the alerts that match ROLLBACK_MATCH, firing or resolved (a resolved one
// only verifies an earlier undo), and groups them by the workload label they name (and its
// namespace), in the order they came, so each is looked up once. Alerts whose namespace
// cannot be told are settled at once, and so is a notification with more of them than
// ROLLBACK_MAX_ALERTS.
func (f *Pipeline) lookups(msg *alert.Message, ignored *int) ([]*lookup, []outcome.Result) {
	var matching []alert.Alert
	for _, a := range msg.Alerts {
		if !f.cfg.Match.Matches(a.Labels) {
			*ignored++
			continue
		}
		matching = append(matching, a)
	}
	if len(matching) > f.cfg.MaxAlerts {
		// Nothing is looked up, and one row answers for them all: the cost, the answer and
		// the log stay small whatever was sent.
		err := fmt.Errorf("%w: %d alerts, limit %d; alert on the workload (a %s label) or raise the limit",
			outcome.ErrTooManyAlerts, len(matching), f.cfg.MaxAlerts, kinds.Labels())
		return nil, []outcome.Result{outcome.Of(matching, target.Ref{}, undo.Change{}, err)}
	}
	var (
		out     []*lookup
		settled []outcome.Result
		byKey   = map[string]*lookup{}
	)
	for _, a := range matching {
		ns, err := f.resolver.Namespace(a.Labels)
		if err != nil {
			settled = append(settled, outcome.Of([]alert.Alert{a}, target.Ref{}, undo.Change{}, err))
			continue
		}
		key := ns + "\x00" + target.Key(a.Labels)
		l := byKey[key]
		if l == nil {
			l = &lookup{namespace: ns, labels: a.Labels}
			byKey[key] = l
			out = append(out, l)
		}
		l.alerts = append(l.alerts, a)
		l.keys = append(l.keys, seenKey(ns, a))
	}
	return out, settled
}

// keysOf lists the seen keys of every alert of the lookups.
func keysOf(lookups []*lookup) []string {
	var keys []string
	for _, l := range lookups {
		keys = append(keys, l.keys...)
	}
	return keys
}
