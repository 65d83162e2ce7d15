// Command rollback serves the rollback function with functions-framework-go: the container
// behind kservice.yaml, and the way to run it locally (`go run ./cmd/rollback` with a
// kubeconfig). It listens on LISTEN_ADDRESS, or on all interfaces at $PORT (default 8080),
// answers /health/readiness and /health/liveness without authentication, and on SIGTERM
// lets notifications in flight finish before it exits.
//
// Its own http.Server faces the network with explicit limits (server.go): header size,
// header/read/write/idle timeouts, notifications at once; the Go heap is bounded by the
// container's memory limit (Function.Start, package internal/memlimit).
// functions-framework-go's handler sits behind it (framework.go).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"

	function "github.com/sre-kit/alert-rollback"
)

// target is the name the function is registered under; FUNCTION_TARGET selects it.
const target = "Rollback"

// shutdownGrace bounds the wait for notifications in flight; Knative's default
// termination grace is longer, and every notification answers within 20 s.
const shutdownGrace = 25 * time.Second

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "alert-rollback:", err)
		os.Exit(1)
	}
}

func run() error {
	lim := defaultLimits
	// Not a setting: tests of idle connections shorten it so they need not wait a minute.
	flag.DurationVar(&lim.idleTimeout, "idle-timeout", lim.idleTimeout, "close kept-alive connections idle this long (for tests)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ln, err := net.Listen("tcp", listenAddress())
	if err != nil {
		return err
	}
	return serve(ctx, environ(), lim, ln)
}

// serve runs the function behind our own server on ln until ctx ends, then shuts down:
// the server first (no new connections; those in flight finish), then the function.
// The settings are parsed once, here: the function's, and the bound on notifications at
// once that the server applies in front of it.
func serve(ctx context.Context, env map[string]string, lim limits, ln net.Listener) error {
	defer ln.Close()
	cfg, err := function.ParseConfig(env)
	if err != nil {
		return err
	}
	lim.maxConcurrent = cfg.MaxConcurrent()
	// The framework starts while the function does: nothing reaches either until our
	// server serves, and a cold start (Knative holds the first notification until
	// readiness) is the longer of the two instead of their sum.
	f := function.New()
	probe, err := probePath()
	if err != nil {
		return err
	}
	functions.HTTP(target, routes(f, probe).ServeHTTP)
	if os.Getenv("FUNCTION_TARGET") == "" {
		os.Setenv("FUNCTION_TARGET", target)
	}
	type framework struct {
		h   http.Handler
		err error
	}
	started := make(chan framework, 1)
	go func() {
		h, err := frameworkHandler(ctx, lim.maxConcurrent, probe)
		started <- framework{h, err}
	}()
	if err := f.StartConfig(ctx, cfg); err != nil {
		return err
	}
	fw := <-started
	if fw.err != nil {
		return fw.err
	}
	h := fw.h
	srv := newServer(lim, f.Authorized, withHealth(f, h))
	fmt.Fprintf(os.Stderr, "alert-rollback: serving on %s; limits: headers %d bytes, read header %s, read %s, write %s, idle %s, %d notifications at once\n",
		ln.Addr(), lim.maxHeaderBytes, lim.readHeaderTimeout, lim.readTimeout, lim.writeTimeout, lim.idleTimeout, lim.maxConcurrent)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	drain, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	// Shutdown closes the listener and idle connections and waits for the requests in
	// flight; then Stop lets the function finish anything of its own.
	return errors.Join(srv.Shutdown(drain), f.Stop(drain))
}

// routes is what functions-framework-go serves: the function, and probe, which answers 204
// and tells frameworkHandler that the framework serving it is ours.
func routes(f *function.Function, probe string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+probe, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("/", f.Handle)
	return mux
}

// withHealth answers the health endpoints beside h, as func's own scaffolding does. They
// are answered here, in front of the framework: a probe is not a notification, and a cold
// start (Knative holds the first notification until readiness) should not wait for a hop
// through the framework's loopback port to say what the function knows by itself.
func withHealth(f *function.Function, h http.Handler) http.Handler {
	mux := http.NewServeMux()
	health := func(check func(context.Context) (bool, error)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if ok, err := check(r.Context()); !ok {
				http.Error(w, fmt.Sprint("not ready: ", err), http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "OK")
		}
	}
	mux.Handle("/health/readiness", health(f.Ready))
	mux.Handle("/health/liveness", health(f.Alive))
	mux.Handle("/", h)
	return mux
}

// probePath is a path no other process can guess.
func probePath() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "/.alert-rollback/" + hex.EncodeToString(b), nil
}

// listenAddress follows func's convention (LISTEN_ADDRESS) and Knative's ($PORT, on all
// interfaces, 8080 by default).
func listenAddress() string {
	if addr := os.Getenv("LISTEN_ADDRESS"); addr != "" {
		return addr
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	return ":" + port
}

func environ() map[string]string {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	return env
}
