//go:build !linux

package cluster

import (
	"context"
	"errors"
	"net"
)

// dialInside needs Linux's network namespaces; the real node runs only there.
func (n *netns) dialInside(ctx context.Context, network, address string) (net.Conn, error) {
	return nil, errors.New("network namespaces need Linux")
}

// listenInside needs Linux's network namespaces too.
func (n *netns) listenInside(network, address string) (net.Listener, error) {
	return nil, errors.New("network namespaces need Linux")
}
