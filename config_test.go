package function

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"k8s.io/utils/ptr"
)

// TestConfigMatch covers ROLLBACK_MATCH as the process sees it: unset, today's pairs,
// Alertmanager's matchers (the README's kube-prometheus matcher), and every way it can be
// wrong, each of which must stop the function before it builds a client.
func TestConfigMatch(t *testing.T) {
	const readme = `alertname=~"KubeDeploymentRolloutStuck|KubePodCrashLooping|KubePodNotReady",severity=~"warning|critical",namespace=~"prod-.*"`
	stuck := map[string]string{"alertname": "KubeDeploymentRolloutStuck", "severity": "warning", "namespace": "prod-shop", "deployment": "api"}
	tests := []struct {
		name      string
		match     *string // nil: unset
		labels    map[string]string
		want      bool
		wantInErr string // non-empty: parseConfig fails with this in its message
	}{
		{name: "unset takes the default", labels: map[string]string{"severity": "rollback"}, want: true},
		{name: "unset ignores kube-prometheus", labels: stuck},
		{name: "pairs", match: ptr.To("severity=rollback,team=shop"), labels: map[string]string{"severity": "rollback", "team": "shop"}, want: true},
		{name: "readme matcher", match: ptr.To(readme), labels: stuck, want: true},
		{name: "readme matcher info", match: ptr.To(readme), labels: map[string]string{"alertname": "KubePodNotReady", "severity": "info", "namespace": "prod-shop"}},
		{name: "set but empty", match: ptr.To(""), wantInErr: "ROLLBACK_MATCH: \"\": no matchers"},
		{name: "bad regex", match: ptr.To(`alertname=~"Kube(Deployment"`), wantInErr: "ROLLBACK_MATCH: \"alertname=~\\\"Kube(Deployment\\\"\": "},
		{name: "no operator", match: ptr.To("severity"), wantInErr: "ROLLBACK_MATCH: \"severity\": "},
		{name: "matches anything", match: ptr.To(`severity!="info"`), wantInErr: "ROLLBACK_MATCH: {severity!=\"info\"}: matches alerts that carry none of its labels"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"ROLLBACK_AUTH_TOKEN": "t"}
			if tc.match != nil {
				env["ROLLBACK_MATCH"] = *tc.match
			}
			c, err := parseConfig(env)
			if tc.wantInErr != "" {
				if err == nil || !errors.Is(err, errConfig) || !strings.Contains(err.Error(), tc.wantInErr) {
					t.Fatalf("parseConfig(ROLLBACK_MATCH=%q) = %v; want errConfig containing %q", env["ROLLBACK_MATCH"], err, tc.wantInErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseConfig(ROLLBACK_MATCH=%q) = %v", env["ROLLBACK_MATCH"], err)
			}
			if got := c.match.Matches(tc.labels); got != tc.want {
				t.Errorf("match %s on %v = %v; want %v", c.match, tc.labels, got, tc.want)
			}
		})
	}
}

// TestStartRefusesBadMatcherWithoutClient shows that a bad matcher stops Start before it
// builds a Kubernetes client, so nothing reaches the cluster.
func TestStartRefusesBadMatcherWithoutClient(t *testing.T) {
	f := New()
	built := false
	f.newClient = func(config) (clients, error) { built = true; return clients{}, nil }
	err := f.Start(t.Context(), map[string]string{"ROLLBACK_AUTH_TOKEN": "t", "ROLLBACK_MATCH": `alertname=~"("`})
	if !errors.Is(err, errConfig) || built {
		t.Fatalf("Start() = %v, client built %v; want errConfig and no client", err, built)
	}
}

// settingInError finds the settings an error names as the one that failed ("NAME: why").
var settingInError = regexp.MustCompile(`ROLLBACK_[A-Z0-9_]+:`)

// TestConfigBadValues sets each setting to values it must refuse, one at a time, and
// checks that the function will not start and that the error names that setting and no
// other. Every ROLLBACK_* setting in the README's table has rows here.
func TestConfigBadValues(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	emptyFile := filepath.Join(t.TempDir(), "empty")
	for file, data := range map[string]string{tokenFile: "t\n", emptyFile: ""} {
		if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		setting string
		value   string
		// env is set besides; nil: a token, so that only setting can be wrong.
		env map[string]string
	}{
		{setting: "ROLLBACK_AUTH_TOKEN", value: "  ", env: map[string]string{}},
		{setting: "ROLLBACK_AUTH_TOKEN_FILE", value: "/nonexistent/token", env: map[string]string{}},
		{setting: "ROLLBACK_AUTH_TOKEN_FILE", value: emptyFile, env: map[string]string{}},
		{setting: "ROLLBACK_AUTH_TOKEN_FILE", value: tokenFile},
		{setting: "ROLLBACK_ALLOW_UNAUTHENTICATED", value: "yes please"},
		{setting: "ROLLBACK_MATCH", value: "severity"},
		{setting: "ROLLBACK_MATCH", value: ""},
		{setting: "ROLLBACK_NAMESPACES", value: "prod,Prod_Shop"},
		{setting: "ROLLBACK_NAMESPACES", value: "prod-*"},
		{setting: "ROLLBACK_DEFAULT_NAMESPACE", value: "Prod"},
		{setting: "ROLLBACK_MAX_BODY_BYTES", value: "0"},
		{setting: "ROLLBACK_MAX_BODY_BYTES", value: "9223372036854775807"},
		{setting: "ROLLBACK_MAX_BODY_BYTES", value: "1MiB"},
		{setting: "ROLLBACK_COOLDOWN", value: "-1s"},
		{setting: "ROLLBACK_COOLDOWN", value: "10"},
		{setting: "ROLLBACK_MAX_AGE", value: "-1h"},
		{setting: "ROLLBACK_MAX_AGE", value: "an hour"},
		{setting: "ROLLBACK_API_TIMEOUT", value: "0s"},
		{setting: "ROLLBACK_API_TIMEOUT", value: "5"},
		{setting: "ROLLBACK_MAX_TARGETS", value: "0"},
		{setting: "ROLLBACK_MAX_TARGETS", value: "ten"},
		{setting: "ROLLBACK_MAX_ALERTS", value: "0"},
		{setting: "ROLLBACK_MAX_ALERTS", value: "10001"},
		{setting: "ROLLBACK_MAX_CONCURRENT", value: "0"},
		{setting: "ROLLBACK_MAX_CONCURRENT", value: "1001"},
		{setting: "ROLLBACK_MAX_CONCURRENT", value: "ten"},
		{setting: "ROLLBACK_DRY_RUN", value: "maybe"},
		{setting: "ROLLBACK_READ_PODS", value: "sometimes"},
		{setting: "ROLLBACK_BUDGET", value: "5 per hour"},
		{setting: "ROLLBACK_BUDGET", value: "0/1h"},
		{setting: "ROLLBACK_GITOPS", value: "pause"},
		{setting: "ROLLBACK_ARGOCD_NAMESPACE", value: "Argo_CD"},
	}
	covered := map[string]bool{}
	for _, tc := range tests {
		covered[tc.setting] = true
		t.Run(tc.setting+"="+tc.value, func(t *testing.T) {
			env := map[string]string{"ROLLBACK_AUTH_TOKEN": "t"}
			if tc.env != nil {
				env = maps.Clone(tc.env)
			}
			env[tc.setting] = tc.value
			_, err := ParseConfig(env)
			if !errors.Is(err, errConfig) {
				t.Fatalf("ParseConfig(%s=%q) = %v; want errConfig", tc.setting, tc.value, err)
			}
			named := settingInError.FindAllString(err.Error(), -1)
			if len(named) == 0 || slices.ContainsFunc(named, func(s string) bool { return s != tc.setting+":" }) {
				t.Fatalf("ParseConfig(%s=%q) = %v; want an error naming %s and no other setting", tc.setting, tc.value, err, tc.setting)
			}
		})
	}
	for name := range readmeSettings(t, "README.md") {
		if !covered[name] {
			t.Errorf("%s has no bad value in this table", name)
		}
	}
}

// TestConfigRemovedSettings: a setting the function no longer reads, still set (even
// empty), stops it at start with an error that names the setting and what replaces it,
// never silently ignored.
func TestConfigRemovedSettings(t *testing.T) {
	tests := []struct {
		setting     string
		replacement string
	}{
		{"ROLLBACK_SERVER_MAX_CONCURRENT", "ROLLBACK_MAX_CONCURRENT"},
		{"ROLLBACK_MEMORY_LIMIT", "GOMEMLIMIT"},
		{"ROLLBACK_SERVER_MAX_HEADER_BYTES", "fixed at 16 KiB"},
		{"ROLLBACK_SERVER_READ_HEADER_TIMEOUT", "fixed at 5s"},
		{"ROLLBACK_SERVER_READ_TIMEOUT", "fixed at 15s"},
		{"ROLLBACK_SERVER_WRITE_TIMEOUT", "fixed at 30s"},
		{"ROLLBACK_SERVER_IDLE_TIMEOUT", "fixed at 60s"},
	}
	covered := map[string]bool{}
	for _, tc := range tests {
		covered[tc.setting] = true
		for _, value := range []string{"10", ""} {
			t.Run(tc.setting+"="+value, func(t *testing.T) {
				_, err := ParseConfig(map[string]string{"ROLLBACK_AUTH_TOKEN": "t", tc.setting: value})
				if !errors.Is(err, errConfig) || !strings.Contains(err.Error(), tc.setting+": ") || !strings.Contains(err.Error(), tc.replacement) {
					t.Fatalf("ParseConfig(%s=%q) = %v; want errConfig naming %s and %q", tc.setting, value, err, tc.setting, tc.replacement)
				}
			})
		}
	}
	for name := range removedSettings {
		if !covered[name] {
			t.Errorf("removed setting %s is not in this table", name)
		}
	}
}
