package cluster

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// dialInside connects to address from inside the namespace: setns is Linux's.
func (n *netns) dialInside(ctx context.Context, network, address string) (net.Conn, error) {
	return inside(n, func() (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, address)
	})
}

// listenInside listens on address inside the namespace, for a server of this process that
// pods must reach (its socket stays in the namespace for its whole life).
func (n *netns) listenInside(network, address string) (net.Listener, error) {
	return inside(n, func() (net.Listener, error) { return net.Listen(network, address) })
}

// inside runs open, which makes a socket, on a thread moved into the namespace n.
func inside[T io.Closer](n *netns, open func() (T, error)) (T, error) {
	type result struct {
		sock T
		err  error
	}
	done := make(chan result, 1)
	go func() {
		// A socket belongs to the network namespace of the thread that creates it, for its
		// whole life. So create it on a thread moved into the namespace, then move the thread
		// back. If moving back fails the thread stays locked and Go ends it with this
		// goroutine, so no other goroutine ever runs in the wrong namespace.
		runtime.LockOSThread()
		var zero T
		sock, err := func() (T, error) {
			home, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
			if err != nil {
				return zero, err
			}
			defer home.Close()
			target, err := os.Open(n.path())
			if err != nil {
				return zero, err
			}
			defer target.Close()
			if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
				return zero, fmt.Errorf("enter %s: %w", n.name, err)
			}
			sock, openErr := open()
			if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err != nil {
				if openErr == nil {
					sock.Close()
				}
				return zero, fmt.Errorf("leave %s: %w", n.name, err)
			}
			runtime.UnlockOSThread()
			return sock, openErr
		}()
		done <- result{sock, err}
	}()
	r := <-done
	return r.sock, r.err
}
