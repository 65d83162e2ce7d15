package main

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// limits bound what a client can make the server hold. Anything in the cluster can reach
// the function, with or without a token, so none of these may depend on the client being
// Alertmanager. Each is a setting (see the README) with a default that fits kservice.yaml.
type limits struct {
	// maxHeaderBytes caps a request's header block; beyond it the client gets 431. Go's
	// default is 1 MiB, and 100 such unfinished headers took the process past 128 MiB.
	maxHeaderBytes int
	// readHeaderTimeout cuts off a client that trickles its headers (slow-loris).
	readHeaderTimeout time.Duration
	// readTimeout bounds the whole request, body included (at most ROLLBACK_MAX_BODY_BYTES).
	readTimeout time.Duration
	// writeTimeout bounds the answer, counted from the end of the headers: it must leave
	// room for the 20 s the function may spend on a notification.
	writeTimeout time.Duration
	// idleTimeout closes kept-alive connections that send nothing more.
	idleTimeout time.Duration
	// maxConcurrent notifications are handled at once; the next gets 503 and Retry-After
	// at once (Alertmanager retries 5xx), so a burst cannot pile up bodies in memory.
	maxConcurrent int
}

var defaultLimits = limits{
	maxHeaderBytes:    16 << 10,
	readHeaderTimeout: 5 * time.Second,
	readTimeout:       15 * time.Second,
	writeTimeout:      30 * time.Second,
	idleTimeout:       60 * time.Second,
	// kservice.yaml's containerConcurrency: Knative's queue-proxy already queues beyond it,
	// this also holds for clients that reach the pod directly.
	maxConcurrent: 10,
}

// parseLimits reads the ROLLBACK_SERVER_* settings over the defaults.
func parseLimits(env map[string]string) (limits, error) {
	l := defaultLimits
	var errs []error
	intSetting := func(name string, dst *int, min, max int) {
		v := env[name]
		if v == "" {
			return
		}
		n, err := strconv.Atoi(v)
		if err == nil && (n < min || n > max) {
			err = fmt.Errorf("%d is out of range [%d, %d]", n, min, max)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			return
		}
		*dst = n
	}
	durationSetting := func(name string, dst *time.Duration) {
		v := env[name]
		if v == "" {
			return
		}
		d, err := time.ParseDuration(v)
		if err == nil && d <= 0 {
			err = fmt.Errorf("%s must be positive", v)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			return
		}
		*dst = d
	}
	intSetting("ROLLBACK_SERVER_MAX_HEADER_BYTES", &l.maxHeaderBytes, 1<<10, 1<<20)
	intSetting("ROLLBACK_SERVER_MAX_CONCURRENT", &l.maxConcurrent, 1, 1000)
	durationSetting("ROLLBACK_SERVER_READ_HEADER_TIMEOUT", &l.readHeaderTimeout)
	durationSetting("ROLLBACK_SERVER_READ_TIMEOUT", &l.readTimeout)
	durationSetting("ROLLBACK_SERVER_WRITE_TIMEOUT", &l.writeTimeout)
	durationSetting("ROLLBACK_SERVER_IDLE_TIMEOUT", &l.idleTimeout)
	if err := errors.Join(errs...); err != nil {
		return l, fmt.Errorf("invalid configuration: %w", err)
	}
	return l, nil
}

// newServer serves h within l. Only requests admit accepts (those with the right token)
// count toward maxConcurrent: h answers the others at once, before reading a body. The
// health probes are never turned away: Knative must see a busy replica as alive and ready.
func newServer(l limits, admit func(*http.Request) bool, h http.Handler) *http.Server {
	return &http.Server{
		Handler:           bounded(l.maxConcurrent, admit, h),
		MaxHeaderBytes:    l.maxHeaderBytes,
		ReadHeaderTimeout: l.readHeaderTimeout,
		ReadTimeout:       l.readTimeout,
		WriteTimeout:      l.writeTimeout,
		IdleTimeout:       l.idleTimeout,
	}
}

// healthPaths are the probes' paths: only these are answered whatever the load. Any other
// path, /health/-something included, is the function's, and takes a slot.
var healthPaths = map[string]bool{"/health/readiness": true, "/health/liveness": true}

// errBusy is the answer beyond maxConcurrent, in the function's own error format.
const errBusy = `{"error":"too many notifications at once (ROLLBACK_SERVER_MAX_CONCURRENT): send again"}` + "\n"

// bounded lets at most n admitted requests other than health probes into h at once. It
// answers the next ones with 503 before reading their bodies.
func bounded(n int, admit func(*http.Request) bool, h http.Handler) http.Handler {
	slots := make(chan struct{}, n)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if healthPaths[r.URL.Path] || !admit(r) {
			h.ServeHTTP(w, r)
			return
		}
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
			h.ServeHTTP(w, r)
		default:
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Content-Length", strconv.Itoa(len(errBusy)))
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(errBusy))
		}
	})
}
