package cluster

import (
	"context"
	"fmt"
	"syscall"
)

// StopServer stops the server name ("etcd" or "kube-apiserver") in the middle of whatever
// is happening, with SIGKILL when kill is set (a crash) or else SIGTERM (a shutdown), and
// returns the function that starts it again with the same arguments: the same ports and
// the same data, so every client reconnects to it unchanged. That function returns when
// the server is ready again. Tests use it to fail the control plane under the function.
func (c *Cluster) StopServer(name string, kill bool) (start func(context.Context) error, err error) {
	c.mu.Lock()
	i := c.indexOf(name)
	if i < 0 {
		c.mu.Unlock()
		return nil, fmt.Errorf("no running %s to stop", name)
	}
	p := c.processes[i]
	c.mu.Unlock()
	if p.ready == nil {
		return nil, fmt.Errorf("%s cannot be restarted: it was not started as a server", name)
	}
	if kill {
		_ = p.Signal(syscall.SIGKILL)
		<-p.Done()
	} else {
		p.Stop()
	}
	return func(ctx context.Context) error {
		next, err := StartProcess(p.spec)
		if err != nil {
			return err
		}
		// Its clients know only its old ports: no retry on other ports here.
		if err := next.WaitReady(ctx, p.timeout, p.ready); err != nil {
			next.Stop()
			return fmt.Errorf("restart %s: %w", name, err)
		}
		next.timeout, next.ready = p.timeout, p.ready
		c.mu.Lock()
		defer c.mu.Unlock()
		// In the old one's place, so Stop still stops the servers in reverse start order.
		for j, q := range c.processes {
			if q == p {
				c.processes[j] = next
				return nil
			}
		}
		c.processes = append(c.processes, next)
		return nil
	}, nil
}

// indexOf returns the position of the running server name in c.processes, or -1.
// c.mu must be held.
func (c *Cluster) indexOf(name string) int {
	for i, p := range c.processes {
		if p.Name == name && !p.Exited() {
			return i
		}
	}
	return -1
}
