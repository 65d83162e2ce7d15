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
// original untouched; so does a verdict on the undo awaiting verification, which clears it
// and, when it did not heal, remembers its alerts and the revision it rolled back to. It
// checks behaviour only (readState, encode, after, verdict, handled, notHealedOf), so it
// holds whatever bounds the encoding gets.
func FuzzState(f *testing.F) {
	at := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	full, _ := State{Bad: make([]string, maxBad), Handled: make([]string, maxHandled), NotHealed: make([]string, maxHandled)}.encode()
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
		`{"pending":{"at":"2026-11-26T01:00:00Z","revision":"7d9f8c6b5","revisionNumber":1,"fromRevision":2,"alerts":["abc"]}}`,
		`{"verified":{"at":"2026-11-26T01:00:00Z","revision":"web-5d8f","revisionNumber":1,"alerts":["abc"],"result":"not-healed","verifiedAt":"2026-11-26T01:10:00Z"},"notHealed":["abc"]}`,
		`{"pending":{"revision":""}}`,
		`{"pending":{"at":"2026-11-26T01:00:00Z"}}`,
		`{"pending":{"at":"2026-11-26T01:00:00Z","revision":"x","revisionNumber":-1}}`,
		`{"pending":{"at":"2026-11-26T01:00:00Z","revision":"x","alerts":"abc"}}`,
		`{"pending":null,"verified":{"result":"maybe"}}`,
		`{"verified":{"at":"2026-11-26T01:00:00Z","revision":"x","result":"healed"},"notHealed":[1]}`,
		`{"notHealed":"abc"}`,
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

		pending := &Verification{At: at, Revision: bad + "-to", Number: 1, From: 2, Alerts: fingerprints([]string{id})}
		next := s.after(bad, []string{id}, Record{At: at, Alert: id, From: 2, To: 1}, pending)
		if next.Pending != pending {
			t.Fatalf("after() recorded pending %+v; want %+v", next.Pending, pending)
		}
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
		enc, err = next.encode()
		if err != nil {
			t.Fatalf("encode() after an undo = %v", err)
		}
		if _, err := readState(map[string]string{StateAnnotation: enc}); err != nil {
			t.Fatalf("the state after an undo does not read back: %v; encoded %q", err, enc)
		}

		for _, result := range []Result{Healed, NotHealed} {
			v := next.verdict(Verdict{Verification: *pending, Result: result, VerifiedAt: at})
			if v.Pending != nil || v.Verified == nil || v.Verified.Result != result {
				t.Fatalf("verdict(%s) left pending %+v, verified %+v", result, v.Pending, v.Verified)
			}
			if len(v.Bad) > maxBad || len(v.NotHealed) > maxHandled {
				t.Fatalf("verdict(%s) kept %d bad and %d not healed; want at most %d and %d", result, len(v.Bad), len(v.NotHealed), maxBad, maxHandled)
			}
			refused := len(v.notHealedOf([]string{id})) > 0
			if result == NotHealed && (!refused || !slices.Contains(v.Bad, pending.Revision)) {
				t.Fatalf("verdict(not-healed) forgot the alert %q or the revision %q: %+v", id, pending.Revision, v)
			}
			if result == Healed && refused != (len(s.notHealedOf([]string{id})) > 0) {
				t.Fatalf("verdict(healed) changed whether %q is refused", id)
			}
			enc, err := v.encode()
			if err != nil {
				t.Fatalf("encode() after verdict(%s) = %v", result, err)
			}
			if _, err := readState(map[string]string{StateAnnotation: enc}); err != nil {
				t.Fatalf("the state after verdict(%s) does not read back: %v; encoded %q", result, err, enc)
			}
		}
		if again, _ := next.encode(); again != enc {
			t.Fatalf("verdict() changed the state it started from")
		}
	})
}
