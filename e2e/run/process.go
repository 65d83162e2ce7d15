package run

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
)

// process is a server started by this package, with its output in a log file.
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed when it has exited
}

// startProcess runs args with env, appending its output to logPath, and returns when it
// answers 200 at readyURL (asked with client, or http.DefaultClient if nil), or fails with
// the end of its log.
func startProcess(ctx context.Context, name string, args, env []string, logPath, readyURL string, client *http.Client) (*process, error) {
	if client == nil {
		client = http.DefaultClient
	}
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	p := &process{name: name, logPath: logPath, cmd: exec.Command(args[0], args[1:]...), done: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = log, log
	// Nothing outlives the test or demo that started it, even if it is killed.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	go func() { _ = p.cmd.Wait(); log.Close(); close(p.done) }()

	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		select {
		case <-p.done:
			return false, fmt.Errorf("%s exited: %s", name, tail(logPath))
		default:
		}
		resp, err := client.Get(readyURL)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("%s not ready: %w", name, err)
	}
	return p, nil
}

// stop sends SIGTERM, as Kubernetes does, and waits for the process to exit.
func (p *process) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// withFreePort calls start with a free loopback port, and once more with another if the
// first was taken before the server could bind it.
func withFreePort(start func(port int) error) error {
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		var port int
		if port, err = freePort(); err != nil {
			return err
		}
		if err = start(port); err == nil {
			return nil
		}
	}
	return err
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

var freePort = cluster.FreePort
