package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// A kubeconfig the function can build its client from; nothing here reaches an API server:
// every request below is answered before the function would make a call.
const kubeconfig = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u, namespace: shop}}]
current-context: c
`

// TestServe runs the whole HTTP surface once (functions-framework-go registers the function
// globally, so only once per process): our server's limits in front of the framework's
// handler, the health endpoints, the function's own checks, and the shutdown.
func TestServe(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", path)
	t.Setenv("FUNCTION_TARGET", "")
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	debug.SetMemoryLimit(math.MaxInt64)

	env := map[string]string{
		"ROLLBACK_AUTH_TOKEN":              "secret-token",
		"ROLLBACK_MAX_BODY_BYTES":          "1024",
		"ROLLBACK_MEMORY_LIMIT":            "134217728",
		"ROLLBACK_SERVER_MAX_HEADER_BYTES": "8192",
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- serve(ctx, env, fstest.MapFS{}, ln) }()
	url := "http://" + ln.Addr().String()
	client := &http.Client{Timeout: clientPatience}
	waitReady(t, client, url+"/health/readiness", done)

	limit := float64(134217728)
	if got, want := debug.SetMemoryLimit(-1), int64(limit*memLimitShare); got != want {
		t.Errorf("runtime memory limit = %d; want %d (90%% of ROLLBACK_MEMORY_LIMIT)", got, want)
	}

	tests := []struct {
		name       string
		method     string
		path       string
		token      string
		body       string
		header     string
		wantStatus int
	}{
		{"readiness", http.MethodGet, "/health/readiness", "", "", "", http.StatusOK},
		{"liveness", http.MethodGet, "/health/liveness", "", "", "", http.StatusOK},
		{"no token", http.MethodPost, "/", "", `{}`, "", http.StatusUnauthorized},
		{"wrong token", http.MethodPost, "/", "guess", `{}`, "", http.StatusUnauthorized},
		{"body over ROLLBACK_MAX_BODY_BYTES", http.MethodPost, "/", "secret-token", `{"x":"` + strings.Repeat("a", 2048) + `"}`, "", http.StatusRequestEntityTooLarge},
		{"not a notification", http.MethodPost, "/", "secret-token", `{"version":"3"}`, "", http.StatusBadRequest},
		{"header over the limit, no token", http.MethodPost, "/", "", `{}`, strings.Repeat("h", 32<<10), http.StatusRequestHeaderFieldsTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, url+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			if tc.header != "" {
				req.Header.Set("X-Big", tc.header)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("%s %s = %d %s; want %d", tc.method, tc.path, resp.StatusCode, b, tc.wantStatus)
			}
		})
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve() = %v; want a clean shutdown", err)
		}
	case <-time.After(shutdownGrace + 5*time.Second):
		t.Fatal("serve() did not return after shutdown")
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Fatal("still accepting connections after shutdown")
	}
}

func waitReady(t *testing.T, client *http.Client, url string, done <-chan error) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-done:
			return false, fmt.Errorf("serve() ended before it was ready: %v", err)
		default:
		}
		resp, err := client.Get(url)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("%s not ready: %v", url, err)
	}
}
