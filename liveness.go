package function

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Under func's runtime, func.yaml keeps knative.dev/func-go's server on loopback
// (LISTEN_ADDRESS=127.0.0.1:8080): Knative's queue-proxy, in the same pod, forwards
// complete requests to it there, and nothing outside the pod reaches it. On the pod's own
// address that server would hold up to 1 MiB of unfinished header per connection, for any
// number of connections, which no container limit survives (see the README's "Hostile
// connections").
//
// Kubelet's liveness probe, though, goes to the pod's own address at the serving port:
// Knative rewrites the probe's port to it, and func deploy gives no way to change either.
// ROLLBACK_LIVENESS_ADDRESS has the function answer the probe there itself, with a server
// that answers nothing else and holds a few KiB per connection at most.

// Limits of the liveness server: kubelet's probe is one short GET.
const (
	livenessMaxHeaderBytes = 4 << 10
	livenessTimeout        = 2 * time.Second
)

// parseLivenessAddress checks ROLLBACK_LIVENESS_ADDRESS: host:port, the host an IP address
// or empty (every address of the pod but loopback's).
func parseLivenessAddress(v string) error {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return err
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q: want 1-65535", port)
	}
	if host != "" && net.ParseIP(host) == nil {
		return fmt.Errorf("host %q: want an IP address, or none for the pod's own", host)
	}
	return nil
}

// livenessAddrs returns the addresses to listen on for ROLLBACK_LIVENESS_ADDRESS addr:
// itself when it names a host, else its port on each of ifaddrs (the machine's interface
// addresses) but loopback and link-local ones. A listener on all addresses would collide
// with func's runtime, which holds the port on loopback.
func livenessAddrs(addr string, ifaddrs []net.Addr) ([]string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if host != "" {
		return []string{addr}, nil
	}
	var out []string
	for _, a := range ifaddrs {
		ipnet, ok := a.(*net.IPNet)
		if !ok || !ipnet.IP.IsGlobalUnicast() {
			continue
		}
		out = append(out, net.JoinHostPort(ipnet.IP.String(), port))
	}
	if len(out) == 0 {
		return nil, errors.New("no address but loopback to listen on")
	}
	return out, nil
}

// startLiveness answers GET /health/liveness from alive at ROLLBACK_LIVENESS_ADDRESS addr,
// and every other request 404, until the server it returns is shut down.
func startLiveness(addr string, alive func(context.Context) (bool, error)) (*http.Server, error) {
	var ifaddrs []net.Addr
	if host, _, _ := net.SplitHostPort(addr); host == "" {
		var err error
		if ifaddrs, err = net.InterfaceAddrs(); err != nil {
			return nil, fmt.Errorf("ROLLBACK_LIVENESS_ADDRESS: %w", err)
		}
	}
	addrs, err := livenessAddrs(addr, ifaddrs)
	if err != nil {
		return nil, fmt.Errorf("ROLLBACK_LIVENESS_ADDRESS: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health/liveness", func(w http.ResponseWriter, r *http.Request) {
		if ok, err := alive(r.Context()); !ok {
			http.Error(w, fmt.Sprint("not alive: ", err), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "OK")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "only kubelet's liveness probe is answered here: send notifications to the Knative Service", http.StatusNotFound)
	})
	srv := &http.Server{
		Handler:           mux,
		MaxHeaderBytes:    livenessMaxHeaderBytes,
		ReadHeaderTimeout: livenessTimeout,
		ReadTimeout:       livenessTimeout,
		WriteTimeout:      livenessTimeout,
		IdleTimeout:       livenessTimeout,
	}
	var lns []net.Listener
	for _, addr := range addrs {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("ROLLBACK_LIVENESS_ADDRESS: %w", err)
		}
		lns = append(lns, ln)
	}
	for _, ln := range lns {
		go func() { _ = srv.Serve(ln) }()
	}
	return srv, nil
}
