package memlimit

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// childEnv marks the process TestSetInRealCgroup starts: it waits to be moved into the
// cgroup, then prints what Set did.
const childEnv = "MEMLIMIT_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		// Moved into the cgroup once a line arrives.
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		log, err := Set(memlimit.FromCgroup)
		fmt.Println(log, err)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestSetInRealCgroup runs Set, with automemlimit's own cgroup reading, in a process the
// kernel has put in a memory cgroup of 128 MiB: a child of this process's own cgroup (v1's
// memory controller or v2), removed afterwards. It needs root and a writable cgroup.
func TestSetInRealCgroup(t *testing.T) {
	dir, limitFile := ownMemoryCgroup(t)
	cg := filepath.Join(dir, fmt.Sprintf("alert-rollback-memlimit-%d", os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Skipf("cannot create a cgroup under %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := os.Remove(cg); err != nil {
			t.Errorf("remove cgroup %s: %v", cg, err)
		}
	})
	var limit int64 = 128 << 20
	if err := os.WriteFile(filepath.Join(cg, limitFile), []byte(strconv.FormatInt(limit, 10)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = []string{childEnv + "=1"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOMEMLIMIT=") && !strings.HasPrefix(kv, "AUTOMEMLIMIT=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	moveErr := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
	_, _ = stdin.Write([]byte("go\n"))
	stdin.Close()
	waitErr := cmd.Wait()
	if moveErr != nil || waitErr != nil {
		t.Fatalf("move the child into %s: %v; child: %v: %s", cg, moveErr, waitErr, out.String())
	}
	want := fmt.Sprintf("GOMEMLIMIT=%d (90%% of %d bytes from the cgroup) <nil>", int64(float64(limit)*Share), limit)
	if got := strings.TrimSpace(out.String()); got != want {
		t.Fatalf("in a cgroup of %d bytes, Set said %q; want %q", limit, got, want)
	}
}

// ownMemoryCgroup is the directory of this process's memory cgroup and the name of its
// limit file, or skips the test.
func ownMemoryCgroup(t *testing.T) (string, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a cgroup")
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skip(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if v1 := filepath.Join("/sys/fs/cgroup/memory", parts[2]); strings.Contains(","+parts[1]+",", ",memory,") {
			if _, err := os.Stat(filepath.Join(v1, "memory.limit_in_bytes")); err == nil {
				return v1, "memory.limit_in_bytes"
			}
		}
		if v2 := filepath.Join("/sys/fs/cgroup", parts[2]); parts[0] == "0" && parts[1] == "" {
			if _, err := os.Stat(filepath.Join(v2, "cgroup.controllers")); err == nil {
				return v2, "memory.max"
			}
		}
	}
	t.Skip("no memory cgroup of this process found")
	return "", ""
}
