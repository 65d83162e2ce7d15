package pipeline

import (
	"context"
	"strconv"
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
	if n := s.handled.Len(); n != 2 {
		t.Errorf("%d entries; want 2", n)
	}
}

// TestPipelineSeenHolds4096: the pipeline's memory keeps seenCapacity (4,096) occurrences,
// about 1 MiB, and no more.
func TestPipelineSeenHolds4096(t *testing.T) {
	s := New(Config{}, nil, nil, nil, nil).seen
	v := handledUndo{ref: kinds.RefOf(kinds.Deployment, "shop", "a")}
	for i := range 4096 + 1 {
		s.add(strconv.Itoa(i), v)
	}
	if n := s.handled.Len(); n != 4096 {
		t.Errorf("%d entries; want 4096", n)
	}
	if _, ok := s.get("0"); ok {
		t.Error("the oldest entry is still there; want it dropped")
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
