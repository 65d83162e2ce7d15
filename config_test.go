package function

import (
	"errors"
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
