package pipeline

import (
	"context"
	"testing"
	"time"

	"github.com/sre-kit/alert-rollback/internal/kinds"
)

func TestSeenIsBounded(t *testing.T) {
	s := newSeen(2)
	v := handledUndo{ref: kinds.RefOf(kinds.Deployment, "shop", "a")}
	s.add("a", v)
	s.add("b", v)
	s.get("a") // a is now the most recently used
	s.add("c", v)
	for key, want := range map[string]bool{"a": true, "b": false, "c": true} {
		if _, ok := s.get(key); ok != want {
			t.Errorf("get(%q) found %v; want %v", key, ok, want)
		}
	}
	if n := s.order.Len(); n != 2 || len(s.entries) != 2 {
		t.Errorf("%d entries (%d in the map); want 2", n, len(s.entries))
	}
}

// TestClaimWaitsAndTimesOut: a claim on a key in flight waits for its release, and gives
// up with the context.
func TestClaimWaitsAndTimesOut(t *testing.T) {
	s := newSeen(8)
	release, err := s.claim(context.Background(), []string{"x", "y"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := s.claim(ctx, []string{"y", "z"}); err == nil {
		t.Fatal("claim of a key in flight succeeded; want it to wait until the deadline")
	}
	if _, ok := s.inflight["z"]; ok {
		t.Error("a claim that waited holds a key; want all or nothing")
	}
	release()
	if _, err := s.claim(context.Background(), []string{"y", "z"}); err != nil {
		t.Fatalf("claim after release = %v", err)
	}
}
