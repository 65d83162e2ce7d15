package kube

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

// A refusal that goes away within a second (an API server whose RBAC caches are filling)
// is not an answer; one that stands is, and a write refused is sent again whole.
func TestRetryAuthz(t *testing.T) {
	tests := []struct {
		name      string
		refusals  int32 // answers 403 (or 401) before allowing
		status    int
		timeout   time.Duration
		wantErr   func(error) bool
		wantCalls int32
	}{
		{name: "allowed at once", refusals: 0, status: 403, wantCalls: 1},
		{name: "403 while RBAC caches fill", refusals: 2, status: 403, wantCalls: 3},
		// client-go's token layer renews a rotated token on a 401 it sees: not hidden here.
		{name: "401 is not asked again", refusals: 1, status: 401, wantErr: apierrors.IsUnauthorized, wantCalls: 1},
		{name: "403 that stands", refusals: 100, status: 403, wantErr: apierrors.IsForbidden, wantCalls: 4},
		// A refusal must stay a refusal (final), never become a timeout (retried).
		{name: "the deadline leaves no room to ask again", refusals: 100, status: 403, timeout: 150 * time.Millisecond,
			wantErr: apierrors.IsForbidden, wantCalls: 1},
		{name: "the deadline ends the asking", refusals: 100, status: 403, timeout: 700 * time.Millisecond,
			wantErr: apierrors.IsForbidden, wantCalls: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := calls.Add(1)
				body, _ := io.ReadAll(r.Body)
				if string(body) != `{"spec":{"paused":false}}` {
					t.Errorf("attempt %d sent body %q", n, body)
				}
				if n <= tt.refusals {
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(tt.status)
					io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"`+
						map[int]string{401: "Unauthorized", 403: "Forbidden"}[tt.status]+`","code":`+map[int]string{401: "401", 403: "403"}[tt.status]+`}`)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"web","namespace":"shop"}}`)
			}))
			defer srv.Close()
			cfg := &rest.Config{Host: srv.URL}
			cfg.Wrap(RetryAuthz)
			c, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			_, err = c.Deployments("shop").Patch(ctx, "web", types.MergePatchType, []byte(`{"spec":{"paused":false}}`), metav1.PatchOptions{})
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("Patch: %v", err)
			case tt.wantErr != nil && !tt.wantErr(err):
				t.Fatalf("Patch: %v; want another error", err)
			}
			if got := calls.Load(); got != tt.wantCalls {
				t.Errorf("%d requests; want %d", got, tt.wantCalls)
			}
		})
	}
}
