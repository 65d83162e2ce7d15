package alert

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// ErrInvalid marks a body that is not an Alertmanager notification this function can act
// on. Alertmanager drops a notification answered with 4xx, which is right: resending the
// same bytes cannot make them valid.
var ErrInvalid = errors.New("invalid alertmanager notification")

// SupportedVersion is the webhook payload version Alertmanager has sent since v0.8.
const SupportedVersion = "4"

// Decode parses a notification and checks what the rest of the function relies on.
// Unknown fields are ignored on purpose (see Message).
func Decode(body []byte) (*Message, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, fmt.Errorf("%w: empty body", ErrInvalid)
	}
	var m Message
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("%w: malformed JSON: %v", ErrInvalid, err)
	}
	if m.Version != SupportedVersion {
		return nil, fmt.Errorf("%w: version %q is not supported, want %q", ErrInvalid, m.Version, SupportedVersion)
	}
	if len(m.Alerts) == 0 {
		return nil, fmt.Errorf("%w: no alerts", ErrInvalid)
	}
	for i, a := range m.Alerts {
		if a.Status != "firing" && a.Status != "resolved" {
			return nil, fmt.Errorf("%w: alerts[%d].status is %q, want \"firing\" or \"resolved\"", ErrInvalid, i, a.Status)
		}
		// startsAt tells one occurrence of an alert from the next; without it every later
		// bad rollout would look like a copy of the first. Alertmanager always sends it.
		if a.Firing() && a.StartsAt.IsZero() {
			return nil, fmt.Errorf("%w: alerts[%d].startsAt is missing", ErrInvalid, i)
		}
	}
	if m.TruncatedAlerts < 0 {
		return nil, fmt.Errorf("%w: truncatedAlerts is negative", ErrInvalid)
	}
	return &m, nil
}
