package memlimit

import (
	"math"
	"runtime/debug"
	"strings"
	"testing"
	"testing/fstest"
)

const mib = 1 << 20

func file(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }

func TestContainerMemoryLimit(t *testing.T) {
	tests := []struct {
		name       string
		env        map[string]string
		files      fstest.MapFS
		want       int64
		wantSource string
		wantErr    string
	}{
		{"cgroup v2 in a cgroup namespace", nil, fstest.MapFS{
			"proc/self/cgroup":          file("0::/\n"),
			"sys/fs/cgroup/memory.max":  file("134217728\n"),
			"sys/fs/cgroup/memory.high": file("max\n"),
		}, 128 * mib, "/sys/fs/cgroup/memory.max", ""},
		{"cgroup v2 without a namespace: the process's own cgroup", nil, fstest.MapFS{
			"proc/self/cgroup": file("0::/kubepods/burstable/pod1/ctr\n"),
			"sys/fs/cgroup/kubepods/burstable/pod1/ctr/memory.max": file("67108864\n"),
		}, 64 * mib, "/sys/fs/cgroup/kubepods/burstable/pod1/ctr/memory.max", ""},
		{"cgroup v2 without a limit", nil, fstest.MapFS{
			"proc/self/cgroup":         file("0::/\n"),
			"sys/fs/cgroup/memory.max": file("max\n"),
		}, 0, "/sys/fs/cgroup/memory.max", ""},
		{"cgroup v1 as containerd mounts it", nil, fstest.MapFS{
			"proc/self/cgroup":                           file("12:pids:/k8s/x\n4:cpu,cpuacct:/k8s/x\n9:memory:/k8s/x\n"),
			"sys/fs/cgroup/memory/memory.limit_in_bytes": file("134217728\n"),
		}, 128 * mib, "/sys/fs/cgroup/memory/memory.limit_in_bytes", ""},
		{"cgroup v1, the process's own cgroup", nil, fstest.MapFS{
			"proc/self/cgroup": file("9:memory:/k8s/x\n"),
			"sys/fs/cgroup/memory/k8s/x/memory.limit_in_bytes": file("100000000\n"),
			"sys/fs/cgroup/memory/memory.limit_in_bytes":       file("9223372036854771712\n"),
		}, 100000000, "/sys/fs/cgroup/memory/k8s/x/memory.limit_in_bytes", ""},
		{"cgroup v1 unlimited", nil, fstest.MapFS{
			"sys/fs/cgroup/memory/memory.limit_in_bytes": file("9223372036854771712\n"),
		}, 0, "/sys/fs/cgroup/memory/memory.limit_in_bytes", ""},
		{"Downward API beats the cgroup", map[string]string{"ROLLBACK_MEMORY_LIMIT": "268435456"}, fstest.MapFS{
			"sys/fs/cgroup/memory.max": file("134217728\n"),
		}, 256 * mib, "ROLLBACK_MEMORY_LIMIT", ""},
		{"no cgroup files", nil, fstest.MapFS{}, 0, "", ""},
		{"garbage in the cgroup file", nil, fstest.MapFS{
			"sys/fs/cgroup/memory.max": file("lots\n"),
		}, 0, "", "memory.max"},
		{"Downward API with a unit", map[string]string{"ROLLBACK_MEMORY_LIMIT": "128Mi"}, nil, 0, "", "not a positive number of bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, source, err := containerMemoryLimit(tc.env, tc.files)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("containerMemoryLimit() = %v; want an error mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want || source != tc.wantSource {
				t.Fatalf("containerMemoryLimit() = %d, %q, %v; want %d, %q", got, source, err, tc.want, tc.wantSource)
			}
		})
	}
}

// TestSetMemoryLimit checks the limit the Go runtime ends up with.
func TestSetMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	v2 := fstest.MapFS{"sys/fs/cgroup/memory.max": file("134217728\n")}
	tests := []struct {
		name  string
		env   map[string]string
		files fstest.MapFS
		want  int64
	}{
		{"90% of the container's limit", nil, v2, 134217728 * 9 / 10},
		{"GOMEMLIMIT set: left to the runtime", map[string]string{"GOMEMLIMIT": "50MiB"}, v2, math.MaxInt64},
		{"no limit: none set", nil, fstest.MapFS{}, math.MaxInt64},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetMemoryLimit(math.MaxInt64)
			if _, err := Set(tc.env, tc.files); err != nil {
				t.Fatal(err)
			}
			// 90% of the limit, to the byte or rounded down by the float.
			if got := debug.SetMemoryLimit(-1); got < tc.want-1 || got > tc.want {
				t.Fatalf("runtime memory limit = %d; want %d", got, tc.want)
			}
		})
	}
}
