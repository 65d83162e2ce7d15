package main

import (
	"net/http"
	"strconv"
	"time"
)

// limits bound what a client can make the server hold. Anything in the cluster can reach
// the function, with or without a token, so none of these may depend on the client being
// Alertmanager. They are fixed (README, "Hostile connections"), not settings: they only
// apply to this runtime, and no deployment has needed others. maxConcurrent is the
// function's own ROLLBACK_MAX_CONCURRENT.
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
const errBusy = `{"error":"too many notifications at once (ROLLBACK_MAX_CONCURRENT): send again"}` + "\n"

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
