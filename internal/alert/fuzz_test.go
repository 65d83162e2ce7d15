package alert

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecode: whatever the bytes, Decode either refuses them with ErrInvalid or returns a
// message that holds everything the rest of the function relies on. `make test` runs the
// seeds below and testdata/fuzz; `make fuzz` searches further.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{"version":"4","alerts":[{"status":"firing","labels":{"pod":"p"},"startsAt":"2026-11-26T01:00:00Z"}]}`,
		`{"version":"4","truncatedAlerts":3,"alerts":[{"status":"resolved","endsAt":"2026-11-26T01:00:00Z"}]}`,
		`{"version":"4","alerts":[{"status":"firing","startsAt":"0001-01-01T00:00:00Z"}]}`,
		`{"version":"4","alerts":[]}`,
		`{"version":"4","alerts":null}`,
		`{"version":"4","alerts":[{"status":"firing","labels":{"a":1}}]}`,
		`{"version":4}`,
		`[]`,
		``,
		"\xff\xfe",
	} {
		f.Add([]byte(seed))
	}
	captures, _ := filepath.Glob("../../testdata/alertmanager-*.json")
	for _, name := range captures {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		var capture struct {
			Body json.RawMessage `json:"body"`
		}
		if err := json.Unmarshal(b, &capture); err != nil {
			f.Fatalf("%s: %v", name, err)
		}
		f.Add([]byte(capture.Body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := Decode(body)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Decode() = %v; want an error wrapping ErrInvalid", err)
			}
			if m != nil {
				t.Fatalf("Decode() returned a message with error %v", err)
			}
			return
		}
		if m.Version != SupportedVersion || len(m.Alerts) == 0 || m.TruncatedAlerts < 0 {
			t.Fatalf("Decode() accepted version %q, %d alerts, truncatedAlerts %d", m.Version, len(m.Alerts), m.TruncatedAlerts)
		}
		for i, a := range m.Alerts {
			if a.Status != "firing" && a.Status != "resolved" {
				t.Fatalf("alerts[%d].status %q accepted", i, a.Status)
			}
			if a.Firing() && a.StartsAt.IsZero() {
				t.Fatalf("alerts[%d] firing without startsAt accepted", i)
			}
			// Every accepted alert has an identity (the guard state keys on it).
			if a.ID() == "" {
				t.Fatalf("alerts[%d] has an empty ID", i)
			}
		}
	})
}
