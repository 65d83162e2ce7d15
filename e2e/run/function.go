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
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
	"github.com/sre-kit/alert-rollback/report"
)

// Function is a running cmd/rollback process.
type Function struct {
	URL     string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
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
}

// StartFunction starts the built function on a free loopback port and waits until it is
// ready.
func StartFunction(ctx context.Context, o FunctionOptions) (*Function, error) {
	bin, err := cluster.ToolPath("rollback")
	if err != nil {
		return nil, err
	}
	if o.Name == "" {
		o.Name = "rollback"
	}
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ { // a free port can be taken before we bind it
		port, err := cluster.FreePort()
		if err != nil {
			return nil, err
		}
		f, err := startFunction(ctx, bin, port, o)
		if err == nil {
			return f, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func startFunction(ctx context.Context, bin string, port int, o FunctionOptions) (*Function, error) {
	f := &Function{
		URL:     fmt.Sprintf("http://127.0.0.1:%d/", port),
		LogPath: filepath.Join(o.Dir, o.Name+".log"),
		done:    make(chan struct{}),
	}
	log, err := os.OpenFile(f.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	args := append(append([]string{}, o.Wrap...), bin)
	f.cmd = exec.Command(args[0], args[1:]...)
	f.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(),
		"LISTEN_ADDRESS=127.0.0.1:" + strconv.Itoa(port)}
	for k, v := range o.Env {
		f.cmd.Env = append(f.cmd.Env, k+"="+v)
	}
	f.cmd.Stdout, f.cmd.Stderr = log, log
	f.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := f.cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	go func() { _ = f.cmd.Wait(); log.Close(); close(f.done) }()

	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		select {
		case <-f.done:
			return false, fmt.Errorf("the function exited: %s", tail(f.LogPath))
		default:
		}
		resp, err := http.Get(f.URL + "health/readiness")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		f.Stop()
		return nil, fmt.Errorf("function not ready: %w", err)
	}
	return f, nil
}

// Stop sends SIGTERM, as Knative does on scale-down, and waits for the process to exit.
func (f *Function) Stop() {
	if f == nil || f.cmd.Process == nil {
		return
	}
	_ = f.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-f.done:
	case <-time.After(30 * time.Second):
		_ = f.cmd.Process.Kill()
		<-f.done
	}
}

// Post sends a notification body as Alertmanager does, with the bearer token.
func (f *Function) Post(ctx context.Context, body []byte, token string) (int, report.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.URL, bytes.NewReader(body))
	if err != nil {
		return 0, report.Response{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, report.Response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, report.Response{}, err
	}
	var r report.Response
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

func tail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}
