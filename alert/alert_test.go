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
	files, err := filepath.Glob("../testdata/alertmanager-*.json")
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
	tests := []struct {
		spec    string
		labels  map[string]string
		want    bool
		wantErr bool
	}{
		{spec: "severity=rollback", labels: map[string]string{"severity": "rollback"}, want: true},
		{spec: "severity=rollback", labels: map[string]string{"severity": "page"}},
		{spec: "severity=rollback, team=shop", labels: map[string]string{"severity": "rollback"}},
		{spec: "severity=rollback,team=shop", labels: map[string]string{"severity": "rollback", "team": "shop"}, want: true},
		{spec: "severity", wantErr: true},
		{spec: "=x", wantErr: true},
		{spec: " , ", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			m, err := ParseMatcher(tc.spec)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseMatcher(%q) = %v; want error %v", tc.spec, err, tc.wantErr)
			}
			if err == nil && m.Matches(tc.labels) != tc.want {
				t.Errorf("Matches(%v) = %v; want %v", tc.labels, !tc.want, tc.want)
			}
		})
	}
}
