package pipeline

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/lru"

	"github.com/sre-kit/alert-rollback/internal/alert"
	"github.com/sre-kit/alert-rollback/internal/target"
)

// seenCapacity bounds the occurrences remembered: at ~300 bytes each, about 1 MiB.
const seenCapacity = 4096

// seen remembers the alert occurrences this process has seen settle as handled: it made
// their undo, or the workload's state annotation listed them as handled. A copy of such an
// occurrence (Alertmanager's re-sends every repeat_interval, an HA pair's duplicate, a
// retry) is then answered from memory, with no API call and no Event. It is only ever a
// reason not to act, never to act: the state annotation on the workload stays the truth
// across replicas and restarts, and a process that forgets (it restarted, or the entry
// aged out) asks the workload again.
//
// It also keeps copies in flight from doing the same work at once: a notification first
// claims its occurrences, and one that finds any of them claimed waits for that
// notification to settle before it looks here (claim).
//
// Entries are keyed by the occurrence (fingerprint@startsAt) and the workload reference the
// alert names (namespace, label and value, before any lookup), so a copy answered from
// memory is about the very labels that were resolved the first time. Memory is bounded:
// the least recently used entries go first.
type seen struct {
	// handled is the memory, bounded, least recently used first out. The claims below
	// are what an LRU cannot do: make a copy wait for the notification handling it.
	handled *lru.Cache // of handledUndo by key

	mu       sync.Mutex
	inflight map[string]chan struct{}
	// waits counts the claims that had to wait for a copy in flight.
	waits int
}

// handledUndo is what a copy's answer says: which workload the occurrence was resolved to,
// and the undo it caused, when this process made it.
type handledUndo struct {
	ref      target.Ref
	uid      types.UID
	from, to int64
	// pending is set when this process made the undo, which then awaits verification, at
	// time at: copies answer from memory only within copyWindow of it (see fresh).
	pending bool
	at      time.Time
}

// copyWindow is how long after this process's undo a copy of its alert is answered from
// memory. An HA pair's duplicate and a copy in flight come within it, when the rollout the
// undo started can hardly be verified yet; a repeat (Alertmanager's repeat_interval, 15
// minutes in the shipped route) comes later, and verifies the undo on the workload.
const copyWindow = 30 * time.Second

// fresh reports whether a copy may be answered from v at now.
func (v handledUndo) fresh(now time.Time) bool {
	return !v.pending || now.Sub(v.at) < copyWindow
}

func newSeen(capacity int) *seen {
	return &seen{handled: lru.New(capacity), inflight: map[string]chan struct{}{}}
}

// seenKey identifies an occurrence and the workload reference it names in namespace ns.
// A resolved alert has a key of its own: it is never answered from memory (it verifies),
// and only its own copies wait for it.
func seenKey(ns string, a alert.Alert) string {
	return a.Status + "\x00" + a.ID() + "\x00" + ns + "\x00" + target.Key(a.Labels)
}

// firingKey is the key of a's occurrence as a firing alert, given its key.
func firingKey(key string, a alert.Alert) string {
	return "firing" + strings.TrimPrefix(key, a.Status)
}

// get returns what is remembered of key.
func (s *seen) get(key string) (handledUndo, bool) {
	v, ok := s.handled.Get(key)
	if !ok {
		return handledUndo{}, false
	}
	return v.(handledUndo), true
}

// add remembers key, dropping the least recently used entry when full.
func (s *seen) add(key string, v handledUndo) { s.handled.Add(key, v) }

// forget drops key: its copies are answered from the workload again.
func (s *seen) forget(key string) { s.handled.Remove(key) }

// claim marks keys as being handled by the caller, after waiting (up to ctx's end) for any
// other notification that holds one of them to let go. Keys are claimed all at once or not
// at all, so two notifications never wait for each other. The caller must call release
// when its outcomes are recorded.
func (s *seen) claim(ctx context.Context, keys []string) (release func(), err error) {
	for {
		s.mu.Lock()
		var busy chan struct{}
		for _, k := range keys {
			if ch, ok := s.inflight[k]; ok {
				busy = ch
				break
			}
		}
		if busy == nil {
			mine := make(chan struct{})
			for _, k := range keys {
				s.inflight[k] = mine
			}
			s.mu.Unlock()
			return func() {
				s.mu.Lock()
				for _, k := range keys {
					if s.inflight[k] == mine {
						delete(s.inflight, k)
					}
				}
				s.mu.Unlock()
				close(mine)
			}, nil
		}
		s.waits++
		s.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// recall takes what this process remembers of the lookups' alerts: a lookup of firing
// alerts with one seen handled is answered from memory, about the workload it was resolved
// to then. A lookup with a resolved alert never is: it verifies.
func (f *Pipeline) recall(lookups []*lookup) {
	now := f.now()
	for _, l := range lookups {
		if slices.ContainsFunc(l.alerts, notFiring) {
			continue
		}
		for _, k := range l.keys {
			if v, ok := f.seen.get(k); ok && v.fresh(now) {
				l.seen, l.target = &v, target.Target{Ref: v.ref, UID: v.uid}
				break
			}
		}
	}
}

// notFiring reports whether a is not firing (resolved): it only verifies.
func notFiring(a alert.Alert) bool { return !a.Firing() }
