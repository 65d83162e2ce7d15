package cluster

import (
	"net"
	"strings"
)

// FreePort asks the kernel for a free TCP port on 127.0.0.1 and releases it, so the
// caller can hand it to a server it starts right away. A fixed port is not safe on
// this kind of machine: any port in the ephemeral range may already be held by some
// client connection. The port can still be taken in between, so callers should
// retry once when the server reports it cannot bind.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// bindFailed reports whether a server's log says it lost the race for its port.
func bindFailed(log string) bool {
	return strings.Contains(log, "address already in use")
}
