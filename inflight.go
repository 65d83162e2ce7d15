package function

import (
	"context"
	"sync"
)

// inflight counts notifications being handled, so Stop can wait for them: Knative scales a
// replica down with SIGTERM, and a rollback cut off halfway would leave Alertmanager to
// retry a notification whose undo may already have landed (safe, but slower).
type inflight struct {
	mu       sync.Mutex
	n        int
	stopping bool
	idle     chan struct{} // closed when stopping and n == 0
}

func (i *inflight) begin() bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.stopping {
		return false
	}
	i.n++
	return true
}

func (i *inflight) end() {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.n--
	if i.stopping && i.n == 0 {
		close(i.idle)
	}
}

func (i *inflight) draining() bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.stopping
}

// drain stops new work and waits for the rest, or for ctx.
func (i *inflight) drain(ctx context.Context) error {
	i.mu.Lock()
	if !i.stopping {
		i.stopping = true
		i.idle = make(chan struct{})
		if i.n == 0 {
			close(i.idle)
		}
	}
	idle := i.idle
	i.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
