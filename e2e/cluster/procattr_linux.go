package cluster

import "syscall"

// sysProcAttr makes the kernel kill a server when the process that started it
// dies, so a test binary killed by a timeout or a panic leaves no apiserver or
// etcd behind holding ports and files.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
