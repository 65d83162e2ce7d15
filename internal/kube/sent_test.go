package kube

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

// answer is what the test server does with one attempt: a Status of code (with Retry-After
// when retryAfter >= 0), the object (code 200), or, with hang, nothing until the client
// gives up; cut aborts the connection once the request is read.
type answer struct {
	code       int
	retryAfter int
	hang, cut  bool
}

var deployments = schema.GroupResource{Group: "apps", Resource: "deployments"}

func status(code int) answer { return answer{code: code, retryAfter: -1} }

func retryAfter(code, seconds int) answer { return answer{code: code, retryAfter: seconds} }

// script serves the answers in turn, the last one for every attempt after, and counts the
// attempts that reached it.
type script struct {
	mu       sync.Mutex
	answers  []answer
	attempts int
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	a := s.answers[min(s.attempts, len(s.answers)-1)]
	s.attempts++
	s.mu.Unlock()
	// Read the request first: the server notices a client going away only after that.
	_, _ = io.Copy(io.Discard, r.Body)
	switch {
	case a.hang:
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
		return
	case a.cut:
		panic(http.ErrAbortHandler)
	case a.code == http.StatusOK:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"shop"}}`))
		return
	}
	st := apierrors.NewGenericServerResponse(a.code, "patch", deployments, "web", "scripted", 0, false).ErrStatus
	st.Kind, st.APIVersion = "Status", "v1"
	if a.retryAfter >= 0 {
		w.Header().Set("Retry-After", strconv.Itoa(a.retryAfter))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.code)
	_ = json.NewEncoder(w).Encode(st)
}

// TestNotApplied: a write through the Client counts as not applied exactly when every
// attempt client-go made of it was refused or never connected, whatever error the call
// ends with: client-go sends a write again after an answer with Retry-After and keeps only
// the last attempt's error, or its rate limiter's once the deadline passes.
func TestNotApplied(t *testing.T) {
	tests := []struct {
		name    string
		answers []answer
		timeout time.Duration
		// throttled: the client's rate limiter has no token left for this call.
		throttled bool
		// refused: nothing listens on the apiserver's port.
		refused bool
		// wantAttempts is how many attempts reached the server (-1: not checked).
		wantAttempts int
		want         bool
	}{
		{name: "429 with Retry-After until the deadline: the rate limiter gives up before the next attempt",
			answers: []answer{retryAfter(429, 1)}, timeout: 1500 * time.Millisecond, wantAttempts: 2, want: true},
		{name: "429 with Retry-After until client-go's retries run out",
			answers: []answer{retryAfter(429, 0)}, timeout: 10 * time.Second, wantAttempts: 11, want: true},
		{name: "429 without Retry-After", answers: []answer{status(429)}, timeout: time.Second, wantAttempts: 1, want: true},
		{name: "throttled by the client: never sent", answers: []answer{status(200)}, timeout: 200 * time.Millisecond,
			throttled: true, wantAttempts: 0, want: true},
		{name: "connection refused", refused: true, timeout: time.Second, wantAttempts: -1, want: true},
		{name: "409", answers: []answer{status(409)}, timeout: time.Second, wantAttempts: 1, want: true},
		{name: "422", answers: []answer{status(422)}, timeout: time.Second, wantAttempts: 1, want: true},
		{name: "403", answers: []answer{status(403)}, timeout: time.Second, wantAttempts: 1, want: true},
		{name: "429 then 409", answers: []answer{retryAfter(429, 0), status(409)}, timeout: time.Second, wantAttempts: 2, want: true},
		{name: "a storage timeout's 500 with Retry-After, then 409: the first may have landed",
			answers: []answer{retryAfter(500, 0), status(409)}, timeout: time.Second, wantAttempts: 2, want: false},
		{name: "a storage timeout's 500 with Retry-After until the deadline",
			answers: []answer{retryAfter(500, 1)}, timeout: 1500 * time.Millisecond, wantAttempts: 2, want: false},
		{name: "504", answers: []answer{status(504)}, timeout: time.Second, wantAttempts: 1, want: false},
		{name: "408", answers: []answer{status(408)}, timeout: time.Second, wantAttempts: 1, want: false},
		{name: "no answer before the deadline", answers: []answer{{hang: true}}, timeout: 200 * time.Millisecond, wantAttempts: 1, want: false},
		{name: "cut off after the request was read", answers: []answer{{cut: true}}, timeout: time.Second, wantAttempts: 1, want: false},
	}
	// Each write goes through the typed client and through the dynamic one (a Knative
	// Service's patch), which share the transport and the rate limiter.
	patch := map[string]func(ctx context.Context, c Client) error{
		"typed": func(ctx context.Context, c Client) error {
			_, err := c.Deployments("shop").Patch(ctx, "web", types.JSONPatchType, []byte(`[]`), metav1.PatchOptions{})
			return err
		},
		"dynamic": func(ctx context.Context, c Client) error {
			_, err := c.Dynamic().Resource(schema.GroupVersionResource{Group: "serving.knative.dev", Version: "v1", Resource: "services"}).
				Namespace("shop").Patch(ctx, "web", types.JSONPatchType, []byte(`[]`), metav1.PatchOptions{})
			return err
		},
	}
	for _, tt := range tests {
		for _, via := range []string{"typed", "dynamic"} {
			t.Run(tt.name+" ("+via+")", func(t *testing.T) {
				s := &script{answers: tt.answers}
				srv := httptest.NewServer(s)
				defer srv.Close()
				host := srv.URL
				if tt.refused {
					l, err := net.Listen("tcp", "127.0.0.1:0")
					if err != nil {
						t.Fatal(err)
					}
					host = "http://" + l.Addr().String()
					l.Close()
				}
				cfg := &rest.Config{Host: host, QPS: 100, Burst: 100}
				if tt.throttled {
					cfg.QPS, cfg.Burst = 0.01, 1
				}
				c, err := New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				if tt.throttled {
					// Spend the one token.
					if _, err := c.Deployments("shop").Get(context.Background(), "web", metav1.GetOptions{}); err != nil {
						t.Fatal(err)
					}
					s.mu.Lock()
					s.attempts = 0
					s.mu.Unlock()
				}
				ctx, cancel := context.WithTimeout(context.Background(), tt.timeout)
				defer cancel()
				ctx, sent := Track(ctx)
				err = patch[via](ctx, c)
				if err == nil {
					t.Fatal("Patch succeeded; want an error")
				}
				s.mu.Lock()
				attempts := s.attempts
				s.mu.Unlock()
				if tt.wantAttempts >= 0 && attempts != tt.wantAttempts {
					t.Errorf("%d attempts reached the server; want %d (error %v)", attempts, tt.wantAttempts, err)
				}
				t.Logf("%d attempts; error: %v", attempts, err)
				if got := sent.NotApplied(err); got != tt.want {
					t.Errorf("NotApplied(%v) = %v; want %v", err, got, tt.want)
				}
			})
		}
	}
}

// TestNotAppliedWithoutAttempts: with a client that reports no attempts (a fake), the
// error alone decides, as for a single attempt.
func TestNotAppliedWithoutAttempts(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"invalid", apierrors.NewInvalid(schema.GroupKind{Group: "apps", Kind: "Deployment"}, "web", nil), true},
		{"conflict", apierrors.NewConflict(deployments, "web", errors.New("changed")), true},
		{"too many requests", apierrors.NewTooManyRequests("slow down", 1), true},
		{"forbidden", apierrors.NewForbidden(deployments, "web", errors.New("no")), true},
		{"storage timeout", apierrors.NewServerTimeout(deployments, "patch", 2), false},
		{"gateway timeout", apierrors.NewTimeoutError("no answer", 0), false},
		{"connection refused", &url.Error{Op: "Patch", URL: "https://127.0.0.1/", Err: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}}, true},
		{"reset", &url.Error{Op: "Patch", URL: "https://127.0.0.1/", Err: &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}}, false},
		{"deadline", &url.Error{Op: "Patch", URL: "https://127.0.0.1/", Err: context.DeadlineExceeded}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, sent := Track(context.Background())
			if got := sent.NotApplied(tt.err); got != tt.want {
				t.Errorf("NotApplied(%v) = %v; want %v", tt.err, got, tt.want)
			}
		})
	}
}
