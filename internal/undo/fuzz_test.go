package undo

import (
	"errors"
	"slices"
	"testing"
	"time"
)

// FuzzState: whatever the state annotation holds (anyone who can edit the workload can
// write it), reading it either fails with ErrBadState or gives a State whose encoding reads
// back to the same State, and recording one more undo keeps the history bounded and the
// original untouched. It checks behaviour only (readState, encode, after, handled), so it
// holds whatever bounds the encoding gets.
func FuzzState(f *testing.F) {
	at := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	full, _ := State{Bad: make([]string, maxBad), Handled: make([]string, maxHandled)}.encode()
	for _, seed := range []string{
		``,
		`{}`,
		`null`,
		`{"bad":["7d9f8c6b5"],"handled":["abc@1764118800"],"last":{"at":"2026-11-26T01:00:00Z","alert":"KubePodUnschedulable","fromRevision":2,"toRevision":1}}`,
		`{"bad":null,"handled":[""],"last":null}`,
		`{"last":{"at":"9999-12-31T23:59:59-23:59"}}`,
		`{"bad":[1]}`,
		`{"bad":"x"}`,
		`[`,
		full,
	} {
		f.Add(seed, "7d9f8c6b5", "fp@1764118800")
	}
	f.Fuzz(func(t *testing.T, raw, bad, id string) {
		s, err := readState(map[string]string{StateAnnotation: raw})
		if err != nil {
			if !errors.Is(err, ErrBadState) {
				t.Fatalf("readState(%q) = %v; want ErrBadState", raw, err)
			}
			return
		}
		enc, err := s.encode()
		if err != nil {
			// A State that was read must be writable again, or the next undo fails.
			t.Fatalf("encode() of a state read from %q = %v", raw, err)
		}
		back, err := readState(map[string]string{StateAnnotation: enc})
		if err != nil {
			t.Fatalf("readState(encode()) = %v; encoded %q", err, enc)
		}
		if again, _ := back.encode(); again != enc {
			t.Fatalf("round trip changed the state:\n first %s\nsecond %s", enc, again)
		}

		next := s.after(bad, []string{id}, Record{At: at, Alert: id, From: 2, To: 1})
		if len(next.Bad) > maxBad || len(next.Handled) > maxHandled {
			t.Fatalf("after() kept %d bad and %d handled; want at most %d and %d", len(next.Bad), len(next.Handled), maxBad, maxHandled)
		}
		if !next.handled([]string{id}) {
			t.Fatalf("after() forgot the alert %q it was recorded for", id)
		}
		if bad != "" && !slices.Contains(next.Bad, bad) {
			t.Fatalf("after() forgot the revision %q it rolled back from", bad)
		}
		if unchanged, _ := s.encode(); unchanged != enc {
			t.Fatalf("after() changed the state it started from:\n before %s\n  after %s", enc, unchanged)
		}
		if _, err := next.encode(); err != nil {
			t.Fatalf("encode() after an undo = %v", err)
		}
	})
}
