// Package funcgo runs the function under func's own runtime, the binary `func deploy`
// builds (tools/func: func's scaffold around the root package, served by knative.dev/func-go
// v0.22.0; `make` builds it into the tools folder as images/bin/f), with the settings of
// the shipped func.yaml, on loopback. No cluster: nothing it is sent needs the API.
package funcgo

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
)

// binary is func's runtime around the function, as the func image carries it.
const binary = "images/bin/f"

const token = "funcgo-test-token"

// podHost stands for the pod's own address, which kubelet and every other pod reach; func's
// runtime gets loopback's 127.0.0.1 as in the pod. Both are on this machine's loopback.
const podHost = "127.0.0.2"

// TestServesOnlyOnceStarted starts func's runtime again and again and sends notifications
// with the token from the first moment its port is open, while the function's Start may
// still be running: each is answered 503 with Retry-After (Alertmanager sends it again)
// or properly (200). Never a 401, which Alertmanager drops for good, and never a
// connection closed without an answer.
func TestServesOnlyOnceStarted(t *testing.T) {
	const (
		starts = 20
		// senders send at once, each again as soon as it has its answer.
		senders = 4
		// patience bounds one start: the first 200 comes within milliseconds.
		patience = 10 * time.Second
	)
	path := requireBinary(t)
	// A notification of an alert func.yaml's ROLLBACK_MATCH does not select: answered
	// without a call to the API, which is not there.
	body := []byte(`{"version":"4","groupKey":"{}:{}","status":"firing","receiver":"alert-rollback","groupLabels":{},"commonLabels":{},"commonAnnotations":{},"externalURL":"http://alertmanager","alerts":[` +
		`{"status":"firing","labels":{"alertname":"Test","severity":"info","namespace":"shop","pod":"web-0"},"annotations":{},"startsAt":"2026-01-01T00:00:00Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"0123456789abcdef"}]}`)
	counts := map[string]int{}
	for i := range starts {
		port := freePort(t)
		// Where Knative's queue-proxy sends notifications: loopback, at the serving port.
		addr := net.JoinHostPort("127.0.0.1", port)
		p := startRuntime(t, path, port, fmt.Sprintf("start-%d", i))
		answers := make(chan string, 1000)
		var wg sync.WaitGroup
		deadline := time.Now().Add(patience)
		started := make(chan struct{})
		var once sync.Once
		for range senders {
			wg.Go(func() {
				for time.Now().Before(deadline) {
					select {
					case <-started:
						return
					default:
					}
					got, sent := post(addr, body)
					if !sent {
						time.Sleep(time.Millisecond) // the port is not open yet
						continue
					}
					answers <- got
					if got == "200" {
						once.Do(func() { close(started) })
					}
				}
			})
		}
		wg.Wait()
		p.Stop()
		close(answers)
		for a := range answers {
			counts[a]++
			if a != "200" && a != "503 Retry-After 1" {
				t.Errorf("start %d: an answer %s; want 200, or 503 with Retry-After while starting", i, a)
			}
		}
		select {
		case <-started:
		default:
			t.Errorf("start %d: no 200 within %s\n--- %s ---\n%s", i, patience, p.LogPath, p.Tail(20))
		}
	}
	t.Logf("%d starts of func's runtime, notifications from the first moment: answers %v", starts, counts)
}

// post sends one notification with the token on a new connection to addr; sent is false
// when nothing listened there yet. got is the answer's status (with its Retry-After if it
// asks for a retry), or what happened instead.
func post(addr string, body []byte) (got string, sent bool) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err.Error(), false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Close = true
	if err := req.Write(c); err != nil {
		return "the connection failed while sending: " + err.Error(), true
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		return "the connection closed without an answer: " + err.Error(), true
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode == http.StatusServiceUnavailable {
		return fmt.Sprintf("503 Retry-After %s", resp.Header.Get("Retry-After")), true
	}
	return strconv.Itoa(resp.StatusCode), true
}

// TestHeaderFloodAtThePodAddress: what a client elsewhere in the cluster reaches at the
// pod's address under func.yaml's settings must hold a flood of unauthenticated
// connections, each sending 1 MB of a header that never ends (func's runtime keeps up to
// 1 MiB of header per connection, for any number of them), within func.yaml's memory limit
// (the process is told it, as the container's cgroup would). Meanwhile kubelet's liveness
// probe is answered there.
func TestHeaderFloodAtThePodAddress(t *testing.T) {
	const (
		clients     = 100
		headerBytes = 1_000_000
		// floodFor bounds the flood: each client opens a new connection when the server
		// closes its last one, until then.
		floodFor = 6 * time.Second
	)
	path := requireBinary(t)
	port := freePort(t)
	p := startRuntime(t, path, port, "flood")
	podAddr := net.JoinHostPort(podHost, port)
	if err := p.WaitReady(context.Background(), 10*time.Second, cluster.HTTPReady("http://"+podAddr+"/health/liveness")); err != nil {
		t.Fatalf("the liveness probe at the pod's address: %v", err)
	}
	before, err := p.RSS()
	if err != nil {
		t.Fatal(err)
	}

	header := []byte("POST / HTTP/1.1\r\nHost: alert-rollback\r\nX-Pad: " + strings.Repeat("a", headerBytes))
	end := time.Now().Add(floodFor)
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := 0
	for range clients {
		wg.Go(func() {
			for time.Now().Before(end) {
				c, err := net.DialTimeout("tcp", podAddr, time.Second)
				if err != nil {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				mu.Lock()
				conns++
				mu.Unlock()
				_ = c.SetDeadline(end)
				_, _ = c.Write(header)
				_, _ = c.Read(make([]byte, 512)) // until the server answers or closes, or the end
				c.Close()
			}
		})
	}
	// The probe, while the flood runs.
	probe := cluster.HTTPReady("http://" + podAddr + "/health/liveness")
	time.Sleep(floodFor / 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	probeErr := probe(ctx)
	cancel()
	wg.Wait()

	peak := procStatus(t, p.Pid(), "VmHWM")
	limit := funcMemoryLimit(t)
	t.Logf("func's runtime with func.yaml's settings: %d connections of 1 MB unfinished header to the pod's address in %s (%d at once): RSS %d MiB before, peak %d MiB (VmHWM); limit %d MiB (func.yaml)",
		conns, floodFor, clients, before>>20, peak>>20, limit>>20)
	if peak >= limit {
		t.Errorf("peak RSS %d MiB; want under func.yaml's memory limit of %d MiB", peak>>20, limit>>20)
	}
	if probeErr != nil {
		t.Errorf("kubelet's liveness probe during the flood: %v", probeErr)
	}
	if p.Exited() {
		t.Errorf("func's runtime exited: %v\n%s", p.Err(), p.Tail(20))
	}
}

// requireBinary returns the path of func's runtime around the function, or stops the test
// if it is not built.
func requireBinary(t *testing.T) string {
	t.Helper()
	cluster.Require(t, binary)
	path, err := cluster.ToolPath(binary)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// startRuntime starts func's runtime with func.yaml's environment, port 8080 moved to port
// on loopback: LISTEN_ADDRESS's host as func.yaml says (func's runtime's own default, all
// addresses, if it does not), and the pod's own address (ROLLBACK_LIVENESS_ADDRESS with no
// host) podHost. It is stopped when the test ends.
func startRuntime(t *testing.T, path, port, name string) *cluster.Process {
	t.Helper()
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	// The function builds its client at Start and calls the API only for alerts it selects.
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: none, user: {token: none}}]
contexts: [{name: none, context: {cluster: none, user: none, namespace: shop}}]
current-context: none
`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"HOME=" + dir, "KUBECONFIG=" + kubeconfig,
		// What Start takes from the container's cgroup in a pod: 90% of its limit.
		"GOMEMLIMIT=" + strconv.FormatInt(funcMemoryLimit(t)/10*9, 10)}
	listen := "[::]:" + port
	for name, value := range funcEnv(t) {
		switch name {
		case "LISTEN_ADDRESS", "ROLLBACK_LIVENESS_ADDRESS":
			host, p, err := net.SplitHostPort(value)
			if err != nil || p != "8080" {
				t.Fatalf("func.yaml: %s=%q; want host:8080 (%v)", name, value, err)
			}
			if host == "" && name == "ROLLBACK_LIVENESS_ADDRESS" {
				host = podHost
			}
			value = net.JoinHostPort(host, port)
			if name == "LISTEN_ADDRESS" {
				listen = value
				continue
			}
		}
		env = append(env, name+"="+value)
	}
	env = append(env, "LISTEN_ADDRESS="+listen)
	p, err := cluster.StartProcess(cluster.ProcessSpec{Name: "func-" + name, Args: []string{path}, Env: env, LogPath: filepath.Join(dir, "f.log")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

// funcYAML is what these tests read of func.yaml.
type funcYAML struct {
	Run struct {
		Envs []struct{ Name, Value string } `json:"envs"`
	} `json:"run"`
	Deploy struct {
		Options struct {
			Resources struct {
				Limits struct {
					Memory string `json:"memory"`
				} `json:"limits"`
			} `json:"resources"`
		} `json:"options"`
	} `json:"deploy"`
}

func readFuncYAML(t *testing.T) funcYAML {
	t.Helper()
	root, err := cluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "func.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var f funcYAML
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("func.yaml: %v", err)
	}
	return f
}

// funcEnv is func.yaml's run.envs, a secret's reference replaced by this test's token.
func funcEnv(t *testing.T) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range readFuncYAML(t).Run.Envs {
		if strings.HasPrefix(strings.TrimSpace(e.Value), "{{ secret:") {
			e.Value = token
		}
		env[e.Name] = e.Value
	}
	return env
}

// funcMemoryLimit is func.yaml's memory limit, in bytes.
func funcMemoryLimit(t *testing.T) int64 {
	t.Helper()
	v := readFuncYAML(t).Deploy.Options.Resources.Limits.Memory
	q, err := resource.ParseQuantity(v)
	if err != nil {
		t.Fatalf("func.yaml: memory limit %q: %v", v, err)
	}
	return q.Value()
}

// freePort returns a port free a moment ago on both of the loopback addresses the tests
// use.
func freePort(t *testing.T) string {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", net.JoinHostPort(podHost, strconv.Itoa(port)))
		l.Close()
		if err == nil {
			l2.Close()
			return strconv.Itoa(port)
		}
	}
	t.Fatal("no port free on both loopback addresses")
	return ""
}

// procStatus is a size field (VmHWM, VmRSS) of /proc/<pid>/status, in bytes.
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb); err != nil {
				t.Fatalf("%s %q: %v", field, v, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
