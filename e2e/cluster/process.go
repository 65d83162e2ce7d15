package cluster

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// stopTimeout bounds how long a server may take to shut down after SIGTERM
// before it is killed.
const stopTimeout = 10 * time.Second

// process is one server of the control plane, with its output in <dir>/<name>.log.
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	err     error         // cmd.Wait's result, set before done is closed
}

// startProcess runs the tool name with args, writing its stdout and stderr to a
// log file in dir. The log file is opened for appending so a retry after a bind
// failure keeps the first attempt's output too. A non-empty wrap is the command
// line that runs the tool (nsenter into the node's namespaces).
func startProcess(dir string, wrap []string, name string, args ...string) (*process, error) {
	path, err := ToolPath(name)
	if err != nil {
		return nil, err
	}
	return startPath(dir, wrap, nil, name, path, args...)
}

// startProcessEnv is startProcess with env added to the environment.
func startProcessEnv(dir string, wrap, env []string, name string, args ...string) (*process, error) {
	path, err := ToolPath(name)
	if err != nil {
		return nil, err
	}
	return startPath(dir, wrap, env, name, path, args...)
}

// startPath is startProcess for the program at path.
func startPath(dir string, wrap, env []string, name, path string, args ...string) (*process, error) {
	p := &process{name: name, logPath: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	log, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "==> %s %s\n", path, strings.Join(args, " "))
	argv := append(append(append([]string{}, wrap...), path), args...)
	p.cmd = exec.Command(argv[0], argv[1:]...)
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stdout = log
	p.cmd.Stderr = log
	p.cmd.SysProcAttr = sysProcAttr()
	if err := p.cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		log.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitReady polls ready until it returns nil, the process exits or timeout
// passes. Its errors carry the end of the log, which is where a server says why
// it did not come up.
func (p *process) waitReady(ctx context.Context, timeout time.Duration, ready func(context.Context) error) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if p.exited() {
			return false, fmt.Errorf("%s exited: %v", p.name, p.err)
		}
		// A check must not hang: the port may be held by someone else's
		// listener that accepts but never answers.
		checkCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		last = ready(checkCtx)
		return last == nil, nil
	})
	if err == nil {
		return nil
	}
	if !p.exited() && last != nil {
		err = fmt.Errorf("%s not ready after %s: %w", p.name, timeout, last)
	}
	return fmt.Errorf("%w\n--- last lines of %s ---\n%s", err, p.logPath, p.tail(30))
}

// stop asks the process to shut down with SIGTERM and kills it if it has not
// exited within stopTimeout. It is safe to call on a process that has exited.
func (p *process) stop() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// tail returns the last n lines of the process's log.
func (p *process) tail(n int) string {
	f, err := os.Open(p.logPath)
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

// startServer starts a server that listens on ports taken by args from FreePort,
// and waits until ready. If the server loses the race for a port it is started
// once more, with new ports.
func startServer(ctx context.Context, dir string, wrap []string, name string, timeout time.Duration, args func() ([]string, error), ready func(context.Context) error) (*process, error) {
	for attempt := 1; ; attempt++ {
		a, err := args()
		if err != nil {
			return nil, err
		}
		p, err := startProcess(dir, wrap, name, a...)
		if err != nil {
			return nil, err
		}
		err = p.waitReady(ctx, timeout, ready)
		if err == nil {
			return p, nil
		}
		p.stop()
		if attempt == 2 || !bindFailed(p.tail(30)) {
			return nil, err
		}
	}
}
