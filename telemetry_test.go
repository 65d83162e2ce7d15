package function

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	colmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/protobuf/proto"

	"github.com/sre-kit/alert-rollback/internal/fixture"
	"github.com/sre-kit/alert-rollback/internal/outcome"
	"github.com/sre-kit/alert-rollback/internal/sink"
)

// otlpReceiver takes OTLP/HTTP metric exports, as a collector or Prometheus would, and
// keeps the last value of each counter point as "name{k=v,...}".
type otlpReceiver struct {
	URL string
	mu  sync.Mutex
	got map[string]int64
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	o := &otlpReceiver{got: map[string]int64{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var req colmetrics.ExportMetricsServiceRequest
		if r.URL.Path != "/v1/metrics" || proto.Unmarshal(b, &req) != nil {
			http.Error(w, "bad export", http.StatusBadRequest)
			return
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		for _, rm := range req.ResourceMetrics {
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					for _, p := range m.GetSum().GetDataPoints() {
						var kv []string
						for _, a := range p.Attributes {
							kv = append(kv, a.Key+"="+a.Value.GetStringValue())
						}
						o.got[m.Name+"{"+strings.Join(kv, ",")+"}"] = p.GetAsInt()
					}
				}
			}
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(srv.Close)
	o.URL = srv.URL
	return o
}

func (o *otlpReceiver) counters() map[string]int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[string]int64{}
	for k, v := range o.got {
		out[k] = v
	}
	return out
}

// TestTelemetryOnStop: a notification is rolled back and another is refused; a caller
// without the token is turned away. Nothing waits for the sink or the counters; once Stop
// returns (a function scaled to zero stops right after its answer), the sink has an event
// per result, typed by action, about its workload, carrying the row, and the OTLP endpoint
// has the counts (the periodic push is an hour away: only Stop's flush can have sent them).
func TestTelemetryOnStop(t *testing.T) {
	rec, otlp := fixture.NewCEReceiver(t), newOTLPReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.URL)
	t.Setenv("OTEL_METRIC_EXPORT_INTERVAL", "3600000")
	objs, badPod := brokenDeployment(ownNamespace)
	f := newFunction(t, fixture.Clientset(objs...), map[string]string{
		"K_SINK": rec.URL, "K_SERVICE": "alert-rollback", "K_CE_OVERRIDES": `{"extensions":{"team":"sre"}}`,
		"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.URL,
	})
	var answers []outcome.Result
	for _, body := range [][]byte{
		notification(firing("pod", badPod)),
		notification(firing("deployment", "missing")),
	} {
		w := httptest.NewRecorder()
		f.Handle(w, post(body))
		var resp outcome.Response
		if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || w.Code != http.StatusOK {
			t.Fatalf("Handle() = %d %s", w.Code, w.Body)
		}
		answers = append(answers, resp.Results...)
	}
	unauthorized := post(notification(firing("pod", badPod)))
	unauthorized.Header.Del("Authorization")
	f.Handle(httptest.NewRecorder(), unauthorized)
	if err := f.Stop(context.Background()); err != nil {
		t.Fatalf("Stop() = %v", err)
	}

	events := rec.Events()
	if len(events) != len(answers) {
		t.Fatalf("the sink got %d events; want %d, one per result %+v", len(events), len(answers), answers)
	}
	wantTypes := []string{"dev.alert-rollback.rolled-back.v1", "dev.alert-rollback.refused.v1"}
	for i, ev := range events {
		r := answers[i]
		var data outcome.Result
		if err := json.Unmarshal(ev.Data(), &data); err != nil {
			t.Fatal(err)
		}
		if ev.Type() != wantTypes[i] || ev.Subject() != r.Namespace+"/"+r.Kind+"/"+r.Name ||
			ev.Source() != "/alert-rollback/namespaces/shop/functions/alert-rollback" || ev.Extensions()["team"] != "sre" ||
			ev.Extensions()["reason"] != string(r.Reason) || data.Action != r.Action || data.Fingerprint != r.Fingerprint {
			t.Errorf("event %d: type %s subject %q source %s extensions %v data %+v; want %s about the answer's %+v",
				i, ev.Type(), ev.Subject(), ev.Source(), ev.Extensions(), data, wantTypes[i], r)
		}
	}

	got := otlp.counters()
	for _, want := range []string{
		"alert_rollback.decisions{action=rolled-back,kind=Deployment,namespace=shop,reason=rolled-back}",
		"alert_rollback.decisions{action=refused,kind=Deployment,namespace=shop,reason=not-found}",
		"alert_rollback.requests{http.response.status_code=401}",
		"alert_rollback.cloudevents{result=sent}",
	} {
		if want == "alert_rollback.cloudevents{result=sent}" {
			if got[want] != 2 {
				t.Errorf("%s = %d; want 2 (got %v)", want, got[want], got)
			}
			continue
		}
		if got[want] != 1 {
			t.Errorf("%s = %d; want 1 (got %v)", want, got[want], got)
		}
	}
	if got["alert_rollback.requests{http.response.status_code=200}"] != 2 {
		t.Errorf("requests answered 200: %d; want 2 (got %v)", got["alert_rollback.requests{http.response.status_code=200}"], got)
	}
}

// TestSinkNeverDelaysTheAnswer: a sink that hangs, and one that is down. Every
// notification is answered as without a sink, while the sink still holds the first event;
// Stop gives up on the sink within its bound.
func TestSinkNeverDelaysTheAnswer(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	let := func() { once.Do(func() { close(release) }) }
	hanging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(hanging.Close)
	t.Cleanup(let)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()

	tests := []struct{ name, sink string }{
		{"sink hangs", hanging.URL},
		{"sink down", down.URL},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs, badPod := brokenDeployment(ownNamespace)
			f := newFunction(t, fixture.Clientset(objs...), map[string]string{"K_SINK": tc.sink})
			// The sink holds every event until the test ends (or refuses it at once): 20
			// notifications are answered, each as without a sink, in less time than one send
			// to it may take (sink.DefaultSendTimeout).
			start := time.Now()
			for i := range 20 {
				w := httptest.NewRecorder()
				body := notification(firing("pod", badPod))
				if i > 0 {
					body = notification(firing("deployment", "missing"))
				}
				f.Handle(w, post(body))
				if w.Code != http.StatusOK {
					t.Errorf("answer %d = %d; want 200", i, w.Code)
				}
			}
			if took := time.Since(start); took >= sink.DefaultSendTimeout {
				t.Errorf("20 notifications took %s; a send to the sink may take %s, and none may be waited for", took, sink.DefaultSendTimeout)
			}
			stopped := make(chan error, 1)
			go func() { stopped <- f.Stop(context.Background()) }()
			select {
			case err := <-stopped:
				if err != nil {
					t.Errorf("Stop() = %v; want nil: the sink's loss is logged, not the Stop's failure", err)
				}
			case <-time.After(flushTimeout + 10*time.Second):
				t.Fatal("Stop did not give up on the sink")
			}
		})
	}
}

// TestTelemetrySettings: K_SINK, K_CE_OVERRIDES and the OTLP protocol are checked at
// start, like every setting; the SDK's own switch turns the counters off.
func TestTelemetrySettings(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		wantErr  string
		wantOTLP bool
		wantSink bool
	}{
		{name: "neither", env: map[string]string{}},
		{name: "both", env: map[string]string{"K_SINK": "http://broker-ingress.knative-eventing.svc.cluster.local/shop/default", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, wantOTLP: true, wantSink: true},
		{name: "metrics endpoint only", env: map[string]string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://127.0.0.1:1/v1/metrics"}, wantOTLP: true},
		{name: "SDK disabled", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_SDK_DISABLED": "true"}},
		{name: "sink not a URL", env: map[string]string{"K_SINK": "broker"}, wantErr: "K_SINK"},
		{name: "overrides not JSON", env: map[string]string{"K_SINK": "http://127.0.0.1:1", "K_CE_OVERRIDES": "team=sre"}, wantErr: "K_CE_OVERRIDES"},
		{name: "grpc", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, wantErr: "http/protobuf"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"ROLLBACK_AUTH_TOKEN": testToken}
			for k, v := range tc.env {
				env[k] = v
			}
			c, err := parseConfig(env)
			if tc.wantErr != "" {
				if !errors.Is(err, errConfig) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseConfig() = %v; want errConfig naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.otlp != tc.wantOTLP || (c.sinkURL != "") != tc.wantSink {
				t.Errorf("otlp %v, sink %q; want otlp %v, sink %v", c.otlp, c.sinkURL, tc.wantOTLP, tc.wantSink)
			}
		})
	}
}
