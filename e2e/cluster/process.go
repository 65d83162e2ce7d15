package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// DefaultStopTimeout bounds how long a server may take to shut down after SIGTERM before
// it is killed.
const DefaultStopTimeout = 10 * time.Second

// Process is one server the tests or the demo started (a control-plane server, the
// function, Alertmanager), with its output in a log file. It is the one process supervisor
// of the e2e module.
type Process struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	stop    context.CancelFunc
	done    chan struct{} // closed when the process has exited
	err     error         // cmd.Wait's result, set before done is closed

	// How it was started, and for a server how to know it is ready: enough to start it
	// again just as it was (same ports, same data), for tests that restart it.
	spec    ProcessSpec
	timeout time.Duration
	ready   func(context.Context) error
}

// ProcessSpec says how to start a Process.
type ProcessSpec struct {
	// Name tells processes apart in errors and logs.
	Name string
	// Args is the whole command line; Args[0] is the program's path.
	Args []string
	// Env is the environment; nil inherits this process's.
	Env []string
	// LogPath receives stdout and stderr, appended, so a retry after a bind failure keeps
	// the first attempt's output too.
	LogPath string
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL (DefaultStopTimeout
	// when zero).
	StopTimeout time.Duration
}

// StartProcess starts spec. Stop, or the death of this process (Pdeathsig on Linux), ends it.
func StartProcess(spec ProcessSpec) (*Process, error) {
	log, err := os.OpenFile(spec.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "==> %s\n", strings.Join(spec.Args, " "))
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, spec.Args[0], spec.Args[1:]...)
	cmd.Env = spec.Env
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = sysProcAttr()
	// Stop cancels ctx: the process gets SIGTERM, as Kubernetes sends it, and exec kills
	// it if it has not exited after WaitDelay.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = spec.StopTimeout
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = DefaultStopTimeout
	}
	if err := cmd.Start(); err != nil {
		cancel()
		log.Close()
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	p := &Process{Name: spec.Name, LogPath: spec.LogPath, cmd: cmd, stop: cancel, done: make(chan struct{}), spec: spec}
	go func() {
		p.err = cmd.Wait()
		log.Close()
		close(p.done)
	}()
	return p, nil
}

// startWrapped starts the program at path with args, logging to <dir>/<name>.log: inside
// the node's namespaces when wrap (nsenter ...) is set, with env added to this process's
// environment when set.
func startWrapped(dir string, wrap, env []string, name, path string, args ...string) (*Process, error) {
	spec := ProcessSpec{Name: name, Args: wrapped(wrap, path, args), LogPath: filepath.Join(dir, name+".log")}
	if env != nil {
		spec.Env = append(os.Environ(), env...)
	}
	return StartProcess(spec)
}

// wrapped is the command line wrap + path + args.
func wrapped(wrap []string, path string, args []string) []string {
	return append(append(append([]string{}, wrap...), path), args...)
}

// startTool starts the tool name (from the tools folder) with args, in the cluster's
// namespaces if it has a node, logging to <Dir>/<name>.log.
func (c *Cluster) startTool(name string, args ...string) (*Process, error) {
	path, err := ToolPath(name)
	if err != nil {
		return nil, err
	}
	return startWrapped(c.Dir, c.wrap, nil, name, path, args...)
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is how the process ended (cmd.Wait's error); nil while it runs.
func (p *Process) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// RSS is the process's resident set size now, in bytes (VmRSS of /proc/<pid>/status).
func (p *Process) RSS() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid()))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb); err != nil {
				return 0, fmt.Errorf("VmRSS %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", p.Pid())
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Pid is the process's ID, for reading what /proc says about it (its memory, its sockets).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// WaitReady polls ready until it returns nil, the process exits or timeout passes. Its
// errors carry the end of the log, which is where a server says why it did not come up.
func (p *Process) WaitReady(ctx context.Context, timeout time.Duration, ready func(context.Context) error) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if p.Exited() {
			return false, fmt.Errorf("%s exited: %v", p.Name, p.err)
		}
		// A check must not hang: the port may be held by someone else's listener that
		// accepts but never answers.
		checkCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		last = ready(checkCtx)
		return last == nil, nil
	})
	if err == nil {
		return nil
	}
	if !p.Exited() && last != nil {
		err = fmt.Errorf("%s not ready after %s: %w", p.Name, timeout, last)
	}
	return fmt.Errorf("%w\n--- last lines of %s ---\n%s", err, p.LogPath, p.Tail(30))
}

// Stop sends SIGTERM and waits for the process to exit, killing it after its stop
// timeout. It is safe to call on a nil Process, or more than once.
func (p *Process) Stop() {
	if p == nil {
		return
	}
	p.stop()
	<-p.done
}

// Tail returns the last n lines of the process's log.
func (p *Process) Tail(n int) string {
	f, err := os.Open(p.LogPath)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	// The end of the file is enough, and a server's log can be large.
	const window = 16 << 10
	if info, err := f.Stat(); err == nil && info.Size() > window {
		_, _ = f.Seek(-window, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// StartServer starts a server that listens on a port chosen by spec (from FreePort), and
// waits until ready. If the server loses the race for its port it is started once more,
// with a new spec.
func StartServer(ctx context.Context, timeout time.Duration, spec func() (ProcessSpec, error), ready func(context.Context) error) (*Process, error) {
	for attempt := 1; ; attempt++ {
		s, err := spec()
		if err != nil {
			return nil, err
		}
		p, err := StartProcess(s)
		if err != nil {
			return nil, err
		}
		err = p.WaitReady(ctx, timeout, ready)
		if err == nil {
			p.timeout, p.ready = timeout, ready
			return p, nil
		}
		p.Stop()
		if attempt == 2 || !bindFailed(p.Tail(30)) {
			return nil, err
		}
	}
}

// startToolServer is StartServer for a tool of the tools folder, in the cluster's
// namespaces if it has a node, logging to <Dir>/<name>.log.
func (c *Cluster) startToolServer(ctx context.Context, name string, timeout time.Duration, args func() ([]string, error), ready func(context.Context) error) (*Process, error) {
	path, err := ToolPath(name)
	if err != nil {
		return nil, err
	}
	return StartServer(ctx, timeout, func() (ProcessSpec, error) {
		a, err := args()
		return ProcessSpec{Name: name, Args: wrapped(c.wrap, path, a), LogPath: filepath.Join(c.Dir, name+".log")}, err
	}, ready)
}

// HTTPReady is a readiness check: a GET of url answers 200.
func HTTPReady(url string) func(context.Context) error {
	return HTTPReadyVia(http.DefaultClient, url)
}

// HTTPReadyVia is HTTPReady asked with client (Cluster.HTTP, for a server in the node's
// network namespace).
func HTTPReadyVia(client *http.Client, url string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

// RepoRoot is the repository's root: the nearest folder above the working directory that
// holds a Makefile and tools/ (go test runs in the package's folder).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if isFile(filepath.Join(dir, "Makefile")) && isDir(filepath.Join(dir, "tools")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no repository root (a folder with Makefile and tools/) above the working directory")
		}
		dir = parent
	}
}

// SharedFile finds rel (such as "knative/service-crd.yaml") in the shared/ folder beside the
// repository (../shared, in CI as on a developer's machine) or in a folder above it. The
// project does not copy these files.
func SharedFile(rel string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	for dir := filepath.Dir(root); ; dir = filepath.Dir(dir) {
		if p := filepath.Join(dir, "shared", filepath.FromSlash(rel)); isFile(p) {
			return p, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("shared/%s not found in any folder above %s (it belongs in the shared/ folder beside the repository)", rel, root)
		}
	}
}

// LogDir makes a temporary folder for a run's logs. finish removes it after a run that
// succeeded and keeps it, saying where, after one that failed, for a person to read.
func LogDir(prefix string) (dir string, finish func(ok bool), err error) {
	dir, err = os.MkdirTemp("", prefix)
	if err != nil {
		return "", nil, err
	}
	return dir, func(ok bool) {
		if ok {
			os.RemoveAll(dir)
			return
		}
		fmt.Fprintf(os.Stderr, "logs of the failed run kept in %s\n", dir)
	}, nil
}
