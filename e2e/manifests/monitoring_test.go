package manifests

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
)

// The files under test, relative to the repository root.
const (
	rulesFile     = "deploy/prometheus/rollback-rules.yml"
	rulesTestFile = "deploy/prometheus/rollback-rules_test.yml"
	amConfigFile  = "deploy/alertmanager/alertmanager.yml"
)

// runTool runs the pinned tool name (from $ROLLBACK_TOOLS_DIR or .bin, as `make tools` builds
// it) with args in dir and returns its combined output. A missing tool skips the test, or fails
// it under `make test`.
func runTool(t *testing.T, dir, name string, args ...string) (string, error) {
	t.Helper()
	cluster.Require(t, name)
	path, err := cluster.ToolPath(name)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err = cmd.Run()
	return out.String(), err
}

// copyEdited writes the repository files rels into a new temporary folder, keeping their base
// names, after applying edits (old → new) to the file named by edit's key. An edit that finds
// nothing to replace fails the test, so a negative case cannot pass by testing the unchanged file.
func copyEdited(t *testing.T, rels []string, edits map[string][2]string) string {
	t.Helper()
	dir := t.TempDir()
	for _, rel := range rels {
		data := string(readRepoFile(t, rel))
		if e, ok := edits[rel]; ok {
			if !strings.Contains(data, e[0]) {
				t.Fatalf("%s has no %q to replace", rel, e[0])
			}
			data = strings.Replace(data, e[0], e[1], 1)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(rel)), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestPrometheusRule(t *testing.T) {
	cluster.Require(t, "promtool")
	rules, tests := filepath.Base(rulesFile), filepath.Base(rulesTestFile)
	cases := []struct {
		name    string
		edits   map[string][2]string
		args    []string
		wantErr bool
		wantOut string // substring of promtool's output
	}{
		{name: "check rules", args: []string{"check", "rules", rules}, wantOut: "SUCCESS: 1 rules found"},
		{name: "test rules", args: []string{"test", "rules", tests}, wantOut: "SUCCESS"},
		// promtool can fail on each: a rule that does not parse, and a test whose expectation
		// the rule does not meet.
		{
			name:    "check rules, bad expression",
			edits:   map[string][2]string{rulesFile: {"> 0", "> > 0"}},
			args:    []string{"check", "rules", rules},
			wantErr: true,
		},
		{
			name:    "test rules, the rule keeping kube-state-metrics' labels",
			edits:   map[string][2]string{rulesFile: {"sum by (namespace, pod) (kube_pod_status_unschedulable) > 0", "kube_pod_status_unschedulable > 0"}},
			args:    []string{"test", "rules", tests},
			wantErr: true,
			wantOut: "FAILED",
		},
		{
			name:    "test rules, the rule firing without waiting",
			edits:   map[string][2]string{rulesFile: {"for: 5m", "for: 0m"}},
			args:    []string{"test", "rules", tests},
			wantErr: true,
			wantOut: "FAILED",
		},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyEdited(t, []string{rulesFile, rulesTestFile}, tt.edits)
			out, err := runTool(t, dir, "promtool", tt.args...)
			checkToolResult(t, "promtool "+strings.Join(tt.args, " "), out, err, tt.wantErr, tt.wantOut)
		})
	}
}

func TestAlertmanagerConfig(t *testing.T) {
	cluster.Require(t, "amtool")
	cfg := filepath.Base(amConfigFile)
	// routes returns the amtool arguments that print (and with --verify.receivers, check)
	// which receivers an alert with labels reaches.
	routes := func(receivers string, labels ...string) []string {
		return append([]string{"config", "routes", "test", "--config.file=" + cfg, "--verify.receivers=" + receivers}, labels...)
	}
	cases := []struct {
		name    string
		edits   map[string][2]string
		args    []string
		wantErr bool
		wantOut string
	}{
		{name: "check-config", args: []string{"check-config", cfg}, wantOut: "SUCCESS"},
		{
			// The rule's alert reaches the function, and people too (continue: true).
			name:    "rollback alert routed to the function and to people",
			args:    routes("alert-rollback,default", "alertname=KubePodUnschedulable", "severity=rollback", "namespace=shop", "pod=web-1"),
			wantOut: "alert-rollback,default",
		},
		{
			name:    "other alerts not routed to the function",
			args:    routes("default", "alertname=KubePodCrashLooping", "severity=warning", "namespace=shop"),
			wantOut: "default",
		},
		// amtool can fail: a route naming a receiver that does not exist, and a webhook
		// with an unknown field.
		{
			name:    "check-config, unknown receiver",
			edits:   map[string][2]string{amConfigFile: {"  - name: alert-rollback\n", "  - name: alert-rolback\n"}},
			args:    []string{"check-config", cfg},
			wantErr: true,
		},
		{
			name:    "check-config, unknown webhook field",
			edits:   map[string][2]string{amConfigFile: {"max_alerts: 0", "max_alert: 0"}},
			args:    []string{"check-config", cfg},
			wantErr: true,
		},
		{
			name:    "routes, rollback alert without the route",
			edits:   map[string][2]string{amConfigFile: {`        - severity="rollback"` + "\n      # One", `        - severity="roll-back"` + "\n      # One"}},
			args:    routes("alert-rollback,default", "severity=rollback", "namespace=shop", "pod=web-1"),
			wantErr: true,
		},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyEdited(t, []string{amConfigFile}, tt.edits)
			out, err := runTool(t, dir, "amtool", tt.args...)
			checkToolResult(t, "amtool "+strings.Join(tt.args, " "), out, err, tt.wantErr, tt.wantOut)
		})
	}
}

func checkToolResult(t *testing.T, cmd, out string, err error, wantErr bool, wantOut string) {
	t.Helper()
	if _, isExit := err.(*exec.ExitError); err != nil && !isExit {
		t.Fatalf("%s: %v", cmd, err) // did not run at all
	}
	if gotErr := err != nil; gotErr != wantErr {
		t.Errorf("%s: error = %v; want error: %v\n%s", cmd, err, wantErr, out)
	}
	if !strings.Contains(out, wantOut) {
		t.Errorf("%s: output lacks %q:\n%s", cmd, wantOut, out)
	}
}

// TestAlertmanagerConfigSubstitutionPoints checks what the end-to-end test relies on when it
// uses alertmanager.yml verbatim, replacing only the function's URL and the token file: each is
// a single line, there is exactly one of each, and they belong to the alert-rollback receiver.
func TestAlertmanagerConfigSubstitutionPoints(t *testing.T) {
	data := string(readRepoFile(t, amConfigFile))
	for _, marker := range []string{"url: http://alert-rollback.", "credentials_file:"} {
		var lines []string
		for line := range strings.Lines(data) {
			if trimmed := strings.TrimSpace(line); !strings.HasPrefix(trimmed, "#") && strings.Contains(trimmed, marker) {
				lines = append(lines, trimmed)
			}
		}
		if len(lines) != 1 {
			t.Errorf("%d non-comment lines contain %q; want exactly 1: %q", len(lines), marker, lines)
		}
	}
	if !strings.Contains(data, "url: http://alert-rollback.monitoring.svc.cluster.local/\n") {
		t.Errorf("the webhook URL is not http://alert-rollback.<namespace>.svc.cluster.local/ on one line")
	}
}
