// Command app is the workload the end-to-end tests deploy and roll back: it answers 200 on
// :8080 until SIGTERM. Run by Knative, its answers carry the header App-Revision, the
// revision Knative says the pod runs (K_REVISION), so a test can tell what serves. With -crash it exits at once with status 1, the broken release
// whose pods end in CrashLoopBackOff.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	crash := flag.Bool("crash", false, "exit with status 1 at once, like a release that cannot start")
	flag.Parse()
	if *crash {
		fmt.Fprintln(os.Stderr, "app: configured to crash")
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	revision := os.Getenv("K_REVISION")
	srv := &http.Server{Addr: ":8080", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if revision != "" {
			w.Header().Set("App-Revision", revision)
		}
		fmt.Fprintln(w, "ok")
	})}
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown(context.Background())
	}()
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "app:", err)
		os.Exit(1)
	}
}
