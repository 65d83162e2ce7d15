package memlimit

import (
	"errors"
	"math"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

const mib = 1 << 20

// TestSet checks the limit the Go runtime ends up with, whatever the container reports.
func TestSet(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	limit := func(n uint64, err error) memlimit.Provider { return func() (uint64, error) { return n, err } }
	tests := []struct {
		name       string
		gomemlimit string
		container  memlimit.Provider
		want       int64
		wantLog    string
		wantErr    string
	}{
		{name: "90% of the container's limit", container: limit(128*mib, nil), want: 128 * mib * 9 / 10, wantLog: "90% of 134217728 bytes from the cgroup"},
		{name: "GOMEMLIMIT set: left to the runtime", gomemlimit: "50MiB", container: limit(128*mib, nil), want: math.MaxInt64, wantLog: "GOMEMLIMIT=50MiB (from the environment)"},
		{name: "cgroup without a limit", container: limit(0, memlimit.ErrNoLimit), want: math.MaxInt64, wantLog: "no container memory limit"},
		{name: "not in a cgroup", container: limit(0, memlimit.ErrNoCgroup), want: math.MaxInt64, wantLog: "no container memory limit"},
		{name: "cgroup unreadable", container: limit(0, errors.New("memory.max: garbage")), want: math.MaxInt64, wantErr: "memory.max: garbage"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOMEMLIMIT", tc.gomemlimit)
			debug.SetMemoryLimit(math.MaxInt64)
			log, err := Set(tc.container)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Set() = %v; want an error mentioning %q", err, tc.wantErr)
				}
			} else if err != nil || !strings.Contains(log, tc.wantLog) {
				t.Fatalf("Set() = %q, %v; want a log mentioning %q", log, err, tc.wantLog)
			}
			// 90% of the limit, to the byte or rounded down by the float.
			if got := debug.SetMemoryLimit(-1); got < tc.want-1 || got > tc.want {
				t.Fatalf("runtime memory limit = %d; want %d", got, tc.want)
			}
		})
	}
}
