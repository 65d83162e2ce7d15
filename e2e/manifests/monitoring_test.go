package manifests

import (
	"bytes"
	"context"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
	"github.com/sre-kit/alert-rollback/e2e/run"
	"github.com/sre-kit/alert-rollback/internal/alert"
)

// The files under test, relative to the repository root.
const (
	rulesFile     = "deploy/prometheus/rollback-rules.yml"
	rulesTestFile = "deploy/prometheus/rollback-rules_test.yml"
	amConfigFile  = "deploy/alertmanager/alertmanager.yml"
	kpConfigFile  = "deploy/alertmanager/kube-prometheus.yml"
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
		{name: "check rules", args: []string{"check", "rules", rules}, wantOut: "SUCCESS: 3 rules found"},
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
		// Each new rule's test catches the rule going wrong: firing on the wrong condition
		// status, for pods no workload owns, or without waiting.
		{
			name:    "test rules, rollout stuck on Progressing=True",
			edits:   map[string][2]string{rulesFile: {`condition="Progressing", status="false"`, `condition="Progressing", status="true"`}},
			args:    []string{"test", "rules", tests},
			wantErr: true,
			wantOut: "FAILED",
		},
		{
			name:    "test rules, rollout stuck on any condition",
			edits:   map[string][2]string{rulesFile: {`condition="Progressing", status="false"`, `status="false"`}},
			args:    []string{"test", "rules", tests},
			wantErr: true,
			wantOut: "FAILED",
		},
		{
			name:    "test rules, crash looping for Job pods too",
			edits:   map[string][2]string{rulesFile: {`owner_kind=~"ReplicaSet|StatefulSet|DaemonSet"`, `owner_kind!=""`}},
			args:    []string{"test", "rules", tests},
			wantErr: true,
			wantOut: "FAILED",
		},
		{
			name:    "test rules, crash looping without waiting",
			edits:   map[string][2]string{rulesFile: {"for: 10m", "for: 2m"}},
			args:    []string{"test", "rules", tests},
			wantErr: true,
			wantOut: "FAILED",
		},
		{
			name:    "test rules, crash looping on any waiting reason",
			edits:   map[string][2]string{rulesFile: {`{reason="CrashLoopBackOff"}`, ``}},
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

// TestShippedAlertsRoutes checks, with the real amtool, that every alert the shipped rules
// raise reaches the function through the shipped Alertmanager route (and people too), and that
// the function's default ROLLBACK_MATCH acts on it; and that kube-prometheus's alert for the
// same signal does neither. The alerts' fixed labels are read from the rules file, so a rule
// whose labels stop matching the route fails here; a new rule without a sample fails too.
func TestShippedAlertsRoutes(t *testing.T) {
	cluster.Require(t, "amtool")
	cfg := filepath.Base(amConfigFile)
	match, err := alert.ParseMatcher(alert.DefaultMatch)
	if err != nil {
		t.Fatalf("alert.DefaultMatch %s: %v", alert.DefaultMatch, err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert  string            `json:"alert"`
				Labels map[string]string `json:"labels"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(readRepoFile(t, rulesFile), &rules); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	// The labels each rule's expression keeps (its `by (...)`), as Prometheus sends them.
	kept := map[string][]string{
		"KubePodUnschedulable":                {"namespace=shop", "pod=web-7c9f8d6b5-x2k4q"},
		"AlertRollbackDeploymentRolloutStuck": {"namespace=shop", "deployment=web"},
		"AlertRollbackPodCrashLooping":        {"namespace=shop", "pod=web-7c9f8d6b5-x2k4q", "owner_kind=ReplicaSet"},
	}
	type sample struct {
		name      string
		labels    []string
		receivers string
	}
	var samples []sample
	shipped := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue // a recording rule
			}
			shipped[r.Alert] = true
			labels, ok := kept[r.Alert]
			if !ok {
				t.Errorf("%s raises %s, which this test has no sample for: add its labels to kept", rulesFile, r.Alert)
				continue
			}
			labels = append([]string{"alertname=" + r.Alert}, labels...)
			for _, k := range slices.Sorted(maps.Keys(r.Labels)) {
				labels = append(labels, k+"="+r.Labels[k])
			}
			samples = append(samples, sample{r.Alert, labels, "alert-rollback,default"})
		}
	}
	for name := range kept {
		if !shipped[name] {
			t.Errorf("kept names %s, which %s does not raise", name, rulesFile)
		}
	}
	// kube-prometheus's alert for the stuck rollout, at its own severity: people's only.
	samples = append(samples, sample{"kube-prometheus's KubeDeploymentRolloutStuck",
		[]string{"alertname=KubeDeploymentRolloutStuck", "severity=warning", "namespace=shop", "deployment=web"}, "default"})

	for _, tc := range samples {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"config", "routes", "test", "--config.file=" + cfg, "--verify.receivers=" + tc.receivers}, tc.labels...)
			dir := copyEdited(t, []string{amConfigFile}, nil)
			out, err := runTool(t, dir, "amtool", args...)
			checkToolResult(t, "amtool "+strings.Join(args, " "), out, err, false, tc.receivers)
			toFunction := slices.Contains(strings.Split(tc.receivers, ","), "alert-rollback")
			if got := match.Matches(labelMap(tc.labels)); got != toFunction {
				t.Errorf("the default ROLLBACK_MATCH %s matches %v = %v; the route sends it to the function: %v", alert.DefaultMatch, tc.labels, got, toFunction)
			}
		})
	}
}

// TestKubePrometheusRoutes checks the kube-prometheus recipe with the real amtool: which
// receivers each alert reaches, with kube-prometheus's own labels. For every sample it also
// checks that the README's ROLLBACK_MATCH (what the function is told to act on) picks exactly
// the alerts the route sends to it.
func TestKubePrometheusRoutes(t *testing.T) {
	cluster.Require(t, "amtool")
	cfg := filepath.Base(kpConfigFile)
	readme, err := run.ReadmeMatcher()
	if err != nil {
		t.Fatal(err)
	}
	match, err := alert.ParseMatcher(readme)
	if err != nil {
		t.Fatalf("the README's ROLLBACK_MATCH %s: %v", readme, err)
	}
	t.Logf("README's ROLLBACK_MATCH: %s", readme)

	ksm := []string{"job=kube-state-metrics", "instance=10.0.0.7:8080", "service=kube-state-metrics", "prometheus=monitoring/k8s"}
	samples := []struct {
		name      string
		labels    []string
		receivers string // what amtool must print, and --verify.receivers checks
	}{
		{"rollout stuck", []string{"alertname=KubeDeploymentRolloutStuck", "severity=warning", "namespace=shop", "deployment=web", "condition=Progressing", "status=false"}, "alert-rollback,Default"},
		{"crash looping", []string{"alertname=KubePodCrashLooping", "severity=warning", "namespace=shop", "pod=web-7c9f8d6b5-x2k4q", "container=app", "reason=CrashLoopBackOff"}, "alert-rollback,Default"},
		{"pod not ready", []string{"alertname=KubePodNotReady", "severity=warning", "namespace=shop", "pod=web-7c9f8d6b5-x2k4q"}, "alert-rollback,Default"},
		{"pod not ready raised to critical", []string{"alertname=KubePodNotReady", "severity=critical", "namespace=shop", "pod=web-7c9f8d6b5-x2k4q"}, "alert-rollback,Critical"},
		{"crash looping at info", []string{"alertname=KubePodCrashLooping", "severity=info", "namespace=shop", "pod=web-7c9f8d6b5-x2k4q"}, "Default"},
		{"crash looping without severity", []string{"alertname=KubePodCrashLooping", "namespace=shop", "pod=web-7c9f8d6b5-x2k4q"}, "Default"},
		{"replicas mismatch", []string{"alertname=KubeDeploymentReplicasMismatch", "severity=warning", "namespace=shop", "deployment=web"}, "Default"},
		{"other critical", []string{"alertname=KubeAPIErrorBudgetBurn", "severity=critical"}, "Critical"},
		{"watchdog", []string{"alertname=Watchdog", "severity=none"}, "Watchdog"},
		{"info inhibitor", []string{"alertname=InfoInhibitor", "severity=none", "namespace=shop"}, "null"},
		{"the shipped rule's alert", []string{"alertname=AlertRollbackDeploymentRolloutStuck", "severity=rollback", "namespace=shop", "deployment=web"}, "Default"},
	}
	for _, tc := range samples {
		t.Run(tc.name, func(t *testing.T) {
			labels := append(append([]string{}, tc.labels...), ksm...)
			args := append([]string{"config", "routes", "test", "--config.file=" + cfg, "--verify.receivers=" + tc.receivers}, labels...)
			dir := copyEdited(t, []string{kpConfigFile}, nil)
			out, err := runTool(t, dir, "amtool", args...)
			checkToolResult(t, "amtool "+strings.Join(args, " "), out, err, false, tc.receivers)
			t.Logf("%s → %s", strings.Join(tc.labels, " "), strings.TrimSpace(out))

			toFunction := slices.Contains(strings.Split(tc.receivers, ","), "alert-rollback")
			if got := match.Matches(labelMap(labels)); got != toFunction {
				t.Errorf("README's ROLLBACK_MATCH matches %v = %v; the route sends it to the function: %v", tc.labels, got, toFunction)
			}
		})
	}

	// amtool can fail on the recipe: the checks above would catch a route that stops people
	// from hearing about the alert, or one that misses kube-prometheus's severity.
	failures := []struct {
		name   string
		edit   [2]string
		labels []string
		want   string
	}{
		{"no continue", [2]string{"      continue: true\n", ""}, []string{"alertname=KubeDeploymentRolloutStuck", "severity=warning", "namespace=shop", "deployment=web"}, "alert-rollback,Default"},
		{"no catch-all", [2]string{"    - receiver: Default\n", ""}, []string{"alertname=KubePodCrashLooping", "severity=warning", "namespace=shop", "pod=web-1"}, "alert-rollback,Default"},
		{"critical only", [2]string{`        - severity=~"warning|critical"`, `        - severity="critical"`}, []string{"alertname=KubeDeploymentRolloutStuck", "severity=warning", "namespace=shop", "deployment=web"}, "alert-rollback,Default"},
	}
	for _, tc := range failures {
		t.Run("fails/"+tc.name, func(t *testing.T) {
			dir := copyEdited(t, []string{kpConfigFile}, map[string][2]string{kpConfigFile: tc.edit})
			args := append([]string{"config", "routes", "test", "--config.file=" + cfg, "--verify.receivers=" + tc.want}, tc.labels...)
			out, err := runTool(t, dir, "amtool", args...)
			checkToolResult(t, "amtool "+strings.Join(args, " "), out, err, true, "")
		})
	}

	t.Run("check-config", func(t *testing.T) {
		dir := copyEdited(t, []string{kpConfigFile}, nil)
		out, err := runTool(t, dir, "amtool", "check-config", cfg)
		checkToolResult(t, "amtool check-config "+cfg, out, err, false, "SUCCESS")
	})
}

func labelMap(pairs []string) map[string]string {
	m := map[string]string{}
	for _, p := range pairs {
		k, v, _ := strings.Cut(p, "=")
		m[k] = v
	}
	return m
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

// TestAlertmanagerConfigSubstitutionPoints checks what the end-to-end tests rely on when they
// use alertmanager.yml or kube-prometheus.yml verbatim, replacing only the function's URL and the
// token file: each is a single line, there is exactly one of each, and they belong to the
// alert-rollback receiver.
func TestAlertmanagerConfigSubstitutionPoints(t *testing.T) {
	for _, file := range []string{amConfigFile, kpConfigFile} {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data := string(readRepoFile(t, file))
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
		})
	}
}
