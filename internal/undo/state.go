package undo

import (
	"encoding/json"
	"fmt"
	"slices"
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
}

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
	return s, nil
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

// after returns the state once an undo from revision bad has been made for the alerts ids.
func (s State) after(bad string, ids []string, rec Record) State {
	next := State{Bad: slices.Clone(s.Bad), Handled: slices.Clone(s.Handled), Last: &rec}
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
