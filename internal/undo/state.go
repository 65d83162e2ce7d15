package undo

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sre-kit/alert-rollback/internal/kinds"
)

// The annotations this function owns on a workload.
const (
	// AnnotationPrefix starts every annotation this function owns. They are never copied
	// back from an old ReplicaSet: they always come from the workload's current state.
	AnnotationPrefix = kinds.AnnotationPrefix
	// StateAnnotation holds State as JSON. It is written in the same patch as the undo,
	// under the same resourceVersion precondition, so state and undo land together or not at
	// all, whichever replica of the function, and however many copies of an alert, race.
	StateAnnotation = kinds.StateAnnotation
	// OptOutAnnotation set to "true" makes the function refuse the workload.
	OptOutAnnotation = AnnotationPrefix + "opt-out"
)

// How much history State keeps; older entries are dropped first. The guards hold for what
// is kept: a revision rolled back from more than maxBad undos ago, or an alert occurrence
// more than maxHandled undos ago, is no longer remembered. Both are far beyond what a
// Deployment's revisionHistoryLimit (10 by default) lets an undo reach, and every entry is
// short (IDs are hashes or names), so the annotation stays a few kilobytes at most.
const (
	maxBad     = 20
	maxHandled = 50
)

// State is what the function remembers on a workload between notifications, replicas
// and restarts. It lives on the workload because the function keeps nothing else: it scales
// to zero and runs several replicas.
type State struct {
	// Bad lists the last maxBad revisions this function rolled back from (pod-template-hash
	// for a Deployment, ControllerRevision name otherwise), oldest first. They are not
	// chosen as the target of a later undo. Identities survive renumbering: a Deployment rolled back to
	// an old ReplicaSet gives it a new revision number, but not a new hash.
	Bad []string `json:"bad,omitempty"`
	// Handled lists the last maxHandled alert occurrences (fingerprint@startsAt) that caused
	// an undo.
	Handled []string `json:"handled,omitempty"`
	// Last is the most recent undo; the cooldown counts from it.
	Last *Record `json:"last,omitempty"`
	// Pending is the most recent undo while it awaits verification (see verify): written
	// with the undo, cleared by the verdict. Kinds without a rollout status have none.
	Pending *Verification `json:"pending,omitempty"`
	// Verified is the verdict on the most recent undo that was verified.
	Verified *Verdict `json:"verified,omitempty"`
	// NotHealed lists the last maxHandled alert fingerprints (not occurrences: whatever
	// their startsAt) whose undo did not heal the workload, oldest first. They cause no
	// other undo: people must act.
	NotHealed []string `json:"notHealed,omitempty"`
}

// Verification is an undo awaiting verification: what it rolled back to, when, and for
// which alerts.
type Verification struct {
	// At is when the undo was made.
	At time.Time `json:"at"`
	// Revision identifies the revision rolled back to, as Bad does; Number is its number
	// then (a Deployment renumbers it when the undo rolls it out), From the number rolled
	// back from.
	Revision string `json:"revision"`
	Number   int64  `json:"revisionNumber"`
	From     int64  `json:"fromRevision"`
	// Alerts are the fingerprints of the alerts that caused the undo.
	Alerts []string `json:"alerts"`
}

// Verdict is a verification's outcome.
type Verdict struct {
	Verification
	Result     Result    `json:"result"`
	VerifiedAt time.Time `json:"verifiedAt"`
	// Message says what the rollout status was, in kubectl's words.
	Message string `json:"message,omitempty"`
}

// Result is what a verification found.
type Result string

// The verdicts.
const (
	// Healed: the workload's rollout of the revision rolled back to is complete, by the
	// rules of `kubectl rollout status` for its kind.
	Healed Result = "healed"
	// NotHealed: that rollout failed, or was not complete by its deadline.
	NotHealed Result = "not-healed"
)

// Record describes one undo.
type Record struct {
	At    time.Time `json:"at"`
	Alert string    `json:"alert,omitempty"`
	From  int64     `json:"fromRevision"`
	To    int64     `json:"toRevision"`
	// Notes say what else was done for this undo (a GitOps owner suspended, so people know
	// to resume it once Git is fixed) or what will supersede it (a Helm upgrade).
	Notes []string `json:"notes,omitempty"`
}

// readState decodes the state annotation; a workload without it has an empty State.
func readState(annotations map[string]string) (State, error) {
	var s State
	raw, ok := annotations[StateAnnotation]
	if !ok || raw == "" {
		return s, nil
	}
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		return s, fmt.Errorf("%w: %v", ErrBadState, err)
	}
	if err := s.check(); err != nil {
		return State{}, fmt.Errorf("%w: %v", ErrBadState, err)
	}
	return s, nil
}

// check refuses what no undo or verification of this function writes: a pending
// verification must say what it verifies, and a verdict must be one.
func (s State) check() error {
	checkVerification := func(field string, v Verification) error {
		switch {
		case v.Revision == "":
			return fmt.Errorf("%s names no revision", field)
		case v.At.IsZero():
			return fmt.Errorf("%s has no time", field)
		case v.Number < 0 || v.From < 0:
			return fmt.Errorf("%s has a negative revision number", field)
		case len(v.Alerts) > maxHandled:
			return fmt.Errorf("%s lists %d alerts, more than the %d kept", field, len(v.Alerts), maxHandled)
		}
		return nil
	}
	if p := s.Pending; p != nil {
		if err := checkVerification("pending", *p); err != nil {
			return err
		}
	}
	if v := s.Verified; v != nil {
		if v.Result != Healed && v.Result != NotHealed {
			return fmt.Errorf("verified has result %q, want %s or %s", v.Result, Healed, NotHealed)
		}
		if err := checkVerification("verified", v.Verification); err != nil {
			return err
		}
	}
	return nil
}

func (s State) handled(ids []string) bool { return len(s.handledOf(ids)) > 0 }

// handledOf returns the ids the state records as handled.
func (s State) handledOf(ids []string) []string {
	var out []string
	for _, id := range ids {
		if slices.Contains(s.Handled, id) {
			out = append(out, id)
		}
	}
	return out
}

// notHealedOf returns the fingerprints of ids the state records as not healed.
func (s State) notHealedOf(ids []string) []string {
	var out []string
	for _, id := range ids {
		if fp := fingerprintOf(id); slices.Contains(s.NotHealed, fp) && !slices.Contains(out, fp) {
			out = append(out, fp)
		}
	}
	return out
}

// fingerprintOf is the fingerprint of an alert occurrence's ID (fingerprint@startsAt).
func fingerprintOf(id string) string {
	if i := strings.LastIndexByte(id, '@'); i >= 0 {
		return id[:i]
	}
	return id
}

// fingerprints lists the distinct fingerprints of ids, in order.
func fingerprints(ids []string) []string {
	var out []string
	for _, id := range ids {
		if fp := fingerprintOf(id); !slices.Contains(out, fp) {
			out = append(out, fp)
		}
	}
	return keepLast(out, maxHandled)
}

// after returns the state once an undo from revision bad has been made for the alerts ids;
// pending, when set, is the undo awaiting verification (it replaces any earlier one).
func (s State) after(bad string, ids []string, rec Record, pending *Verification) State {
	next := s.clone()
	next.Last, next.Pending = &rec, pending
	if bad != "" && !slices.Contains(next.Bad, bad) {
		next.Bad = append(next.Bad, bad)
	}
	for _, id := range ids {
		if !slices.Contains(next.Handled, id) {
			next.Handled = append(next.Handled, id)
		}
	}
	next.Bad = keepLast(next.Bad, maxBad)
	next.Handled = keepLast(next.Handled, maxHandled)
	return next
}

// verdict returns the state once the pending undo has been verified: no longer pending,
// and when it did not heal, its alerts cause no other undo and the revision it rolled back
// to is not chosen again, like the one it rolled back from.
func (s State) verdict(v Verdict) State {
	next := s.clone()
	next.Pending, next.Verified = nil, &v
	if v.Result == NotHealed {
		for _, fp := range v.Alerts {
			if !slices.Contains(next.NotHealed, fp) {
				next.NotHealed = append(next.NotHealed, fp)
			}
		}
		if !slices.Contains(next.Bad, v.Revision) {
			next.Bad = append(next.Bad, v.Revision)
		}
	}
	next.Bad = keepLast(next.Bad, maxBad)
	next.NotHealed = keepLast(next.NotHealed, maxHandled)
	return next
}

// clone copies the state's lists, so the copy can change without changing s.
func (s State) clone() State {
	s.Bad, s.Handled, s.NotHealed = slices.Clone(s.Bad), slices.Clone(s.Handled), slices.Clone(s.NotHealed)
	return s
}

func (s State) encode() (string, error) {
	b, err := json.Marshal(s)
	return string(b), err
}

func keepLast(s []string, n int) []string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
