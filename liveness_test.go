package function

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"

	"github.com/sre-kit/alert-rollback/internal/fixture"
	"github.com/sre-kit/alert-rollback/internal/kube/clientset"
)

func TestLivenessAddrs(t *testing.T) {
	ifaddrs := []net.Addr{
		&net.IPNet{IP: net.ParseIP("127.0.0.1"), Mask: net.CIDRMask(8, 32)},
		&net.IPNet{IP: net.ParseIP("::1"), Mask: net.CIDRMask(128, 128)},
		&net.IPNet{IP: net.ParseIP("10.244.0.7"), Mask: net.CIDRMask(24, 32)},
		&net.IPNet{IP: net.ParseIP("fe80::1"), Mask: net.CIDRMask(64, 128)},
		&net.IPNet{IP: net.ParseIP("fd00::7"), Mask: net.CIDRMask(64, 128)},
	}
	tests := []struct {
		name    string
		addr    string
		ifaddrs []net.Addr
		want    []string
		wantErr bool
	}{
		{name: "a host", addr: "127.0.0.2:8080", ifaddrs: ifaddrs, want: []string{"127.0.0.2:8080"}},
		{name: "the pod's own", addr: ":8080", ifaddrs: ifaddrs, want: []string{"10.244.0.7:8080", "[fd00::7]:8080"}},
		{name: "only loopback", addr: ":8080", ifaddrs: ifaddrs[:2], wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := livenessAddrs(tc.addr, tc.ifaddrs)
			if (err != nil) != tc.wantErr {
				t.Fatalf("livenessAddrs(%q) = %v; want an error: %v", tc.addr, err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("livenessAddrs(%q) (-want +got):\n%s", tc.addr, diff)
			}
		})
	}
}

func TestLivenessAddressSetting(t *testing.T) {
	tests := []struct {
		value   string
		wantErr bool
	}{
		{":8080", false},
		{"127.0.0.2:8080", false},
		{"[fd00::7]:8080", false},
		{"8080", true},
		{"localhost:8080", true},
		{":0", true},
		{":http", true},
	}
	for _, tc := range tests {
		t.Run(tc.value, func(t *testing.T) {
			_, err := parseConfig(map[string]string{"ROLLBACK_AUTH_TOKEN": "t", "ROLLBACK_LIVENESS_ADDRESS": tc.value})
			if (err != nil) != tc.wantErr {
				t.Errorf("ROLLBACK_LIVENESS_ADDRESS=%s: %v; want an error: %v", tc.value, err, tc.wantErr)
			}
		})
	}
}

// TestLivenessServer: with ROLLBACK_LIVENESS_ADDRESS, Start answers kubelet's liveness
// probe there and nothing else: a notification, even with the token, is not handled, and a
// header block past 4 KiB is refused with 431 instead of being held. Stop closes it.
func TestLivenessServer(t *testing.T) {
	addr := freeLoopbackAddr(t, "127.0.0.2")
	f := New()
	f.newClient = func(config) (clients, error) {
		return clients{kube: clientset.Wrap(fixture.Clientset()), dynamic: newDynamic(), namespace: ownNamespace}, nil
	}
	f.newLogger = zap.NewNop().Sugar
	f.memoryLimit = noMemoryLimit
	if err := f.Start(t.Context(), map[string]string{"ROLLBACK_AUTH_TOKEN": testToken, "ROLLBACK_LIVENESS_ADDRESS": addr}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Stop(context.Background()) })

	body := string(notification(firing("pod", "checkout-api-5d8f-x7k2p")))
	tests := []struct {
		name    string
		request string
		want    int
	}{
		{"liveness probe", "GET /health/liveness HTTP/1.1\r\nHost: x\r\nUser-Agent: kube-probe/1.35\r\n\r\n", http.StatusOK},
		{"readiness", "GET /health/readiness HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusNotFound},
		{"a notification with the token", "POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + testToken +
			"\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body, http.StatusNotFound},
		{"a header of 1 MB", "GET /health/liveness HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("a", 1<<20), http.StatusRequestHeaderFieldsTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := rawStatus(t, addr, tc.request); got != tc.want {
				t.Errorf("answer %d; want %d", got, tc.want)
			}
		})
	}

	if err := f.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("the liveness server still accepts connections after Stop")
	}
}

// rawStatus writes request on a new connection to addr and returns the answer's status.
// It writes and reads at once: a server may answer before the request is all sent.
func rawStatus(t *testing.T, addr, request string) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() { _, _ = c.Write([]byte(request)) }()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// freeLoopbackAddr returns host:port with a port free on host a moment ago.
func freeLoopbackAddr(t *testing.T, host string) string {
	t.Helper()
	l, err := net.Listen("tcp", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
