// Package memlimit gives the Go runtime a soft memory limit from the container's own, so
// the collector works harder before the kernel's OOM killer acts. Both runtimes the function
// runs under (cmd/rollback and func's) start it through Function.Start, which calls Set.
package memlimit

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"path"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
)

// Share is the part of the container's memory limit the Go heap may use before
// the collector works harder: the rest is for stacks, the runtime and what the GC lets
// pile up between cycles.
const Share = 0.9

// noLimit is cgroup v1's "unlimited": the largest page-aligned int64, or close to it.
const noLimit = 1 << 62

// containerMemoryLimit finds the memory limit of the container the process runs in, and
// where it came from: ROLLBACK_MEMORY_LIMIT (bytes, as the Downward API's resourceFieldRef
// `limits.memory` gives them), else the cgroup's own file, v2 (memory.max) or v1
// (memory/memory.limit_in_bytes), found through /proc/self/cgroup or at the root of the
// container's cgroup mount. root is the file system holding proc/ and sys/ (os.DirFS("/")).
// It returns 0 when there is no limit.
func containerMemoryLimit(env map[string]string, root fs.FS) (int64, string, error) {
	if v := env["ROLLBACK_MEMORY_LIMIT"]; v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return 0, "", fmt.Errorf("ROLLBACK_MEMORY_LIMIT: %q is not a positive number of bytes", v)
		}
		return n, "ROLLBACK_MEMORY_LIMIT", nil
	}
	for _, file := range cgroupLimitFiles(root) {
		b, err := fs.ReadFile(root, file)
		if err != nil {
			continue
		}
		v := string(bytes.TrimSpace(b))
		if v == "max" {
			return 0, "/" + file, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, "", fmt.Errorf("/%s: %q: %w", file, v, err)
		}
		if n <= 0 || n >= noLimit {
			return 0, "/" + file, nil
		}
		return n, "/" + file, nil
	}
	return 0, "", nil
}

// cgroupLimitFiles lists where the limit may be, most specific first: the process's own
// cgroup as /proc/self/cgroup names it (no cgroup namespace), then the mount's root (with a
// cgroup namespace, or a runtime that mounts only the container's cgroup there).
func cgroupLimitFiles(root fs.FS) []string {
	var files []string
	if b, err := fs.ReadFile(root, "proc/self/cgroup"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			// hierarchy-ID:controller-list:cgroup-path
			parts := strings.SplitN(sc.Text(), ":", 3)
			if len(parts) != 3 || parts[2] == "/" {
				continue
			}
			p := strings.TrimPrefix(path.Clean(parts[2]), "/")
			switch {
			case parts[0] == "0" && parts[1] == "":
				files = append(files, path.Join("sys/fs/cgroup", p, "memory.max"))
			case hasController(parts[1], "memory"):
				files = append(files, path.Join("sys/fs/cgroup/memory", p, "memory.limit_in_bytes"))
			}
		}
	}
	return append(files, "sys/fs/cgroup/memory.max", "sys/fs/cgroup/memory/memory.limit_in_bytes")
}

func hasController(list, name string) bool {
	return slices.Contains(strings.Split(list, ","), name)
}

// Set gives the Go runtime a soft memory limit of Share of the
// container's, unless GOMEMLIMIT is set (the runtime has then applied it already). Without
// it the collector lets the heap double between cycles and a burst can reach the kernel's
// OOM killer first. It returns what it did, for the log.
func Set(env map[string]string, root fs.FS) (string, error) {
	if v := env["GOMEMLIMIT"]; v != "" {
		return "GOMEMLIMIT=" + v + " (from the environment)", nil
	}
	limit, source, err := containerMemoryLimit(env, root)
	if err != nil {
		return "", err
	}
	if limit == 0 {
		return "no container memory limit found: GOMEMLIMIT not set", nil
	}
	soft := int64(float64(limit) * Share)
	debug.SetMemoryLimit(soft)
	return fmt.Sprintf("GOMEMLIMIT=%d (%.0f%% of %d bytes from %s)", soft, Share*100, limit, source), nil
}
