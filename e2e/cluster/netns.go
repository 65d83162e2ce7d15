package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"time"
)

// The node's private network. Every address below exists only inside the node's network
// namespace (and, for peerIP, a second dead-end one): nothing in the main namespace routes to
// them, and the node's namespace has no default route, so no packet of the cluster can leave
// this machine.
const (
	// NodeIP is the node's address: the apiserver advertises it (the kubernetes Service's
	// endpoint), the kubelet reports it, CoreDNS answers on it.
	NodeIP = "10.88.0.2"
	// peerIP is the other end of the node's veth, in a namespace with nothing else in it.
	peerIP = "10.88.0.1"
	// ServiceCIDR is the ClusterIP range; the kubernetes Service is its first address.
	ServiceCIDR = "10.96.0.0/16"
	// PodCIDR is the node's pod range, on the bridge cni0.
	PodCIDR = "10.244.0.0/24"
)

// netns is a pair of named network namespaces: the node's, where every server of the
// cluster runs, and a dead-end peer holding the other end of the node's veth (this kernel
// has no dummy links, and a veth needs a peer).
type netns struct {
	name, peer string
}

// newNetns makes the namespaces and the link between them. Both ends of the veth are created
// inside the namespaces: nothing is added to the main one.
func newNetns(ctx context.Context, name string) (_ *netns, err error) {
	n := &netns{name: name, peer: name + "-peer"}
	defer func() {
		if err != nil {
			n.remove()
		}
	}()
	steps := [][]string{
		{"ip", "netns", "add", n.name},
		{"ip", "netns", "add", n.peer},
		{"ip", "-n", n.name, "link", "set", "lo", "up"},
		{"ip", "-n", n.peer, "link", "set", "lo", "up"},
		{"ip", "-n", n.name, "link", "add", "node0", "type", "veth", "peer", "name", "peer0", "netns", n.peer},
		{"ip", "-n", n.name, "addr", "add", NodeIP + "/24", "dev", "node0"},
		{"ip", "-n", n.peer, "addr", "add", peerIP + "/24", "dev", "peer0"},
		{"ip", "-n", n.name, "link", "set", "node0", "up"},
		{"ip", "-n", n.peer, "link", "set", "peer0", "up"},
		// A process on the node connecting to a ClusterIP needs a route before kube-proxy's
		// DNAT rewrites the destination. This is the only route besides the on-link ones.
		{"ip", "-n", n.name, "route", "add", ServiceCIDR, "dev", "node0", "src", NodeIP},
		{"ip", "netns", "exec", n.name, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"},
	}
	for _, s := range steps {
		if out, err := exec.CommandContext(ctx, s[0], s[1:]...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s: %w: %s", strings.Join(s, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return n, nil
}

// path is the namespace's file, which setns and nsenter take.
func (n *netns) path() string { return "/run/netns/" + n.name }

// remove deletes both namespaces. Links inside go with them.
func (n *netns) remove() error {
	var errs []error
	for _, name := range []string{n.name, n.peer} {
		if _, err := os.Stat("/run/netns/" + name); err != nil {
			continue
		}
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip netns del %s: %w: %s", name, err, strings.TrimSpace(string(out))))
		}
	}
	return errors.Join(errs...)
}

// dial opens a connection from inside the namespace, so this process (which stays in the
// main namespace) can reach the cluster's addresses without any packet ever leaving from the
// main namespace. Only IP addresses are accepted: a host name would be resolved by the main
// namespace's resolver, outside.
func (n *netns) dial(ctx context.Context, network, address string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return nil, fmt.Errorf("dial %s inside %s: only IP addresses (a name would be resolved outside the namespace)", address, n.name)
	}
	return n.dialInside(ctx, network, address)
}

// httpClient is an HTTP client whose connections start inside the namespace.
func (n *netns) httpClient() *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy:               nil, // never a proxy of the main namespace
			DialContext:         n.dial,
			MaxIdleConnsPerHost: 10,
			IdleConnTimeout:     30 * time.Second,
		},
	}
}
