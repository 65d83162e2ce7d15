package cluster

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// nodePrefix names everything a node makes outside its folder: its network namespaces
// (rbnode-xxxxxx and rbnode-xxxxxx-peer) and its cgroup folder in every hierarchy.
const nodePrefix = "rbnode-"

// readSysctls reads the host-wide settings the kubelet would rewrite (hostSysctls).
func readSysctls() map[string]string {
	values := map[string]string{}
	for _, s := range hostSysctls {
		b, err := os.ReadFile(filepath.Join("/proc/sys", s))
		if err == nil {
			values[s] = strings.TrimSpace(string(b))
		}
	}
	return values
}

// leftovers lists what the node left on the host once it is released: network namespaces,
// cgroup folders, mounts of its folder, and host settings that differ from before (read
// before the node was made). Nothing is the only good answer: the next run, and the
// machine's other users, must find the host as it was.
func (n *node) leftovers(before map[string]string) error {
	var errs []error
	for _, name := range []string{n.id, n.id + "-peer"} {
		if _, err := os.Stat("/run/netns/" + name); err == nil {
			errs = append(errs, fmt.Errorf("network namespace %s is still there", name))
		}
	}
	dirs, _ := cgroupHierarchies()
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, n.cgroupRoot)); err == nil {
			errs = append(errs, fmt.Errorf("cgroup folder %s is still there", filepath.Join(d, n.cgroupRoot)))
		}
	}
	if f, err := os.Open("/proc/self/mountinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// ID parent major:minor root mount-point ...
			if fields := strings.Fields(sc.Text()); len(fields) > 4 && (strings.HasPrefix(fields[4], n.dir) || strings.Contains(fields[4], n.id)) {
				errs = append(errs, fmt.Errorf("mount %s is still there", fields[4]))
			}
		}
		f.Close()
	}
	after := readSysctls()
	for _, s := range hostSysctls {
		if before[s] != after[s] {
			errs = append(errs, fmt.Errorf("host setting %s is %q; it was %q", s, after[s], before[s]))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("the node left things behind: %w", errors.Join(errs...))
	}
	return nil
}

// sweepStale removes what an earlier node left behind when its run was killed before it
// could clean up (SIGKILL, a test binary's timeout): its network namespaces when no process
// is in them any more, and its cgroup folders when they hold no process and have no live
// network namespace (a node makes its namespace before its cgroups and removes it after, so
// a running node's folders are never taken). It returns what it removed, for the log.
func sweepStale() []string {
	var removed []string
	live := map[string]bool{}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, nodePrefix) || strings.HasSuffix(name, "-peer") {
			continue
		}
		out, err := exec.Command("ip", "netns", "pids", name).Output()
		if err != nil || strings.TrimSpace(string(out)) != "" {
			live[name] = true
			continue
		}
		if (&netns{name: name, peer: name + "-peer"}).remove() == nil {
			removed = append(removed, "network namespace "+name)
		}
	}
	dirs, _ := cgroupHierarchies()
	for _, d := range dirs {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			name := e.Name()
			if !e.IsDir() || !strings.HasPrefix(name, nodePrefix) || live[name] {
				continue
			}
			if _, err := os.Stat("/run/netns/" + name); err == nil {
				continue
			}
			if len(cgroupProcs("/"+name)) == 0 && removeCgroupRoot("/"+name) == nil {
				removed = append(removed, "cgroup folders /"+name)
			}
		}
	}
	return uniq(removed)
}

func uniq(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
