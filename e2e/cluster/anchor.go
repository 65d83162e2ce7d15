package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// hostSysctls are the host-wide settings the kubelet rewrites at start (its
// setupKernelTunables). Inside the node's mount namespace each is covered by a plain file
// holding the host's value, so the kubelet writes there and the host keeps its own.
var hostSysctls = []string{
	"kernel/panic", "kernel/panic_on_oops", "vm/overcommit_memory", "vm/panic_on_oom",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
}

// privateDirs are host folders the kubelet and containerd write into whatever their flags say
// (/var/lib/kubelet/pki, /var/log/pods, /run/containerd, /var/lib/cni, /usr/libexec/kubernetes):
// inside the node's mount namespace each is replaced by an empty folder of the node's own.
var privateDirs = []string{"/var/lib", "/var/log", "/run", "/usr/libexec"}

// anchorScript runs as the node's anchor, in the node's network namespace and a new private
// mount namespace, which every daemon of the node then joins (nsenter -t PID -m -n): one
// mount namespace, so a token tmpfs the kubelet mounts is seen by containerd, and all of its
// mounts vanish with the last process in it.
const anchorScript = `set -eu
# sysfs shows the devices of the network namespace that mounts it: mount the node's own, and
# keep the host's cgroup hierarchies (which the kubelet and runc need) by moving them across.
mkdir -p "$D/mnt/cgroup"
mount --rbind /sys/fs/cgroup "$D/mnt/cgroup"
mount -t sysfs sysfs /sys
mount --move "$D/mnt/cgroup" /sys/fs/cgroup
for p in $PRIVATE; do
	mkdir -p "$D/root$p"
	mount --bind "$D/root$p" "$p"
done
mount --bind "$D/resolv.conf" /etc/resolv.conf
mkdir -p "$D/sysctl"
for s in $SYSCTLS; do
	f="$D/sysctl/$(echo "$s" | tr / .)"
	cat "/proc/sys/$s" > "$f"
	mount --bind "$f" "/proc/sys/$s"
done
touch "$D/anchor.ready"
exec sleep infinity
`

// anchor is the process holding the node's mount namespace.
type anchor struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startAnchor starts the anchor in the network namespace ns, with dir as the node's folder,
// and waits until its mounts are in place. resolv.conf (the node's DNS, for every process
// of the node) must already be in dir.
func startAnchor(ctx context.Context, ns *netns, dir string) (*anchor, error) {
	cmd := exec.Command("nsenter", "--net="+ns.path(), "--",
		"unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", anchorScript)
	cmd.Env = []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"D=" + dir,
		"PRIVATE=" + strings.Join(privateDirs, " "),
		"SYSCTLS=" + strings.Join(hostSysctls, " "),
	}
	log, err := os.Create(filepath.Join(dir, "anchor.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start the node's anchor: %w", err)
	}
	a := &anchor{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); log.Close(); close(a.done) }()
	err = wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		select {
		case <-a.done:
			b, _ := os.ReadFile(filepath.Join(dir, "anchor.log"))
			return false, fmt.Errorf("the node's anchor exited: %s", strings.TrimSpace(string(b)))
		default:
		}
		_, err := os.Stat(filepath.Join(dir, "anchor.ready"))
		return err == nil, nil
	})
	if err != nil {
		a.stop()
		return nil, err
	}
	return a, nil
}

// pid is the anchor's process id, which nsenter -t takes.
func (a *anchor) pid() int { return a.cmd.Process.Pid }

// wrap is the command prefix that runs a program inside the node: its network and mount
// namespaces.
func (a *anchor) wrap() []string {
	return []string{"nsenter", "-t", strconv.Itoa(a.pid()), "-m", "-n", "--"}
}

// mountNS is the identity of the node's mount namespace, to find the processes in it.
func (a *anchor) mountNS() (string, error) {
	return os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", a.pid()))
}

func (a *anchor) stop() {
	if a == nil {
		return
	}
	select {
	case <-a.done:
		return
	default:
	}
	_ = a.cmd.Process.Signal(syscall.SIGKILL)
	<-a.done
}

// processesIn returns the ids of the processes (other than the anchor) in the mount
// namespace ns: what containerd left running (its shims) once it stopped.
func processesIn(ns string, except int) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == except {
			continue
		}
		if link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); err == nil && link == ns {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killAll sends SIGKILL to pids and waits until they are gone.
func killAll(pids []int) error {
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		for _, pid := range pids {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
				if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); !isZombie(b) {
					return false, nil
				}
			}
		}
		return true, nil
	})
}

// isZombie reports whether a /proc/PID/stat line says the process has exited and only
// waits for its parent to reap it.
func isZombie(stat []byte) bool {
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}

// cgroupHierarchies are the cgroup v1 mounts of this machine (/sys/fs/cgroup/<name>); the
// node's pods live under one folder of its own in each.
func cgroupHierarchies() ([]string, error) {
	entries, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, e := range entries {
		p := filepath.Join("/sys/fs/cgroup", e.Name())
		if _, err := os.Stat(filepath.Join(p, "cgroup.procs")); err == nil {
			dirs = append(dirs, p)
		}
	}
	if len(dirs) == 0 {
		return nil, errors.New("no cgroup hierarchies under /sys/fs/cgroup")
	}
	return dirs, nil
}

// makeCgroupRoot creates the node's cgroup folder in every hierarchy. A new cpuset starts
// with no CPUs and no memory nodes, and a cgroup under it could hold no process: copy its
// parent's.
func makeCgroupRoot(root string) error {
	dirs, err := cgroupHierarchies()
	if err != nil {
		return err
	}
	for _, d := range dirs {
		p := filepath.Join(d, root)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return err
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if b, err := os.ReadFile(filepath.Join(d, f)); err == nil {
				if err := os.WriteFile(filepath.Join(p, f), b, 0o644); err != nil {
					return fmt.Errorf("%s: %w", filepath.Join(p, f), err)
				}
			}
		}
	}
	return nil
}

// cgroupProcs returns the processes in the node's cgroup folders: the pods' containers.
func cgroupProcs(root string) []int {
	dirs, _ := cgroupHierarchies()
	seen := map[int]bool{}
	var pids []int
	for _, d := range dirs {
		_ = filepath.WalkDir(filepath.Join(d, root), func(p string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() || e.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && !seen[pid] {
					seen[pid] = true
					pids = append(pids, pid)
				}
			}
			return nil
		})
	}
	return pids
}

// removeCgroupRoot removes the node's cgroup folders, deepest first. They must hold no
// process any more.
func removeCgroupRoot(root string) error {
	dirs, err := cgroupHierarchies()
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range dirs {
		var folders []string
		_ = filepath.WalkDir(filepath.Join(d, root), func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				folders = append(folders, p)
			}
			return nil
		})
		for i := len(folders) - 1; i >= 0; i-- {
			if err := os.Remove(folders[i]); err != nil && !os.IsNotExist(err) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
