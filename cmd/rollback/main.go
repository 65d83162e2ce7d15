// Command rollback serves the rollback function with functions-framework-go: the container
// behind kservice.yaml, and the way to run it locally (`go run ./cmd/rollback` with a
// kubeconfig). It listens on LISTEN_ADDRESS, or on all interfaces at $PORT (default 8080),
// answers /health/readiness and /health/liveness without authentication, and on SIGTERM
// lets notifications in flight finish before it exits.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"
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
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	f := function.New()
	if err := f.Start(ctx, environ()); err != nil {
		return err
	}
	functions.HTTP(target, routes(f).ServeHTTP)
	if os.Getenv("FUNCTION_TARGET") == "" {
		os.Setenv("FUNCTION_TARGET", target)
	}
	host, port, err := listenAddress()
	if err != nil {
		return err
	}

	served := make(chan error, 1)
	go func() { served <- funcframework.StartHostPort(host, port) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	// functions-framework-go owns the listener and cannot close it; Stop turns new
	// notifications away with 503 (Alertmanager retries those), fails readiness so Knative
	// stops routing here, and waits for those in flight.
	drain, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	return f.Stop(drain)
}

// routes puts the health endpoints beside the function, as func's own scaffolding does.
func routes(f *function.Function) http.Handler {
	mux := http.NewServeMux()
	probe := func(check func(context.Context) (bool, error)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if ok, err := check(r.Context()); !ok {
				http.Error(w, fmt.Sprint("not ready: ", err), http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "OK")
		}
	}
	mux.Handle("/health/readiness", probe(f.Ready))
	mux.Handle("/health/liveness", probe(f.Alive))
	mux.HandleFunc("/", f.Handle)
	return mux
}

// listenAddress follows func's convention (LISTEN_ADDRESS) and Knative's ($PORT).
func listenAddress() (host, port string, err error) {
	if addr := os.Getenv("LISTEN_ADDRESS"); addr != "" {
		host, port, err = net.SplitHostPort(addr)
		return strings.Trim(host, "[]"), port, err
	}
	port = os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	return "", port, nil
}

func environ() map[string]string {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	return env
}
