package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/util/wait"
)

// kubeconfigFor is a kubeconfig for the API server at url, in namespace shop.
func kubeconfigFor(url string) string {
	return `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "` + url + `"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u, namespace: shop}}]
current-context: c
`
}

// slowAPI stands in for the API server: it holds every call until release is closed, then
// answers 404, so a notification can be caught in flight.
type slowAPI struct {
	called  chan struct{} // closed at the first call
	once    sync.Once
	release chan struct{}
}

func (a *slowAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.once.Do(func() { close(a.called) })
	<-a.release
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotFound)
	fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`)
}

// maxAnswer bounds every answer of TestServe: a refusal quotes at most clip.Max bytes of
// what it was sent.
const maxAnswer = 2 << 10

// TestServe runs the whole HTTP surface once (functions-framework-go registers the function
// globally, so only once per process): our server's limits in front of the framework's
// handler, the health endpoints, the function's own checks, and the shutdown.
func TestServe(t *testing.T) {
	api := &slowAPI{called: make(chan struct{}), release: make(chan struct{})}
	apiServer := httptest.NewServer(api)
	defer apiServer.Close()
	defer func() {
		select {
		case <-api.release:
		default:
			close(api.release)
		}
	}()
	dir := t.TempDir()
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, []byte(kubeconfigFor(apiServer.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", path)
	t.Setenv("FUNCTION_TARGET", "")

	env := map[string]string{
		"ROLLBACK_AUTH_TOKEN":     "secret-token",
		"ROLLBACK_MAX_BODY_BYTES": "1024",
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- serve(ctx, env, defaultLimits, ln) }()
	url := "http://" + ln.Addr().String()
	client := &http.Client{Timeout: clientPatience}
	waitReady(t, client, url+"/health/readiness", done)

	tests := []struct {
		name   string
		method string
		path   string
		token  string
		body   string
		header string
		// contentType replaces application/json.
		contentType string
		wantStatus  int
	}{
		{"readiness", http.MethodGet, "/health/readiness", "", "", "", "", http.StatusOK},
		{"liveness", http.MethodGet, "/health/liveness", "", "", "", "", http.StatusOK},
		{"no token", http.MethodPost, "/", "", `{}`, "", "", http.StatusUnauthorized},
		{"wrong token", http.MethodPost, "/", "guess", `{}`, "", "", http.StatusUnauthorized},
		{"body over ROLLBACK_MAX_BODY_BYTES", http.MethodPost, "/", "secret-token", `{"x":"` + strings.Repeat("a", 2048) + `"}`, "", "", http.StatusRequestEntityTooLarge},
		{"not a notification", http.MethodPost, "/", "secret-token", `{"version":"3"}`, "", "", http.StatusBadRequest},
		{"header over the limit, no token", http.MethodPost, "/", "", `{}`, strings.Repeat("h", 32<<10), "", http.StatusRequestHeaderFieldsTooLarge},
		// Refusals that quote the caller's text: their answers are clipped.
		{"huge content type", http.MethodPost, "/", "secret-token", `{}`, "", strings.Repeat("\xff", 6<<10), http.StatusUnsupportedMediaType},
		{"huge version", http.MethodPost, "/", "secret-token", `{"version":"` + strings.Repeat("\xff", 900) + `"}`, "", "", http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, url+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			if tc.contentType != "" {
				req.Header["Content-Type"] = []string{tc.contentType}
			}
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
				t.Fatalf("%s %s = %d %.300q; want %d", tc.method, tc.path, resp.StatusCode, b, tc.wantStatus)
			}
			// Every answer stays small and valid UTF-8, whatever the request quoted.
			if len(b) > maxAnswer || !utf8.Valid(b) {
				t.Errorf("answer of %d bytes (valid UTF-8 %v); want at most %d valid: %.300q…", len(b), utf8.Valid(b), maxAnswer, b)
			}
		})
	}

	// Shutdown with a notification in flight (held at its first API call): no new
	// connections, the one in flight gets its answer, then serve returns.
	inFlight := make(chan int, 1)
	go func() {
		body := `{"version":"4","alerts":[{"status":"firing","startsAt":"` + time.Now().UTC().Format(time.RFC3339) +
			`","labels":{"alertname":"KubePodUnschedulable","severity":"rollback","namespace":"shop","pod":"checkout-api-6b38f6dcb-x7k2p"}}]}`
		req, _ := http.NewRequest(http.MethodPost, url+"/", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer secret-token")
		resp, err := (&http.Client{Timeout: shutdownGrace}).Do(req)
		if err != nil {
			inFlight <- 0
			return
		}
		resp.Body.Close()
		inFlight <- resp.StatusCode
	}()
	select {
	case <-api.called:
	case <-time.After(clientPatience):
		t.Fatal("the notification never reached the API server")
	}
	cancel()
	err = wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, clientPatience, true, func(context.Context) (bool, error) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			c.Close()
		}
		return err != nil, nil
	})
	if err != nil {
		t.Fatal("still accepting connections after shutdown began")
	}
	select {
	case err := <-done:
		t.Fatalf("serve() = %v with a notification in flight; want it to wait", err)
	default:
	}
	close(api.release)
	if status := <-inFlight; status != http.StatusOK {
		t.Errorf("the notification in flight during shutdown got %d; want its 200", status)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve() = %v; want a clean shutdown", err)
		}
	case <-time.After(shutdownGrace + 5*time.Second):
		t.Fatal("serve() did not return after shutdown")
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

// The framework counts as up only when our probe path answers 204: a server that another
// process started on the port (answering anything else) is never taken for it, and a bind
// that failed is reported.
func TestWaitServing(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		served  error
		wantErr bool
	}{
		{name: "ours", handler: func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }},
		{name: "a stranger on the port", handler: func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "OK") }, wantErr: true},
		{name: "bind failed", handler: func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNotFound) },
			served: errors.New("listen tcp: address already in use"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			served := make(chan error, 1)
			if tt.served != nil {
				served <- tt.served
			}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			err := waitServing(ctx, srv.URL+"/.alert-rollback/x", served)
			if (err != nil) != tt.wantErr {
				t.Fatalf("waitServing: %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

// TestServeRefusesSettings: cmd/rollback reads its settings through the function's one
// parse, so a wrong or removed one stops it before it serves, named in the error.
func TestServeRefusesSettings(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"bound of zero", map[string]string{"ROLLBACK_MAX_CONCURRENT": "0"}, "ROLLBACK_MAX_CONCURRENT: "},
		{"old name of the bound", map[string]string{"ROLLBACK_SERVER_MAX_CONCURRENT": "20"}, "ROLLBACK_SERVER_MAX_CONCURRENT: no longer read: renamed ROLLBACK_MAX_CONCURRENT"},
		{"removed server timeout", map[string]string{"ROLLBACK_SERVER_IDLE_TIMEOUT": "4s"}, "ROLLBACK_SERVER_IDLE_TIMEOUT: no longer read: removed: fixed at 60s"},
		{"removed memory limit", map[string]string{"ROLLBACK_MEMORY_LIMIT": "134217728"}, "GOMEMLIMIT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			env := map[string]string{"ROLLBACK_AUTH_TOKEN": "t"}
			maps.Copy(env, tc.env)
			if err := serve(t.Context(), env, defaultLimits, ln); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("serve(%v) = %v; want an error containing %q", tc.env, err, tc.want)
			}
		})
	}
}
