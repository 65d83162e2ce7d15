package manifests

import (
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
	"github.com/sre-kit/alert-rollback/internal/alert"
)

// The rules about the function's own health, and their tests.
const (
	healthRulesFile     = "deploy/prometheus/rollback-health-rules.yml"
	healthRulesTestFile = "deploy/prometheus/rollback-health-rules_test.yml"
)

// TestPrometheusHealthRules runs promtool on the health rules, and on copies broken the
// ways that matter: counting with increase() (which misses a scaled-to-zero process's only
// sample), a window that never ends, and a rule that fires on any decision.
func TestPrometheusHealthRules(t *testing.T) {
	cluster.Require(t, "promtool")
	rules, tests := filepath.Base(healthRulesFile), filepath.Base(healthRulesTestFile)
	naive := "last_over_time(alert_rollback_decisions_total[15m])\n            - (alert_rollback_decisions_total offset 15m or last_over_time(alert_rollback_decisions_total[15m]) * 0)"
	cases := []struct {
		name    string
		edits   map[string][2]string
		args    []string
		wantErr bool
		wantOut string
	}{
		{name: "check rules", args: []string{"check", "rules", rules}, wantOut: "SUCCESS: 5 rules found"},
		{name: "test rules", args: []string{"test", "rules", tests}, wantOut: "SUCCESS"},
		{
			name:    "test rules, counting with increase()",
			edits:   map[string][2]string{healthRulesFile: {naive, "increase(alert_rollback_decisions_total[15m])"}},
			args:    []string{"test", "rules", tests},
			wantErr: true, wantOut: "FAILED",
		},
		{
			name:    "test rules, counting everything ever counted",
			edits:   map[string][2]string{healthRulesFile: {naive, "alert_rollback_decisions_total"}},
			args:    []string{"test", "rules", tests},
			wantErr: true, wantOut: "FAILED",
		},
		{
			name:    "test rules, failing on any decision",
			edits:   map[string][2]string{healthRulesFile: {`{action="failed"}`, ``}},
			args:    []string{"test", "rules", tests},
			wantErr: true, wantOut: "FAILED",
		},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyEdited(t, []string{healthRulesFile, healthRulesTestFile}, tt.edits)
			out, err := runTool(t, dir, "promtool", tt.args...)
			checkToolResult(t, "promtool "+strings.Join(tt.args, " "), out, err, tt.wantErr, tt.wantOut)
		})
	}
}

// TestHealthAlertsReachPeopleOnly: every alert of the health rules, with the labels the
// rule gives it, reaches only the default receiver through the shipped Alertmanager
// configuration (the real amtool), even with severity=rollback added; and the function's
// default ROLLBACK_MATCH would not act on any of them.
func TestHealthAlertsReachPeopleOnly(t *testing.T) {
	cluster.Require(t, "amtool")
	cfg := filepath.Base(amConfigFile)
	match, err := alert.ParseMatcher(alert.DefaultMatch)
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert  string            `json:"alert"`
				Labels map[string]string `json:"labels"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(readRepoFile(t, healthRulesFile), &rules); err != nil {
		t.Fatalf("%s: %v", healthRulesFile, err)
	}
	var n int
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue // a recording rule
			}
			n++
			labels := map[string]string{"alertname": r.Alert, "namespace": "shop", "reason": "forbidden", "job": "alert-rollback"}
			maps.Copy(labels, r.Labels)
			if match.Matches(labels) {
				t.Errorf("%s: the function's ROLLBACK_MATCH (%s) acts on %v", r.Alert, alert.DefaultMatch, labels)
			}
			for _, extra := range []string{"", "severity=rollback"} {
				t.Run(r.Alert+" "+extra, func(t *testing.T) {
					args := []string{"config", "routes", "test", "--config.file=" + cfg, "--verify.receivers=default"}
					for _, k := range slices.Sorted(maps.Keys(labels)) {
						if extra != "" && strings.HasPrefix(extra, k+"=") {
							continue
						}
						args = append(args, k+"="+labels[k])
					}
					if extra != "" {
						args = append(args, extra)
					}
					dir := copyEdited(t, []string{amConfigFile}, nil)
					out, err := runTool(t, dir, "amtool", args...)
					checkToolResult(t, "amtool "+strings.Join(args, " "), out, err, false, "default")
					if strings.Contains(out, "alert-rollback") {
						t.Errorf("amtool %s: routed to the function: %s", strings.Join(args, " "), out)
					}
				})
			}
		}
	}
	if n != 3 {
		t.Errorf("%s raises %d alerts; want 3 (undo not healed, decisions failing, budget exhausted)", healthRulesFile, n)
	}
}
