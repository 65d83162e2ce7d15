//go:build !linux

package cluster

import "syscall"

// sysProcAttr has nothing to add where Pdeathsig does not exist; Stop still ends
// every server on a normal exit.
func sysProcAttr() *syscall.SysProcAttr { return nil }
