package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/yaml"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
	"github.com/sre-kit/alert-rollback/internal/fixture"
	"github.com/sre-kit/alert-rollback/internal/outcome"
)

// healthRules is the file of rules about the function's own health.
const healthRules = "deploy/prometheus/rollback-health-rules.yml"

// TestTelemetryReachesPrometheusAndSink runs the function's binary with a real Prometheus
// server's OTLP receiver as OTEL_EXPORTER_OTLP_ENDPOINT (the shipped health rules loaded,
// evaluated every second) and a real CloudEvents receiver as K_SINK. Three alerts: one is
// rolled back, one refused budget-exhausted (ROLLBACK_BUDGET=1/1h), one fails (a namespace
// ROLLBACK_NAMESPACES lists but the function's Role does not reach). The counters' periodic
// push is an hour away: only the flush on SIGTERM, as Knative stops a pod scaled to zero,
// can bring them. Then Prometheus holds the counters with exact values, under the names
// the health rules use; every selector of the rules matches a series; the budget and the
// failure alerts fire; and the receiver has one event per result, typed by its action,
// about its workload, carrying the row.
func TestTelemetryReachesPrometheusAndSink(t *testing.T) {
	cluster.Require(t, "prometheus")
	e := newEnv(t)
	ctx := context.Background()
	prom := startPrometheus(t, e.dir)
	sink := fixture.NewCEReceiver(t)
	denied := e.ns + "-denied"
	if err := kube.CreateNamespace(ctx, denied); err != nil {
		t.Fatal(err)
	}
	podA, podB := e.brokenDeployment("web-a"), e.brokenDeployment("web-b")

	f := e.startFunction("rollback", map[string]string{
		"ROLLBACK_BUDGET":             "1/1h",
		"ROLLBACK_NAMESPACES":         e.ns + "," + denied,
		"K_SINK":                      sink.URL,
		"K_SERVICE":                   "alert-rollback",
		"OTEL_EXPORTER_OTLP_ENDPOINT": prom.URL + "api/v1/otlp",
		"OTEL_METRIC_EXPORT_INTERVAL": "3600000",
	})
	alerts := []struct {
		body       []byte
		wantStatus int
		wantAction outcome.Action
		wantReason outcome.Reason
	}{
		{notification(seedAlert(e.ns, podA, time.Now())), http.StatusOK, outcome.RolledBack, outcome.ReasonRolledBack},
		{notification(seedAlert(e.ns, podB, time.Now())), http.StatusOK, outcome.Refused, outcome.ReasonBudgetExhausted},
		{notification(alertWith(map[string]string{"alertname": "AlertRollbackDeploymentRolloutStuck", "severity": "rollback",
			"namespace": denied, "deployment": "web"}, time.Now())), 0, outcome.Failed, ""},
	}
	var results []outcome.Result
	statuses := map[string]float64{}
	for i, a := range alerts {
		status, resp, err := f.Post(ctx, a.body, e.token)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Results) != 1 || (a.wantStatus != 0 && status != a.wantStatus) || resp.Results[0].Action != a.wantAction ||
			(a.wantReason != "" && resp.Results[0].Reason != a.wantReason) {
			t.Fatalf("alert %d answered %d %+v; want %d %s %s", i, status, resp, a.wantStatus, a.wantAction, a.wantReason)
		}
		results = append(results, resp.Results[0])
		statuses[strconv.Itoa(status)]++
	}
	failed := results[2]
	f.Stop() // SIGTERM: the function flushes its events and counters before it exits

	// The counters, as Prometheus's OTLP receiver named and stored them.
	type series = map[string]float64
	decision := func(r outcome.Result) string {
		return fmt.Sprintf("%s/%s/%s/%s", r.Namespace, r.Kind, r.Action, r.Reason)
	}
	tests := []struct {
		name, query string
		key         func(map[string]string) string
		want        series
	}{
		{
			name: "decisions", query: `alert_rollback_decisions_total{job="alert-rollback"}`,
			key: func(l map[string]string) string {
				return l["namespace"] + "/" + l["kind"] + "/" + l["action"] + "/" + l["reason"]
			},
			want: series{decision(results[0]): 1, decision(results[1]): 1, decision(failed): 1},
		},
		{
			name: "verifications", query: `alert_rollback_verifications_total{job="alert-rollback"}`,
			key:  func(l map[string]string) string { return l["result"] },
			want: series{"healed": 0, "not-healed": 0},
		},
		{
			name: "requests", query: `alert_rollback_requests_total{job="alert-rollback"}`,
			key:  func(l map[string]string) string { return l["http_response_status_code"] },
			want: statuses,
		},
		{
			name: "CloudEvents", query: `alert_rollback_cloudevents_total{job="alert-rollback"}`,
			key:  func(l map[string]string) string { return l["result"] },
			want: series{"sent": 3},
		},
		{
			name: "build info", query: `alert_rollback_build_info{job="alert-rollback"}`,
			key: func(l map[string]string) string {
				return strconv.FormatBool(strings.HasPrefix(l["go_version"], "go1."))
			},
			want: series{"true": 1},
		},
		{
			name: "the process, on target_info", query: `target_info{job="alert-rollback"}`,
			key: func(l map[string]string) string {
				return l["k8s_namespace_name"] + "/" + strconv.FormatBool(l["instance"] != "")
			},
			want: series{e.ns + "/true": 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := series{}
			for _, s := range prom.query(t, tc.query) {
				got[tc.key(s.Metric)] += s.value(t)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", tc.query, diff)
			}
		})
	}

	t.Run("every selector of the health rules matches a series", func(t *testing.T) {
		for _, sel := range ruleSelectors(t) {
			// The recorded series appear at the next evaluation, within a second.
			err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
				return len(prom.query(t, sel)) > 0, nil
			})
			if err != nil {
				t.Errorf("%s selects no series in Prometheus", sel)
			}
		}
	})
	t.Run("the health alerts fire for the budget and the failure, not for the undo", func(t *testing.T) {
		want := map[string]bool{"AlertRollbackBudgetExhausted": true, "AlertRollbackDecisionsFailing": true}
		var got map[string]bool
		err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			got = map[string]bool{}
			for _, s := range prom.query(t, `ALERTS{alertstate="firing", component="alert-rollback"}`) {
				got[s.Metric["alertname"]] = true
				if s.Metric["alertname"] == "AlertRollbackDecisionsFailing" && s.Metric["namespace"] != denied {
					t.Errorf("AlertRollbackDecisionsFailing for namespace %q; want %s", s.Metric["namespace"], denied)
				}
			}
			return cmp.Equal(want, got), nil
		})
		if err != nil {
			t.Errorf("firing health alerts %v; want %v", got, want)
		}
	})

	t.Run("one CloudEvent per result", func(t *testing.T) {
		events := sink.Events()
		if len(events) != len(results) {
			t.Fatalf("%d events; want %d", len(events), len(results))
		}
		for i, ev := range events {
			r := results[i]
			var data outcome.Result
			if err := json.Unmarshal(ev.Data(), &data); err != nil {
				t.Fatal(err)
			}
			wantType := "dev.alert-rollback." + string(r.Action) + ".v1"
			wantSubject := r.Namespace + "/" + r.Kind + "/" + r.Name
			if ev.Type() != wantType || ev.Subject() != wantSubject || ev.Source() != "/alert-rollback/namespaces/"+e.ns+"/functions/alert-rollback" {
				t.Errorf("event %d: type %s, subject %s, source %s; want %s, %s", i, ev.Type(), ev.Subject(), ev.Source(), wantType, wantSubject)
			}
			if diff := cmp.Diff(r, data); diff != "" {
				t.Errorf("event %d data (-answer +event):\n%s", i, diff)
			}
		}
	})
}

// TestSinkNeverDelaysTheAnswer: with K_SINK a sink that accepts connections and never
// answers, or one that is down, the function's binary answers an alert 200 rolled-back as
// it would without a sink, in less than the 5 s a send may take (it did not wait for one),
// and exits on SIGTERM within its flush bound.
func TestSinkNeverDelaysTheAnswer(t *testing.T) {
	hanging, down := fixture.HangingURL(t), fixture.GoneURL()

	tests := []struct{ name, sink string }{
		{"sink hangs", hanging},
		{"sink down", down},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			pod := e.brokenDeployment("web")
			f := e.startFunction("rollback", map[string]string{"K_SINK": tc.sink})
			start := time.Now()
			status, resp, err := f.Post(ctx, notification(seedAlert(e.ns, pod, time.Now())), e.token)
			took := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			if status != http.StatusOK || len(resp.Results) != 1 || resp.Results[0].Action != outcome.RolledBack {
				t.Fatalf("answered %d %+v; want 200 rolled-back", status, resp)
			}
			if took >= 5*time.Second {
				t.Errorf("the answer took %s; a sink send may take 5 s, and the answer must not wait for one", took)
			}
			start = time.Now()
			f.Stop()
			// 5 s of flush at most, after the notifications in flight (none).
			if stopped := time.Since(start); stopped > 15*time.Second {
				t.Errorf("SIGTERM to exit took %s; want the flush bounded (5 s)", stopped)
			}
			t.Logf("%s: answered in %s; exited %s after SIGTERM", tc.name, took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
		})
	}
}

// ruleSelectors returns every series selector of the health rules' expressions: each
// alert_rollback metric or recorded series they name, with its label matchers.
func ruleSelectors(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(repoFile(healthRules))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Expr string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatal(err)
	}
	selector := regexp.MustCompile(`alert_rollback[_:][a-z0-9_:]*(\{[^}]*\})?`)
	var out []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			for _, s := range selector.FindAllString(r.Expr, -1) {
				if !slices.Contains(out, s) {
					out = append(out, s)
				}
			}
		}
	}
	if len(out) < 5 {
		t.Fatalf("%s: found only the selectors %v", healthRules, out)
	}
	return out
}

// prometheus is a real Prometheus server on 127.0.0.1 with its OTLP receiver on.
type prometheus struct {
	URL string
}

// startPrometheus starts the Prometheus server built from the module that builds promtool,
// with the health rules loaded and evaluated every second, and no scrape.
func startPrometheus(t *testing.T, dir string) *prometheus {
	t.Helper()
	path, err := cluster.ToolPath("prometheus")
	if err != nil {
		t.Fatal(err)
	}
	rules, err := filepath.Abs(repoFile(healthRules))
	if err != nil {
		t.Fatal(err)
	}
	cfg := writeFile(t, filepath.Join(dir, "prometheus.yml"), fmt.Sprintf("global:\n  evaluation_interval: 1s\nrule_files:\n  - %s\n", rules))
	p := &prometheus{}
	proc, err := cluster.StartServer(context.Background(), 60*time.Second, func() (cluster.ProcessSpec, error) {
		port, err := cluster.FreePort()
		p.URL = fmt.Sprintf("http://127.0.0.1:%d/", port)
		return cluster.ProcessSpec{
			Name: "prometheus",
			Args: []string{path, "--config.file=" + cfg, "--storage.tsdb.path=" + filepath.Join(dir, "prometheus-data"),
				"--web.listen-address=127.0.0.1:" + strconv.Itoa(port), "--web.enable-otlp-receiver"},
			LogPath: filepath.Join(dir, "prometheus.log"),
		}, err
	}, func(ctx context.Context) error { return cluster.HTTPReady(p.URL + "-/ready")(ctx) })
	if err != nil {
		t.Fatalf("start Prometheus: %v", err)
	}
	t.Cleanup(func() {
		proc.Stop()
		if t.Failed() {
			t.Logf("Prometheus log:\n%s", proc.Tail(40))
		}
	})
	return p
}

// sample is one series of an instant query's answer.
type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (s sample) value(t *testing.T) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(fmt.Sprint(s.Value[1]), 64)
	if err != nil {
		t.Fatalf("value %v: %v", s.Value, err)
	}
	return v
}

// query asks Prometheus's HTTP API for an instant vector.
func (p *prometheus) query(t *testing.T, q string) []sample {
	t.Helper()
	resp, err := http.Get(p.URL + "api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []sample `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Status != "success" {
		t.Fatalf("query %s: %v %s", q, err, body.Error)
	}
	return body.Data.Result
}
