// Package memlimit gives the Go runtime a soft memory limit from the container's own, so
// the collector works harder before the kernel's OOM killer acts. Both runtimes the function
// runs under (cmd/rollback and func's) start it through Function.Start, which calls Set.
//
// automemlimit reads the cgroup (v1 and v2) and sets the limit. What it cannot do, and Set
// adds: run from Start rather than a main's init, so func's runtime, which owns main, gets
// it too; say in the start log what the limit is; and treat a
// process outside any cgroup (go run on a laptop) as having no limit rather than failing.
package memlimit

import (
	"errors"
	"fmt"
	"os"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// Share is the part of the container's memory limit the Go heap may use before
// the collector works harder: the rest is for stacks, the runtime and what the GC lets
// pile up between cycles.
const Share = 0.9

// Set gives the Go runtime a soft memory limit of Share of the limit container reports
// (memlimit.FromCgroup in a process), unless GOMEMLIMIT is set (the runtime has then applied
// it already) or automemlimit's own AUTOMEMLIMIT=off is. Without it the collector lets the
// heap double between cycles and a burst can reach the kernel's OOM killer first. It
// returns what it did, for the log.
func Set(container memlimit.Provider) (string, error) {
	if v := os.Getenv("GOMEMLIMIT"); v != "" {
		return "GOMEMLIMIT=" + v + " (from the environment)", nil
	}
	var found uint64
	provider := func() (uint64, error) {
		n, err := container()
		if errors.Is(err, memlimit.ErrNoCgroup) || errors.Is(err, memlimit.ErrCgroupsNotSupported) {
			err = memlimit.ErrNoLimit
		}
		found = n
		return n, err
	}
	soft, err := memlimit.Set(memlimit.WithProvider(provider), memlimit.WithRatio(Share))
	if err != nil {
		return "", fmt.Errorf("memory limit: %w", err)
	}
	if found == 0 {
		return "no container memory limit found: GOMEMLIMIT not set", nil
	}
	return fmt.Sprintf("GOMEMLIMIT=%d (%.0f%% of %d bytes from the cgroup)", soft, Share*100, found), nil
}
