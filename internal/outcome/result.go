package outcome

import (
	"fmt"
	"strings"

	"github.com/sre-kit/alert-rollback/internal/alert"
	"github.com/sre-kit/alert-rollback/internal/clip"
	"github.com/sre-kit/alert-rollback/internal/target"
	"github.com/sre-kit/alert-rollback/internal/undo"
)

// Result is what happened for one workload (or one alert that named no usable workload).
type Result struct {
	AlertName   string `json:"alertname"`
	Fingerprint string `json:"fingerprint"`
	Namespace   string `json:"namespace"`
	Kind        string `json:"kind"`
	Name        string `json:"name"`
	Action      Action `json:"action"`
	// Reason is the stable code; Message the same in words, with the particulars.
	Reason       Reason `json:"reason"`
	Message      string `json:"message"`
	FromRevision int64  `json:"fromRevision"`
	ToRevision   int64  `json:"toRevision"`
	// DryRun is true when nothing was changed on purpose (ROLLBACK_DRY_RUN).
	DryRun bool `json:"dryRun"`
	// Alerts counts the alerts of the notification this result answers (several alerts
	// about one workload make one undo).
	Alerts int `json:"alerts"`
	// Retryable marks a failure a later delivery may fix; it decides the HTTP status.
	Retryable bool `json:"retryable,omitempty"`
	// Notes say what else was done for the undo (a GitOps owner suspended) or what will
	// supersede it (a Helm upgrade); the Message repeats them.
	Notes []string `json:"notes,omitempty"`
}

// Response is the body of the answer (the data of the CloudEvent answer).
type Response struct {
	Results []Result `json:"results"`
	// Ignored counts alerts not looked at: those not matching ROLLBACK_MATCH.
	Ignored int `json:"ignored"`
	// TruncatedAlerts is Alertmanager's count of alerts it left out (max_alerts).
	TruncatedAlerts int `json:"truncatedAlerts"`
}

// Of is the result for alerts (the first names it) about the workload ref, whose undo made
// the change c and ended with err (nil: rolled back).
func Of(alerts []alert.Alert, ref target.Ref, c undo.Change, err error) Result {
	a := alerts[0]
	action, reason := Classify(err)
	if err == nil && c.Verified != "" {
		action, reason = Verdict(c.Verified)
	}
	r := Result{
		AlertName:    alert.Clip(a.Name()),
		Fingerprint:  alert.Clip(a.Fingerprint),
		Namespace:    ref.Namespace,
		Kind:         ref.Kind,
		Name:         ref.Name,
		Action:       action,
		Reason:       reason,
		FromRevision: c.From,
		ToRevision:   c.To,
		DryRun:       c.DryRun,
		Alerts:       len(alerts),
		Retryable:    action == Failed && Retryable(reason),
		Notes:        c.Notes,
	}
	switch {
	case err != nil:
		r.Message = err.Error()
	case c.Verified != "":
		r.Message = c.Message
		if c.DryRun {
			r.Message = "dry run: " + r.Message
		}
	case c.DryRun:
		r.Reason = ReasonDryRun
		r.Message = fmt.Sprintf("dry run: would have rolled back from revision %d to revision %d", c.From, c.To)
	default:
		r.Message = fmt.Sprintf("rolled back from revision %d to revision %d", c.From, c.To)
	}
	switch {
	case (action == Failed || action == Refused) && len(c.Related) > 0:
		// Objects were changed for an undo that did not happen (an owner suspended): no
		// state annotation records it, so the message must say that they stay changed.
		r.Message += "; not rolled back, but done beforehand and left so: " + strings.Join(c.Notes, "; ")
	case len(c.Notes) > 0:
		r.Message += "; " + strings.Join(c.Notes, "; ")
	}
	// Errors quote what the lookup was given; whatever a caller sent, a message stays a line.
	r.Message = clip.String(r.Message, clip.Max)
	return r
}

// String is the one-line human account of a result, for Events and logs.
func (r Result) String() string {
	if r.Action == RolledBack || r.Action == Healed || r.Action == NotHealed {
		// The message says what happened already.
		return fmt.Sprintf("alert %s (%s): %s", r.AlertName, r.Fingerprint, r.Message)
	}
	return fmt.Sprintf("alert %s (%s): %s (%s): %s", r.AlertName, r.Fingerprint, r.Action, r.Reason, r.Message)
}
