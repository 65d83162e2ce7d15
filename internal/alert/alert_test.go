package alert

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		wantErr string // "" for success
	}{
		{"minimal", `{"version":"4","alerts":[{"status":"firing","labels":{"a":"b"},"startsAt":"2026-11-26T01:00:00Z"}]}`, ""},
		{"firing without startsAt", `{"version":"4","alerts":[{"status":"firing","labels":{"a":"b"}}]}`, "startsAt is missing"},
		{"unknown fields are ignored", `{"version":"4","notification_reason":"x","routeLabels":{},"alerts":[{"status":"resolved","new":1}]}`, ""},
		{"empty", ``, "empty body"},
		{"malformed", `{"version":"4",`, "malformed JSON"},
		{"not an object", `[1,2]`, "malformed JSON"},
		{"wrong version", `{"version":"3","alerts":[{"status":"firing"}]}`, `version "3"`},
		{"no version", `{"alerts":[{"status":"firing"}]}`, `version ""`},
		{"no alerts", `{"version":"4","alerts":[]}`, "no alerts"},
		{"bad status", `{"version":"4","alerts":[{"status":"pending"}]}`, `alerts[0].status is "pending"`},
		{"negative truncatedAlerts", `{"version":"4","truncatedAlerts":-1,"alerts":[{"status":"resolved"}]}`, "negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.body))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Decode() = %v; want success", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Decode() = %v; want ErrInvalid mentioning %q", err, tc.wantErr)
			}
		})
	}
}

// TestDecodeCaptured decodes what a real Alertmanager sent (see ../testdata).
func TestDecodeCaptured(t *testing.T) {
	files, err := filepath.Glob("../../testdata/alertmanager-*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no captured notifications in ../testdata (%v)", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// The capture holds the headers beside the body.
		var capture struct {
			Body json.RawMessage `json:"body"`
		}
		if err := json.Unmarshal(b, &capture); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		m, err := Decode(capture.Body)
		if err != nil {
			t.Fatalf("%s: Decode() = %v", f, err)
		}
		a := m.Alerts[0]
		// Without its fingerprint, the alert has the ID Alertmanager's fingerprint gives it.
		if noFP := (Alert{Labels: a.Labels, StartsAt: a.StartsAt}); noFP.ID() != a.ID() {
			t.Errorf("%s: ID() without the fingerprint = %q; want %q, from Alertmanager's %q", f, noFP.ID(), a.ID(), a.Fingerprint)
		}
		if a.Fingerprint == "" || a.Labels["pod"] == "" || a.StartsAt.IsZero() || m.GroupKey == "" {
			t.Errorf("%s: decoded %+v; want fingerprint, pod, startsAt and groupKey", f, m)
		}
	}
}

func TestID(t *testing.T) {
	at := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	a := Alert{Fingerprint: "abc", StartsAt: at, Labels: map[string]string{"x": "1"}}
	tests := []struct {
		name  string
		other Alert
		same  bool
	}{
		{"a copy", a, true},
		{"fired again later", Alert{Fingerprint: "abc", StartsAt: at.Add(time.Hour)}, false},
		{"another alert", Alert{Fingerprint: "def", StartsAt: at}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := a.ID() == tc.other.ID(); got != tc.same {
				t.Errorf("ID() %q vs %q: same = %v; want %v", a.ID(), tc.other.ID(), got, tc.same)
			}
		})
	}
	noFP := Alert{StartsAt: at, Labels: map[string]string{"b": "2", "a": "1"}}
	if noFP.ID() != (Alert{StartsAt: at, Labels: map[string]string{"a": "1", "b": "2"}}).ID() {
		t.Error("ID() without a fingerprint depends on label order")
	}
}

func TestMatcher(t *testing.T) {
	const kubePrometheus = `alertname=~"KubeDeploymentRolloutStuck|KubePodCrashLooping",severity!="info",namespace=~"prod-.*"`
	stuck := func(ns, severity string) map[string]string {
		return map[string]string{"alertname": "KubeDeploymentRolloutStuck", "namespace": ns, "severity": severity, "deployment": "shop"}
	}
	tests := []struct {
		name    string
		spec    string
		labels  map[string]string
		want    bool
		wantErr error // nil: no error; errAny: any error
	}{
		// Today's label=value form.
		{name: "pair matches", spec: "severity=rollback", labels: map[string]string{"severity": "rollback"}, want: true},
		{name: "pair differs", spec: "severity=rollback", labels: map[string]string{"severity": "page"}},
		{name: "pair missing", spec: "severity=rollback", labels: map[string]string{"alertname": "X"}},
		{name: "two pairs one missing", spec: "severity=rollback, team=shop", labels: map[string]string{"severity": "rollback"}},
		{name: "two pairs", spec: "severity=rollback,team=shop", labels: map[string]string{"severity": "rollback", "team": "shop"}, want: true},
		{name: "pairs with spaces", spec: " severity = rollback , team = shop ", labels: map[string]string{"severity": "rollback", "team": "shop"}, want: true},

		// Alertmanager's matcher syntax.
		{name: "quoted equal", spec: `severity="rollback"`, labels: map[string]string{"severity": "rollback"}, want: true},
		{name: "braces", spec: `{severity="rollback"}`, labels: map[string]string{"severity": "rollback"}, want: true},
		{name: "kube-prometheus warning in prod", spec: kubePrometheus, labels: stuck("prod-shop", "warning"), want: true},
		{name: "kube-prometheus critical in prod", spec: kubePrometheus, labels: stuck("prod-shop", "critical"), want: true},
		{name: "kube-prometheus no severity label", spec: kubePrometheus, labels: map[string]string{"alertname": "KubePodCrashLooping", "namespace": "prod-a"}, want: true},
		{name: "kube-prometheus info refused", spec: kubePrometheus, labels: stuck("prod-shop", "info")},
		{name: "kube-prometheus other namespace", spec: kubePrometheus, labels: stuck("staging", "warning")},
		{name: "regex is anchored at the start", spec: kubePrometheus, labels: stuck("preprod-shop", "warning")},
		{name: "regex is anchored at the end", spec: kubePrometheus, labels: map[string]string{"alertname": "KubePodCrashLoopingX", "namespace": "prod-a"}},
		{name: "other alert name", spec: kubePrometheus, labels: map[string]string{"alertname": "KubeCPUOvercommit", "namespace": "prod-a"}},
		{name: "negative regex", spec: `alertname="KubePodNotReady",namespace!~"kube-.*"`, labels: map[string]string{"alertname": "KubePodNotReady", "namespace": "kube-system"}},
		{name: "escaped quote", spec: `team="a\"b"`, labels: map[string]string{"team": `a"b`}, want: true},

		// Refused at start.
		{name: "no operator", spec: "severity", wantErr: errAny},
		{name: "no label name", spec: "=x", wantErr: errAny},
		{name: "only commas", spec: " , ", wantErr: errAny},
		{name: "empty", spec: "", wantErr: errAny},
		{name: "bad regex", spec: `alertname=~"Kube(Deployment"`, wantErr: errAny},
		{name: "bad label name", spec: `1severity="x"`, wantErr: errAny},
		{name: "unknown operator", spec: `severity=="x"`, wantErr: errAny},
		{name: "unterminated quote", spec: `severity="x`, wantErr: errAny},
		{name: "negative alone matches anything", spec: `severity!="info"`, wantErr: ErrMatchesAnything},
		{name: "regex matching empty", spec: `alertname=~".*",namespace!="kube-system"`, wantErr: ErrMatchesAnything},
		{name: "empty value", spec: `severity=""`, wantErr: ErrMatchesAnything},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseMatcher(tc.spec)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("ParseMatcher(%q) = %v; want no error", tc.spec, err)
			case tc.wantErr != nil && err == nil:
				t.Fatalf("ParseMatcher(%q) = %v, nil; want an error", tc.spec, m)
			case tc.wantErr != nil && tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
				t.Fatalf("ParseMatcher(%q) = %v; want %v", tc.spec, err, tc.wantErr)
			case err != nil:
				if !strings.Contains(err.Error(), "alertname=~") {
					t.Errorf("ParseMatcher(%q) = %v; want the error to show a valid example", tc.spec, err)
				}
				return
			}
			if got := m.Matches(tc.labels); got != tc.want {
				t.Errorf("ParseMatcher(%q).Matches(%v) = %v; want %v", tc.spec, tc.labels, got, tc.want)
			}
		})
	}
}

// errAny stands for "some error" in tables where the exact one does not matter.
var errAny = errors.New("any error")

// TestMatcherString shows the matcher as Alertmanager writes it: the startup log line.
func TestMatcherString(t *testing.T) {
	m, err := ParseMatcher(`alertname=~"A|B", severity!=info`)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.String(), `{alertname=~"A|B",severity!="info"}`; got != want {
		t.Errorf("String() = %s; want %s", got, want)
	}
}
