package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Each test below sets only the limit it checks (the others are zero: unlimited), so it
// fails if that limit is missing from newServer.

// clientPatience is how long a test waits for the server to act before calling the limit
// missing; every limit under test is far shorter.
const clientPatience = 5 * time.Second

func startServer(t *testing.T, l limits, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(l, withToken, h)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

var ok = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	fmt.Fprintln(w, "OK")
})

// withToken admits requests that carry the test's token, as the function's Authorized does.
func withToken(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer t" }

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedWithin reads from c until the server closes it, and fails the test if it does
// not within patience. It returns how long that took.
func closedWithin(t *testing.T, c net.Conn, patience time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(patience))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %s; want it closed by the server", patience)
	}
	return time.Since(start)
}

// trickle writes one short header line at a time until the connection fails, as a
// slow-loris client does.
func trickle(c net.Conn, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for i := 0; ; i++ {
		if _, err := fmt.Fprintf(c, "X-Slow-%d: y\r\n", i); err != nil {
			return
		}
		<-tick.C
	}
}

func TestMaxHeaderBytes(t *testing.T) {
	addr := startServer(t, limits{maxHeaderBytes: 16 << 10, maxConcurrent: 10}, ok)
	tests := []struct {
		name       string
		headerSize int
		wantStatus int
	}{
		{"small header", 1 << 10, http.StatusOK},
		{"just under the limit", 12 << 10, http.StatusOK},
		{"64 KiB header", 64 << 10, http.StatusRequestHeaderFieldsTooLarge},
		{"1 MiB header", 1 << 20, http.StatusRequestHeaderFieldsTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, addr)
			_ = c.SetDeadline(time.Now().Add(clientPatience))
			// The server answers 431 as soon as the limit is passed, possibly while this
			// is still writing: write in the background and read the answer here.
			go fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", tc.headerSize))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status = %d; want %d", resp.StatusCode, tc.wantStatus)
			}
		})
	}
}

func TestReadHeaderTimeout(t *testing.T) {
	const limit = 200 * time.Millisecond
	addr := startServer(t, limits{readHeaderTimeout: limit, maxConcurrent: 10}, ok)
	c := dial(t, addr)
	fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n")
	// A header line every 50 ms: each keeps a naive per-read timeout from firing.
	go trickle(c, 50*time.Millisecond)
	if took := closedWithin(t, c, clientPatience); took > limit+time.Second {
		t.Fatalf("closed after %s; want about %s", took, limit)
	}
}

func TestReadTimeout(t *testing.T) {
	const limit = 300 * time.Millisecond
	bodyErr := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.Copy(io.Discard, r.Body)
		bodyErr <- err
	})
	addr := startServer(t, limits{readTimeout: limit, maxConcurrent: 10}, h)
	c := dial(t, addr)
	fmt.Fprint(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for range tick.C {
			if _, err := c.Write([]byte("{")); err != nil {
				return
			}
		}
	}()
	select {
	case err := <-bodyErr:
		if err == nil {
			t.Fatal("the trickled body was read to its end; want a read timeout")
		}
	case <-time.After(clientPatience):
		t.Fatalf("the body was still being read after %s; want a read timeout", clientPatience)
	}
}

func TestWriteTimeout(t *testing.T) {
	const limit = 200 * time.Millisecond
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A handler that overruns the limit, as one stuck on a slow API call would.
		<-time.After(2 * limit)
		fmt.Fprintln(w, "late")
	})
	addr := startServer(t, limits{writeTimeout: limit, maxConcurrent: 10}, h)
	client := &http.Client{Timeout: clientPatience}
	resp, err := client.Get("http://" + addr + "/")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got %s after the write timeout; want the connection closed", resp.Status)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("client gave up (%v); want the server to close the connection", err)
	}
}

func TestIdleTimeout(t *testing.T) {
	const limit = 200 * time.Millisecond
	addr := startServer(t, limits{idleTimeout: limit, maxConcurrent: 10}, ok)
	c := dial(t, addr)
	fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(clientPatience))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Close {
		t.Fatal("the server closed the connection after the answer; want it kept alive until idle")
	}
	// The connection is now idle, kept alive.
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(clientPatience))
	_, err = br.ReadByte()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("idle connection still open after %s", clientPatience)
	}
	if took := time.Since(start); took > limit+time.Second {
		t.Fatalf("idle connection closed after %s; want about %s", took, limit)
	}
}

func TestMaxConcurrent(t *testing.T) {
	const n = 2
	entered, release := make(chan struct{}, n), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/health/") {
			fmt.Fprintln(w, "OK")
			return
		}
		if !withToken(r) {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		entered <- struct{}{}
		<-release
		fmt.Fprintln(w, "done")
	})
	addr := startServer(t, limits{maxConcurrent: n}, h)
	client := &http.Client{Timeout: clientPatience}
	post := func(path, auth string) (*http.Response, error) {
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+path, strings.NewReader(`{}`))
		if err != nil {
			return nil, err
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		return client.Do(req)
	}

	var wg sync.WaitGroup
	held := make(chan int, n)
	for i := 0; i < n; i++ {
		wg.Go(func() {
			if resp, err := post("/", "Bearer t"); err == nil {
				resp.Body.Close()
				held <- resp.StatusCode
			}
		})
	}
	for i := 0; i < n; i++ {
		<-entered
	}

	tests := []struct {
		name           string
		path           string
		auth           string
		wantStatus     int
		wantRetryAfter string
	}{
		{"one notification too many", "/", "Bearer t", http.StatusServiceUnavailable, "1"},
		// Not 503: a flood without a token must not take the slots real notifications need.
		{"without a token while full: straight to the handler", "/", "", http.StatusUnauthorized, ""},
		{"wrong token while full", "/", "Bearer guess", http.StatusUnauthorized, ""},
		{"readiness while full", "/health/readiness", "", http.StatusOK, ""},
		{"liveness while full", "/health/liveness", "", http.StatusOK, ""},
		// The function answers POSTs on any path: only the probes' own skip the bound.
		{"a notification to another /health/ path while full", "/health/x", "Bearer t", http.StatusServiceUnavailable, "1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			resp, err := post(tc.path, tc.auth)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus || resp.Header.Get("Retry-After") != tc.wantRetryAfter {
				t.Fatalf("POST %s = %d, Retry-After %q; want %d, %q", tc.path, resp.StatusCode, resp.Header.Get("Retry-After"), tc.wantStatus, tc.wantRetryAfter)
			}
			if took := time.Since(start); took > time.Second {
				t.Fatalf("answered after %s; want at once", took)
			}
		})
	}

	close(release)
	wg.Wait()
	close(held)
	for status := range held {
		if status != http.StatusOK {
			t.Errorf("a notification within the limit got %d; want 200", status)
		}
	}
	resp, err := post("/", "Bearer t")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after the others finished: %d; want 200", resp.StatusCode)
	}
}
