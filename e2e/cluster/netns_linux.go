package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// dialInside connects to address from inside the namespace: setns is Linux's.
func (n *netns) dialInside(ctx context.Context, network, address string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		// A socket belongs to the network namespace of the thread that creates it, for its
		// whole life. So create it on a thread moved into the namespace, then move the thread
		// back. If moving back fails the thread stays locked and Go ends it with this
		// goroutine, so no other goroutine ever runs in the wrong namespace.
		runtime.LockOSThread()
		conn, err := func() (net.Conn, error) {
			home, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
			if err != nil {
				return nil, err
			}
			defer home.Close()
			target, err := os.Open(n.path())
			if err != nil {
				return nil, err
			}
			defer target.Close()
			if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
				return nil, fmt.Errorf("enter %s: %w", n.name, err)
			}
			var d net.Dialer
			conn, dialErr := d.DialContext(ctx, network, address)
			if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err != nil {
				if conn != nil {
					conn.Close()
				}
				return nil, fmt.Errorf("leave %s: %w", n.name, err)
			}
			runtime.UnlockOSThread()
			return conn, dialErr
		}()
		done <- result{conn, err}
	}()
	r := <-done
	return r.conn, r.err
}
