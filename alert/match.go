package alert

import (
	"fmt"
	"strings"
)

// DefaultMatch is the label set an alert must carry to be acted on unless configured
// otherwise: rollbacks are opt-in per alert rule, never a side effect of any page.
const DefaultMatch = "severity=rollback"

// Matcher selects the alerts that ask for a rollback: every label=value pair must match.
type Matcher map[string]string

// ParseMatcher reads a comma-separated list of label=value pairs.
func ParseMatcher(s string) (Matcher, error) {
	m := Matcher{}
	for _, pair := range strings.Split(s, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("matcher %q: want label=value", pair)
		}
		m[k] = v
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("matcher %q: no label=value pairs", s)
	}
	return m, nil
}

// Matches reports whether every pair of the matcher is among the labels.
func (m Matcher) Matches(labels map[string]string) bool {
	for k, v := range m {
		if labels[k] != v {
			return false
		}
	}
	return true
}
