// Package run starts the real programs the end-to-end tests and the demo drive: the
// function's own binary (cmd/rollback, built by `make tools`) and a real Alertmanager
// configured from the repository's deploy/alertmanager file. Everything listens on
// 127.0.0.1 and is stopped by Stop.
package run

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
	"github.com/sre-kit/alert-rollback/internal/outcome"
)

// Function is a running cmd/rollback process.
type Function struct {
	URL string
	*cluster.Process
}

// FunctionOptions configure StartFunction.
type FunctionOptions struct {
	// Dir receives the log file.
	Dir string
	// Env is added to a minimal environment (PATH, HOME), so the caller's own KUBECONFIG
	// or settings never leak in by accident.
	Env map[string]string
	// Wrap, when set, is the command line that runs the binary (its path is appended), as
	// for `unshare` in the in-pod test.
	Wrap []string
	// Name tells several function processes' logs apart.
	Name string
	// Args are the binary's flags (cmd/rollback's, for tests; none is a setting).
	Args []string
}

// StartFunction starts the built function on a free loopback port and waits until it is
// ready.
func StartFunction(ctx context.Context, o FunctionOptions) (*Function, error) {
	f := &Function{}
	var err error
	f.Process, err = cluster.StartServer(ctx, readyTimeout, func() (cluster.ProcessSpec, error) {
		var spec cluster.ProcessSpec
		var err error
		spec, f.URL, err = FunctionSpec(o)
		return spec, err
	}, func(ctx context.Context) error { return cluster.HTTPReady(f.URL + "health/readiness")(ctx) })
	if err != nil {
		return nil, err
	}
	return f, nil
}

// FunctionSpec is how StartFunction runs the built function, on a free loopback port, and
// the URL it will serve at: for callers that time the start themselves.
func FunctionSpec(o FunctionOptions) (cluster.ProcessSpec, string, error) {
	bin, err := cluster.ToolPath("rollback")
	if err != nil {
		return cluster.ProcessSpec{}, "", err
	}
	if o.Name == "" {
		o.Name = "rollback"
	}
	port, err := cluster.FreePort()
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(), "LISTEN_ADDRESS=127.0.0.1:" + strconv.Itoa(port)}
	for k, v := range o.Env {
		env = append(env, k+"="+v)
	}
	return cluster.ProcessSpec{
		Name: o.Name, Args: append(append(append([]string{}, o.Wrap...), bin), o.Args...), Env: env,
		LogPath: filepath.Join(o.Dir, o.Name+".log"),
		// It drains notifications in flight for up to 25 s after SIGTERM.
		StopTimeout: 30 * time.Second,
	}, fmt.Sprintf("http://127.0.0.1:%d/", port), err
}

// readyTimeout bounds the wait for a started program to become ready.
const readyTimeout = 30 * time.Second

// Stop sends SIGTERM, as Knative does on scale-down, and waits for the process to exit.
func (f *Function) Stop() {
	if f != nil {
		f.Process.Stop()
	}
}

// Post sends a notification body as Alertmanager does, with the bearer token.
func (f *Function) Post(ctx context.Context, body []byte, token string) (int, outcome.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.URL, bytes.NewReader(body))
	if err != nil {
		return 0, outcome.Response{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, outcome.Response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, outcome.Response{}, err
	}
	var r outcome.Response
	if resp.StatusCode < 300 || resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusUnprocessableEntity {
		if err := json.Unmarshal(b, &r); err != nil {
			return resp.StatusCode, r, fmt.Errorf("answer %s: %w", b, err)
		}
	}
	return resp.StatusCode, r, nil
}

// Log returns the function's log so far.
func (f *Function) Log() string {
	b, _ := os.ReadFile(f.LogPath)
	return string(b)
}
