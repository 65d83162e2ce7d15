package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// fakeNode makes what a node makes outside its folder (both network namespaces, the cgroup
// folders with a subfolder, as the kubelet adds) without starting anything, and removes
// whatever is left of it at the end.
func fakeNode(t *testing.T) *node {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("ROLLBACK_REQUIRE_TOOLS") == "1" {
			t.Fatal("the node's clean-up is checked as root (network namespaces, cgroups)")
		}
		t.Skip("needs root (network namespaces, cgroups); `make test` runs it")
	}
	suffix := make([]byte, 3)
	rand.Read(suffix)
	id := nodePrefix + "t" + hex.EncodeToString(suffix)
	n := &node{id: id, dir: t.TempDir(), cgroupRoot: "/" + id, sysctls: readSysctls()}
	t.Cleanup(func() {
		(&netns{name: id, peer: id + "-peer"}).remove()
		removeCgroupRoot(n.cgroupRoot)
	})
	for _, args := range [][]string{{"netns", "add", id}, {"netns", "add", id + "-peer"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	if err := makeCgroupRoot(n.cgroupRoot); err != nil {
		t.Fatal(err)
	}
	dirs, _ := cgroupHierarchies()
	for _, d := range dirs {
		if err := os.Mkdir(filepath.Join(d, n.cgroupRoot, "kubepods"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// TestLeftovers shows that a node's clean-up check sees each kind of leftover, and that the
// sweep at the start of a run removes those of a run that was killed, but never those of a
// node that still has a process.
func TestLeftovers(t *testing.T) {
	stale, live := fakeNode(t), fakeNode(t)
	// The live node's namespace holds a process, as a running node's anchor does.
	sleeper := exec.Command("ip", "netns", "exec", live.id, "sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	waitPids(t, live.id)

	err := stale.leftovers(stale.sysctls)
	for _, want := range []string{"network namespace " + stale.id + " ", "network namespace " + stale.id + "-peer", "cgroup folder "} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("leftovers() = %v; want it to name %q", err, want)
		}
	}
	changed := map[string]string{}
	for k, v := range stale.sysctls {
		changed[k] = v
	}
	changed[hostSysctls[0]] = "not what it was"
	if err := stale.leftovers(changed); err == nil || !strings.Contains(err.Error(), "host setting "+hostSysctls[0]) {
		t.Fatalf("leftovers() with a changed setting = %v; want it named", err)
	}

	removed := sweepStale()
	for _, want := range []string{"network namespace " + stale.id, "cgroup folders /" + stale.id} {
		if !slices.Contains(removed, want) {
			t.Fatalf("sweepStale() removed %q; want %q among them", removed, want)
		}
	}
	for _, r := range removed {
		if strings.Contains(r, live.id) {
			t.Fatalf("sweepStale() removed %q, of a node with a process", r)
		}
	}
	if err := stale.leftovers(stale.sysctls); err != nil {
		t.Fatalf("after the sweep: %v", err)
	}
	if _, err := os.Stat(filepath.Join("/run/netns", live.id)); err != nil {
		t.Fatalf("the live node's namespace: %v", err)
	}
	dirs, _ := cgroupHierarchies()
	if len(dirs) == 0 {
		t.Fatal("no cgroup hierarchies")
	}
	if _, err := os.Stat(filepath.Join(dirs[0], live.cgroupRoot)); err != nil {
		t.Fatalf("the live node's cgroup folder: %v", err)
	}
}

// waitPids waits until the namespace shows a process (ip netns exec has entered it).
func waitPids(t *testing.T, name string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		out, _ := exec.Command("ip", "netns", "pids", name).Output()
		return strings.TrimSpace(string(out)) != "", nil
	})
	if err != nil {
		t.Fatalf("no process in %s: %v", name, err)
	}
}
