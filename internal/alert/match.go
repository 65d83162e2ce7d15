package alert

import (
	"errors"
	"fmt"

	"github.com/prometheus/alertmanager/pkg/labels"
)

// DefaultMatch is the matcher an alert must satisfy to be acted on unless configured
// otherwise: rollbacks are opt-in per alert rule, never a side effect of any page.
const DefaultMatch = "severity=rollback"

// Matcher selects the alerts that ask for a rollback: every one of its matchers must hold,
// as in an Alertmanager route.
type Matcher labels.Matchers

// ErrMatchesAnything marks a matcher that an alert carrying none of its labels satisfies.
var ErrMatchesAnything = errors.New("matches alerts that carry none of its labels")

// ParseMatcher reads a comma-separated list of Alertmanager matchers, such as
// `alertname=~"KubeDeploymentRolloutStuck|KubePodCrashLooping",severity!="info"`.
// The older `label=value` pairs are matchers too, so they keep working.
//
// It uses Alertmanager's classic parser (pkg/labels), which its newer packages
// (matcher/parse, matcher/compat) import and build on: of the three it adds the least to the
// binary (measured in the README), and it reads every matcher the shipped routes and the
// README use the same way Alertmanager does.
//
// A matcher that an alert with none of the named labels satisfies (such as
// `severity!="info"` alone) is refused: it would turn nearly every page into a rollback.
func ParseMatcher(s string) (Matcher, error) {
	ms, err := labels.ParseMatchers(s)
	if err != nil {
		return nil, fmt.Errorf("%q: %w; want Alertmanager matchers such as %s", s, err, example)
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("%q: no matchers; want Alertmanager matchers such as %s", s, example)
	}
	m := Matcher(ms)
	if m.Matches(nil) {
		return nil, fmt.Errorf("%s: %w: add one that requires a label value, such as alertname=~\"...\"", m, ErrMatchesAnything)
	}
	return m, nil
}

const example = `alertname=~"KubeDeploymentRolloutStuck|KubePodCrashLooping",severity!="info" or severity=rollback`

// Matches reports whether every matcher holds for the labels. A missing label has the
// empty value, as in Alertmanager.
func (m Matcher) Matches(lbls map[string]string) bool {
	for _, one := range m {
		if !one.Matches(lbls[one.Name]) {
			return false
		}
	}
	return true
}

// String writes the matchers back in Alertmanager's syntax, for logs.
func (m Matcher) String() string { return labels.Matchers(m).String() }
