// Package faults puts a fault-injecting proxy between the function and the kube-apiserver,
// and its tests drive the built function through those faults, and through restarts of the
// apiserver, of etcd and of the function itself, with a real Alertmanager retrying.
//
// The proxy is two well-kept parts in a row, both on 127.0.0.1:
//
//	function ─TCP─▶ toxiproxy (latency, resets) ─TLS─▶ ReverseProxy (5xx, 409, lost answers, hooks) ─TLS─▶ kube-apiserver
//
// The function's kubeconfig names the first hop and trusts the second one's certificate, so
// it speaks TLS (and HTTP/2) through the TCP faults exactly as it would to the apiserver.
package faults

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Rule is one HTTP-level fault: which requests it hits, how many, and what happens to them.
type Rule struct {
	// Name shows in the proxy's log of requests.
	Name string
	// Match selects the requests; nil matches every one.
	Match func(*http.Request) bool
	// Times bounds how many requests the rule hits; 0 means every one until Clear.
	Times int
	// Status answers the request with an API Status of this code, as the apiserver writes
	// them, without forwarding it.
	Status int
	// RetryAfter, with Status, sends Retry-After: RetryAfter (seconds), as the apiserver
	// does with a 429 of priority and fairness and the 500 of a storage timeout: client-go
	// then sends the request again, until its retries or its deadline run out.
	RetryAfter int
	// Forward, with Status, forwards the request first and answers Status instead of the
	// apiserver's answer: the apiserver acted on it, the client hears that it failed.
	Forward bool
	// Drop cuts the request off without forwarding it: the client sees its stream reset.
	Drop bool
	// LoseAnswer forwards the request and cuts it off once the apiserver has answered:
	// the apiserver acted on it, and the client never learns how.
	LoseAnswer bool
	// Before runs before the request is forwarded (or answered by Status or Drop); After,
	// once the apiserver has answered and before the answer goes on.
	Before, After func()

	hits int
}

// Seen is one request that went through the proxy.
type Seen struct {
	Method, Path string
	// Rule names the rule that hit it, if any.
	Rule string
	// Upstream is the apiserver's status code, or 0 when it did not answer (or was not asked).
	Upstream int
	// Answered is false when the client got no answer (Drop, LoseAnswer, apiserver gone).
	Answered bool
	// Err is why the apiserver gave no answer, if it did not.
	Err string
	// At is when the request came in, Took how long until it was answered or cut off.
	At   time.Time
	Took time.Duration
}

// Proxy is a running fault-injecting proxy in front of an apiserver.
type Proxy struct {
	// URL is what the function's kubeconfig names: https://127.0.0.1:<toxiproxy's port>.
	URL string
	// CAFile holds the certificate the function must trust (the proxy's, for 127.0.0.1).
	CAFile string

	tcp      *toxiproxy.Proxy
	http     *httptest.Server
	rp       *httputil.ReverseProxy
	upstream *http.Transport

	mu    sync.Mutex
	rules []*Rule
	seen  []Seen
}

// errAnswerLost makes the ReverseProxy drop an answer it has read.
var errAnswerLost = errors.New("answer lost on purpose")

type (
	ruleKey  struct{}
	beganKey struct{}
)

// Start starts a proxy in front of the apiserver at apiserver (https://127.0.0.1:port),
// which it verifies with caFile. dir receives the proxy's certificate.
func Start(apiserver, caFile, dir string) (*Proxy, error) {
	upstream, err := url.Parse(apiserver)
	if err != nil {
		return nil, err
	}
	// Fault tests stay on this machine: the proxy only ever talks to a loopback apiserver.
	if ip := net.ParseIP(upstream.Hostname()); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("apiserver %s: the fault proxy only fronts a loopback address", apiserver)
	}
	pemCA, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemCA) {
		return nil, fmt.Errorf("%s: no certificate", caFile)
	}
	p := &Proxy{upstream: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   true,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSHandshakeTimeout: 5 * time.Second,
	}}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(upstream)
			r.Out.Host = upstream.Host
		},
		Transport: p.upstream,
		// Watches stream: pass every byte on at once.
		FlushInterval: -1,
		ModifyResponse: func(resp *http.Response) error {
			rule, _ := resp.Request.Context().Value(ruleKey{}).(*Rule)
			lose := rule != nil && rule.LoseAnswer
			p.record(resp.Request, rule, resp.StatusCode, !lose, nil)
			if rule != nil && rule.After != nil {
				rule.After()
			}
			if lose {
				return errAnswerLost
			}
			if rule != nil && rule.Forward && rule.Status != 0 {
				replaceAnswer(resp, rule)
			}
			return nil
		},
		// The apiserver unreachable (stopped, restarting), or an answer lost on purpose: the
		// client sees its request cut off, as it would with no proxy in between, never an
		// answer the apiserver did not give.
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if !errors.Is(err, errAnswerLost) {
				rule, _ := r.Context().Value(ruleKey{}).(*Rule)
				p.record(r, rule, 0, false, err)
			}
			panic(http.ErrAbortHandler)
		},
	}
	p.http = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	p.http.EnableHTTP2 = true
	// Resets and cut-off requests make the server log TLS and stream errors: expected here.
	p.http.Config.ErrorLog = log.New(io.Discard, "", 0)
	p.http.StartTLS()
	p.CAFile = filepath.Join(dir, "fault-proxy-ca.crt")
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.http.Certificate().Raw})
	if err := os.WriteFile(p.CAFile, cert, 0o644); err != nil {
		p.http.Close()
		return nil, err
	}

	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p.tcp = toxiproxy.NewProxy(server, "apiserver", "127.0.0.1:0", strings.TrimPrefix(p.http.URL, "https://"))
	if err := p.tcp.Start(); err != nil {
		p.http.Close()
		return nil, fmt.Errorf("toxiproxy: %w", err)
	}
	p.URL = "https://" + p.tcp.Listen
	return p, nil
}

// Close stops both hops and cuts every connection through them.
func (p *Proxy) Close() {
	p.tcp.Stop()
	p.http.CloseClientConnections()
	p.http.Close()
	p.upstream.CloseIdleConnections()
}

// Add adds HTTP-level rules; the first matching rule with hits left applies.
func (p *Proxy) Add(rules ...*Rule) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = append(p.rules, rules...)
}

// Remove removes one rule.
func (p *Proxy) Remove(rule *Rule) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = slices.DeleteFunc(p.rules, func(r *Rule) bool { return r == rule })
}

// Clear removes every HTTP-level rule and TCP-level toxic: the path is healthy again.
func (p *Proxy) Clear() error {
	p.mu.Lock()
	p.rules = nil
	p.mu.Unlock()
	p.tcp.Toxics.ResetToxics(context.Background())
	return nil
}

// Toxic adds a TCP-level fault through toxiproxy: typ is one of its toxics ("latency",
// "reset_peer", "timeout", ...), stream "upstream" (towards the apiserver) or
// "downstream", attributes its settings (see toxiproxy's README).
func (p *Proxy) Toxic(typ, stream string, attributes map[string]any) error {
	b, err := json.Marshal(map[string]any{"type": typ, "stream": stream, "toxicity": 1.0, "attributes": attributes})
	if err != nil {
		return err
	}
	_, err = p.tcp.Toxics.AddToxicJson(strings.NewReader(string(b)))
	return err
}

// Seen returns the requests that went through so far, in order.
func (p *Proxy) Seen() []Seen {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Seen(nil), p.seen...)
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	began := time.Now()
	r = r.WithContext(context.WithValue(r.Context(), beganKey{}, began))
	rule := p.take(r)
	if rule != nil && rule.Before != nil {
		rule.Before()
	}
	switch {
	case rule != nil && rule.Status != 0 && !rule.Forward:
		p.record(r, rule, 0, true, nil)
		w.Header().Set("Content-Type", "application/json")
		if rule.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(rule.RetryAfter))
		}
		w.WriteHeader(rule.Status)
		_, _ = w.Write(statusBody(r, rule.Status))
	case rule != nil && rule.Drop:
		p.record(r, rule, 0, false, nil)
		panic(http.ErrAbortHandler)
	default:
		p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ruleKey{}, rule)))
	}
}

// take returns the rule that hits r, counting the hit, or nil.
func (p *Proxy) take(r *http.Request) *Rule {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, rule := range p.rules {
		if (rule.Times == 0 || rule.hits < rule.Times) && (rule.Match == nil || rule.Match(r)) {
			rule.hits++
			return rule
		}
	}
	return nil
}

func (p *Proxy) record(r *http.Request, rule *Rule, upstream int, answered bool, err error) {
	s := Seen{Method: r.Method, Path: r.URL.Path, Upstream: upstream, Answered: answered}
	if rule != nil {
		s.Rule = rule.Name
	}
	if err != nil {
		s.Err = err.Error()
	}
	if began, ok := r.Context().Value(beganKey{}).(time.Time); ok {
		s.At, s.Took = began, time.Since(began)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen = append(p.seen, s)
}

// statusBody is what the apiserver answers with an error: a JSON metav1.Status with the
// code's reason, so the client reads it as that API error and not as garbage.
func statusBody(r *http.Request, code int) []byte {
	verb := strings.ToLower(r.Method)
	msg := http.StatusText(code) + " (injected by the fault proxy)"
	status := apierrors.NewGenericServerResponse(code, verb, schema.GroupResource{}, "", msg, 0, false).ErrStatus
	status.Kind, status.APIVersion = "Status", "v1"
	b, _ := json.Marshal(status)
	return b
}

// replaceAnswer turns the apiserver's answer into the rule's Status.
func replaceAnswer(resp *http.Response, rule *Rule) {
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	body := statusBody(resp.Request, rule.Status)
	resp.StatusCode, resp.Status = rule.Status, fmt.Sprintf("%d %s", rule.Status, http.StatusText(rule.Status))
	resp.Header = http.Header{"Content-Type": {"application/json"}, "Content-Length": {strconv.Itoa(len(body))}}
	if rule.RetryAfter > 0 {
		resp.Header.Set("Retry-After", strconv.Itoa(rule.RetryAfter))
	}
	resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
}

// Is reports whether r is a verb on resource (its plural, as in the URL path), so rules
// can pick "the PATCH of a Deployment" or "every GET".
func Is(method, resource string) func(*http.Request) bool {
	return func(r *http.Request) bool {
		if method != "" && r.Method != method {
			return false
		}
		return resource == "" || strings.Contains(r.URL.Path, "/"+resource+"/") || strings.HasSuffix(r.URL.Path, "/"+resource)
	}
}
