package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"time"

	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"

	"github.com/sre-kit/alert-rollback/internal/clip"
)

// frameworkHandler returns functions-framework-go's handler for the registered function,
// as an http.Handler for our own server.
//
// functions-framework-go's public API has no way to get its handler or to configure its
// server: Start and StartHostPort build the handler (its request context, logging IDs and
// panic recovery around the function) and pass it straight to http.ListenAndServe, with no
// timeouts and 1 MiB of headers. So that server listens on a loopback port only, where only
// this process (and, in a pod, its sidecars) can reach it, and the handler returned here
// forwards to it. Every client from the network meets our server's limits first; the
// framework's server only ever sees well-formed requests that got through them, at most
// maxConcurrent at a time.
//
// probe is a path only this process's function answers (routes mounts it): the framework is
// taken to be up once a GET of it through the loopback port answers 204, so a port that
// another process took between our choosing it and the framework binding it is never
// mistaken for ours.
func frameworkHandler(ctx context.Context, maxConcurrent int, probe string) (http.Handler, error) {
	addr, err := startFramework(ctx, probe)
	if err != nil {
		return nil, err
	}
	target := &url.URL{Scheme: "http", Host: addr}
	transport := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: maxConcurrent,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host
		},
		Transport: transport,
		// The framework's server is this process: if it cannot answer, a retry (maybe on
		// another replica) can help.
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "{\"error\":%q}\n", clip.String("internal server unreachable: "+err.Error(), clip.Max))
		},
	}, nil
}

// startFramework starts functions-framework-go's server on a free loopback port and
// returns its address once it accepts connections. A port the kernel just handed out can be
// taken by another process before the framework binds it: then it tries once more.
func startFramework(ctx context.Context, probe string) (string, error) {
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		var addr string
		if addr, err = freeLoopbackAddr(); err != nil {
			return "", err
		}
		host, port, _ := net.SplitHostPort(addr)
		served := make(chan error, 1)
		go func() { served <- funcframework.StartHostPort(host, port) }()
		if err = waitServing(ctx, "http://"+addr+probe, served); err == nil {
			return addr, nil
		}
	}
	return "", fmt.Errorf("functions-framework-go server: %w", err)
}

func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(l.Addr().(*net.TCPAddr).Port)), nil
}

// waitServing returns once a GET of url answers 204, or the server has failed. The
// framework binds within a millisecond or two of starting, and every millisecond here is a
// millisecond of a cold start (Knative holds the first notification until readiness): so
// it asks at once and then every half millisecond, not on a coarser tick.
func waitServing(ctx context.Context, url string, served <-chan error) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for {
		select {
		case err := <-served:
			if err == nil {
				err = errors.New("stopped")
			}
			return err
		default:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Microsecond):
		}
	}
}
