package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
	"sigs.k8s.io/yaml"

	"github.com/sre-kit/alert-rollback/e2e/fixture"
)

// The hostile load, bounded in count and time; everything targets the function on loopback.
const (
	// slowClients trickle an unfinished header, one line every trickleEvery (slow-loris).
	slowClients  = 300
	trickleEvery = 500 * time.Millisecond
	// bigClients each send 1 MiB of an unfinished header: the case that took the process
	// to 205 MB RSS with functions-framework-go's bare server.
	bigClients     = 200
	bigHeaderBytes = 1 << 20
	// idleClients make one unauthenticated request, keep the connection alive and go quiet.
	idleClients = 100

	// The limits the function runs with here: its defaults for headers, and a short idle
	// timeout so the test need not wait the default minute.
	readHeaderTimeout = 5 * time.Second
	idleTimeout       = 3 * time.Second
	// closeSlack is how much later than its timeout a connection may close: the server
	// checks deadlines as it reads, and the machine is shared.
	closeSlack = 2 * time.Second
	// loadPatience bounds the whole load: every connection is given up after it.
	loadPatience = 30 * time.Second
)

// TestUnauthenticatedLoad holds hundreds of slow, oversized and idle connections without a
// token against the built binary, and shows that its memory stays under kservice.yaml's
// limit, that each connection is closed within the configured timeout, and that a real
// notification meanwhile rolls a real Deployment back.
func TestUnauthenticatedLoad(t *testing.T) {
	limit := manifestMemoryLimit(t)
	e := newEnv(t)
	ctx := context.Background()
	pod := e.brokenDeployment("checkout-api")
	f := e.startFunction("rollback", map[string]string{
		// What Start sets from the container's cgroup in a pod: 90% of its limit.
		"GOMEMLIMIT": strconv.FormatInt(limit*9/10, 10),
	}, "-idle-timeout="+idleTimeout.String())
	u, err := url.Parse(f.URL)
	if err != nil {
		t.Fatal(err)
	}
	addr, pid := u.Host, f.Pid()
	rssBefore := procStatus(t, pid, "VmRSS")

	// Sample RSS while the load runs; VmHWM (the kernel's peak) is the figure asserted on.
	stopSampling := make(chan struct{})
	var peakSampled int64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
				if v, err := readProcStatus(pid, "VmRSS"); err == nil && v > peakSampled {
					peakSampled = v
				}
			}
		}
	}()

	var wg sync.WaitGroup
	results := make(chan closed, slowClients+bigClients+idleClients)
	var held sync.WaitGroup // done once every connection is open and has sent something
	held.Add(slowClients + bigClients + idleClients)
	start := func(kind string, n int, run func(c net.Conn, opened func()) error) {
		for i := 0; i < n; i++ {
			wg.Go(func() { results <- hold(addr, kind, held.Done, run) })
		}
	}
	loadStart := time.Now()
	start("slow", slowClients, slowLoris)
	start("big", bigClients, bigHeader)
	start("idle", idleClients, idleAfterOne)
	held.Wait()
	openAt := time.Now()
	openConns := countConnections(t, pid)

	// A real notification, with the token, while all of that is held open.
	notifyStart := time.Now()
	status, resp, err := f.Post(ctx, notification(seedAlert(e.ns, pod, time.Now())), e.token)
	notifyTook := time.Since(notifyStart)
	if err != nil || status != http.StatusOK {
		t.Fatalf("POST the seed alert under load = %d, %v; want 200", status, err)
	}
	if len(resp.Results) != 1 || resp.Results[0].Action != "rolled-back" {
		t.Fatalf("results under load = %+v; want one rolled-back", resp.Results)
	}

	wg.Wait()
	close(results)
	close(stopSampling)
	<-sampled
	peak := procStatus(t, pid, "VmHWM")
	if err := fixture.WaitDeploymentRevision(ctx, e.cs, e.ns, "checkout-api", 3); err != nil {
		t.Fatalf("the Deployment after the undo under load: %v", err)
	}

	byKind := map[string][]time.Duration{}
	var failures []string
	for r := range results {
		if r.err != nil {
			failures = append(failures, fmt.Sprintf("%s: %v", r.kind, r.err))
			continue
		}
		byKind[r.kind] = append(byKind[r.kind], r.took)
	}
	if len(failures) > 0 {
		t.Errorf("%d connections misbehaved, first: %s", len(failures), failures[0])
	}

	t.Logf("connections: %d slow-header, %d 1 MiB-header, %d idle keep-alive, all without a token; %d sockets open in the function once all had connected (/proc), %s after the first",
		slowClients, bigClients, idleClients, openConns, openAt.Sub(loadStart).Round(time.Millisecond))
	t.Logf("RSS: %d MiB before, peak %d MiB (VmHWM; sampled peak %d MiB); limit %d MiB (kservice.yaml), GOMEMLIMIT 90%% of it",
		rssBefore>>20, peak>>20, peakSampled>>20, limit>>20)
	t.Logf("notification with the token under load: 200, rolled back, in %s", notifyTook.Round(time.Millisecond))
	for _, kind := range []string{"slow", "big", "idle"} {
		d := byKind[kind]
		if len(d) == 0 {
			continue
		}
		slices.Sort(d)
		t.Logf("time to close, %s: min %s, median %s, max %s (%d connections)", kind,
			d[0].Round(time.Millisecond), d[len(d)/2].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond), len(d))
	}

	if peak >= limit {
		t.Errorf("peak RSS %d bytes; want under the container's limit of %d", peak, limit)
	}
	limits := map[string]time.Duration{"slow": readHeaderTimeout, "big": readHeaderTimeout, "idle": idleTimeout}
	for kind, d := range byKind {
		if max := slices.Max(d); max > limits[kind]+closeSlack {
			t.Errorf("a %s connection was closed after %s; want within %s (+%s)", kind, max, limits[kind], closeSlack)
		}
	}
}

// closed is what happened to one hostile connection: how long after its timeout started it
// was closed by the server, or what went wrong.
type closed struct {
	kind string
	took time.Duration
	err  error
}

// hold opens a connection, lets run play the client (run calls opened once it has sent
// something), and measures from that moment until the server closes the connection.
func hold(addr, kind string, held func(), run func(net.Conn, func()) error) closed {
	c, err := net.DialTimeout("tcp", addr, loadPatience)
	if err != nil {
		held()
		return closed{kind: kind, err: err}
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(loadPatience))
	var from time.Time
	once := sync.Once{}
	opened := func() { once.Do(func() { from = time.Now(); held() }) }
	err = run(c, opened)
	once.Do(func() { held() })
	if err != nil {
		return closed{kind: kind, err: err}
	}
	return closed{kind: kind, took: time.Since(from)}
}

// slowLoris sends the start of a request and then one header line at a time, never
// finishing, until the server closes the connection.
func slowLoris(c net.Conn, opened func()) error {
	if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: alert-rollback\r\nContent-Type: application/json\r\n"); err != nil {
		return err
	}
	opened()
	tick := time.NewTicker(trickleEvery)
	defer tick.Stop()
	gone := make(chan error, 1)
	go func() { gone <- readUntilClosed(c) }()
	for i := 0; ; i++ {
		select {
		case err := <-gone:
			return err
		case <-tick.C:
			// A write may fail once the server has closed: the read reports that.
			_, _ = fmt.Fprintf(c, "X-Slow-%d: %d\r\n", i, i)
		}
	}
}

// bigHeader sends bigHeaderBytes of one header without ever ending the header block. The
// server must answer 431 and close, having read only up to its limit.
func bigHeader(c net.Conn, opened func()) error {
	if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: alert-rollback\r\nX-Big: "); err != nil {
		return err
	}
	opened()
	go func() {
		chunk := bytes.Repeat([]byte("a"), 32<<10)
		for sent := 0; sent < bigHeaderBytes; sent += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				return // closed by the server, as it should be
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return fmt.Errorf("no answer to a 1 MiB header: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		return fmt.Errorf("a 1 MiB header got %s; want 431", resp.Status)
	}
	return readUntilClosed(c)
}

// idleAfterOne makes one request without a token (401), keeps the connection and sends
// nothing more; the idle timer starts with the answer.
func idleAfterOne(c net.Conn, opened func()) error {
	if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: alert-rollback\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"); err != nil {
		return err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		return fmt.Errorf("a request without a token got %s; want 401", resp.Status)
	}
	if resp.Close {
		return errors.New("the server closed the connection after the answer; the idle case needs it kept alive")
	}
	opened()
	if _, err := br.ReadByte(); err == nil {
		return errors.New("the server sent bytes on an idle connection")
	} else if isTimeout(err) {
		return fmt.Errorf("idle connection still open after %s", loadPatience)
	}
	return nil
}

// readUntilClosed reads until the server closes the connection; a reset counts as closed.
func readUntilClosed(c net.Conn) error {
	_, err := io.Copy(io.Discard, c)
	if isTimeout(err) {
		return fmt.Errorf("still open after %s", loadPatience)
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// countConnections counts the process's open sockets (its listener and connections to
// the API server included).
func countConnections(t *testing.T, pid int) int {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name())); err == nil && strings.HasPrefix(target, "socket:") {
			n++
		}
	}
	return n
}

// procStatus reads a memory figure of /proc/PID/status, in bytes.
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	v, err := readProcStatus(pid, field)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func readProcStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || name != field {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		return kb << 10, err
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// manifestMemoryLimit is the memory limit kservice.yaml gives the function's container.
func manifestMemoryLimit(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile(repoFile("kservice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(b), "\n---") {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil || meta.Kind != "Service" {
			continue
		}
		var svc servingv1.Service
		if err := yaml.Unmarshal([]byte(doc), &svc); err != nil {
			t.Fatalf("kservice.yaml: %v", err)
		}
		for _, c := range svc.Spec.Template.Spec.Containers {
			if m, ok := c.Resources.Limits["memory"]; ok {
				return m.Value()
			}
		}
	}
	t.Fatal("kservice.yaml: no memory limit on the Knative Service's container")
	return 0
}
