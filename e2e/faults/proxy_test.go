package faults

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// TestProxy checks each kind of fault on a stand-in apiserver, through client-go as the
// function uses it: what the client sees, and whether the request reached the server.
func TestProxy(t *testing.T) {
	var patches atomic.Int32
	upstream := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPatch {
			patches.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"web","namespace":"shop"}}`))
	}))
	upstream.EnableHTTP2 = true
	upstream.StartTLS()
	defer upstream.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "upstream.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: upstream.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		arm  func(p *Proxy) error
		// wantErr checks the client's error; nil means it must succeed.
		wantErr func(error) bool
		// landed is whether the PATCH reached the server.
		landed bool
		// atLeast is a lower bound on the call's duration.
		atLeast time.Duration
	}{
		{name: "healthy", arm: func(*Proxy) error { return nil }, landed: true},
		{
			name:    "409",
			arm:     func(p *Proxy) error { p.Add(&Rule{Match: patchDeployment, Status: 409}); return nil },
			wantErr: apierrors.IsConflict,
		},
		{
			name:    "500",
			arm:     func(p *Proxy) error { p.Add(&Rule{Match: patchDeployment, Status: 500}); return nil },
			wantErr: apierrors.IsInternalError,
		},
		{
			name:    "403",
			arm:     func(p *Proxy) error { p.Add(&Rule{Match: patchDeployment, Status: 403}); return nil },
			wantErr: apierrors.IsForbidden,
		},
		{
			name: "429 with Retry-After: client-go sends it again",
			arm: func(p *Proxy) error {
				p.Add(&Rule{Match: patchDeployment, Status: 429, RetryAfter: 1, Times: 1})
				return nil
			},
			landed: true, atLeast: time.Second,
		},
		{
			name:    "forwarded, answered 500",
			arm:     func(p *Proxy) error { p.Add(&Rule{Match: patchDeployment, Status: 500, Forward: true}); return nil },
			wantErr: apierrors.IsInternalError, landed: true,
		},
		{
			name:    "lost answer",
			arm:     func(p *Proxy) error { p.Add(&Rule{Match: patchDeployment, LoseAnswer: true}); return nil },
			wantErr: notAPIStatus, landed: true,
		},
		{
			name:    "dropped",
			arm:     func(p *Proxy) error { p.Add(&Rule{Match: patchDeployment, Drop: true}); return nil },
			wantErr: notAPIStatus,
		},
		{
			name:    "connection reset",
			arm:     func(p *Proxy) error { return p.Toxic("reset_peer", "downstream", map[string]any{"timeout": 0}) },
			wantErr: notAPIStatus,
		},
		{
			name:    "latency",
			arm:     func(p *Proxy) error { return p.Toxic("latency", "downstream", map[string]any{"latency": 300}) },
			landed:  true,
			atLeast: 300 * time.Millisecond,
		},
		{
			name:   "a rule for GETs leaves the PATCH alone",
			arm:    func(p *Proxy) error { p.Add(&Rule{Match: anyGet, Status: 500}); return nil },
			landed: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Start(upstream.URL, ca, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if err := tc.arm(p); err != nil {
				t.Fatal(err)
			}
			cs, err := kubernetes.NewForConfig(&rest.Config{Host: p.URL, TLSClientConfig: rest.TLSClientConfig{CAFile: p.CAFile}, Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			before := patches.Load()
			began := time.Now()
			_, err = cs.AppsV1().Deployments("shop").Patch(context.Background(), "web", types.JSONPatchType, []byte(`[]`), metav1.PatchOptions{})
			took := time.Since(began)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Errorf("Patch = %v; want success", err)
			case tc.wantErr != nil && (err == nil || !tc.wantErr(err)):
				t.Errorf("Patch = %v; want the fault's error", err)
			}
			if landed := patches.Load() > before; landed != tc.landed {
				t.Errorf("the PATCH reached the server: %v; want %v", landed, tc.landed)
			}
			if took < tc.atLeast {
				t.Errorf("Patch took %s; want at least %s", took, tc.atLeast)
			}
			if err := p.Clear(); err != nil {
				t.Fatal(err)
			}
			if _, err := cs.AppsV1().Deployments("shop").Get(context.Background(), "web", metav1.GetOptions{}); err != nil {
				t.Errorf("after Clear, Get = %v; want the path healthy again", err)
			}
		})
	}
}

// notAPIStatus: the client got no answer from the server, only a transport error.
func notAPIStatus(err error) bool {
	var status apierrors.APIStatus
	return err != nil && !errors.As(err, &status)
}

// TestProxyLoopbackOnly: the proxy refuses to front anything but a loopback apiserver, before
// it dials anything.
func TestProxyLoopbackOnly(t *testing.T) {
	for _, apiserver := range []string{"https://10.0.0.1:6443", "https://example.invalid:6443", "https://192.168.1.1"} {
		if p, err := Start(apiserver, "unused", t.TempDir()); err == nil {
			p.Close()
			t.Errorf("Start(%q) = nil error; want a refusal", apiserver)
		}
	}
}
