package metrics

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/sre-kit/alert-rollback/internal/outcome"
)

// collect returns every counter point as "name{k=v,...}" → value, and the build info's.
func collect(t *testing.T, r *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			var points []metricdata.DataPoint[int64]
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				if !d.IsMonotonic || d.Temporality != metricdata.CumulativeTemporality {
					t.Errorf("%s: monotonic %v, temporality %v; want a cumulative counter (what Prometheus takes)", m.Name, d.IsMonotonic, d.Temporality)
				}
				points = d.DataPoints
			case metricdata.Gauge[int64]:
				points = d.DataPoints
			default:
				t.Fatalf("%s: unexpected data %T", m.Name, m.Data)
			}
			for _, p := range points {
				var kv []string
				for _, a := range p.Attributes.ToSlice() {
					kv = append(kv, string(a.Key)+"="+a.Value.Emit())
				}
				out[m.Name+"{"+strings.Join(kv, ",")+"}"] = p.Value
			}
		}
	}
	return out
}

func newMetrics(t *testing.T, ns *Namespaces) (*Metrics, *sdkmetric.ManualReader) {
	t.Helper()
	r := sdkmetric.NewManualReader()
	m, err := New(context.Background(), Options{Namespaces: ns, Reader: r})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m, r
}

func row(ns, kind string, a outcome.Action, r outcome.Reason) outcome.Result {
	return outcome.Result{AlertName: "KubePodUnschedulable", Fingerprint: "0123456789abcdef", Namespace: ns, Kind: kind,
		Name: "web-7c9f8d6b5-x2k4q", Action: a, Reason: r}
}

// TestCounts: decisions by namespace, kind, action and reason; verifications by result
// (both results there from the start, at zero); requests by status code; CloudEvents by
// result; build info. Never a fingerprint, alert name or workload name.
func TestCounts(t *testing.T) {
	shop := func(string) bool { return true }
	tests := []struct {
		name string
		do   func(m *Metrics)
		want map[string]int64
	}{
		{
			name: "nothing yet",
			do:   func(*Metrics) {},
			want: map[string]int64{
				"alert_rollback.verifications{result=healed}":     0,
				"alert_rollback.verifications{result=not-healed}": 0,
			},
		},
		{
			name: "decisions, verifications, requests, events",
			do: func(m *Metrics) {
				ctx := context.Background()
				m.Result(ctx, row("shop", "Deployment", outcome.RolledBack, outcome.ReasonRolledBack))
				m.Result(ctx, row("shop", "Deployment", outcome.Refused, outcome.ReasonBudgetExhausted))
				m.Result(ctx, row("shop", "Deployment", outcome.Refused, outcome.ReasonBudgetExhausted))
				m.Result(ctx, row("shop", "StatefulSet", outcome.Failed, outcome.ReasonForbidden))
				m.Result(ctx, row("shop", "Deployment", "not-healed", "not-healed"))
				m.Result(ctx, row("shop", "Deployment", "healed", "healed"))
				m.Result(ctx, row("shop", "Deployment", "healed", "healed"))
				m.Request(ctx, 200)
				m.Request(ctx, 200)
				m.Request(ctx, 401)
				m.CloudEvent("sent")
				m.CloudEvent("dropped")
			},
			want: map[string]int64{
				"alert_rollback.decisions{action=rolled-back,kind=Deployment,namespace=shop,reason=rolled-back}":  1,
				"alert_rollback.decisions{action=refused,kind=Deployment,namespace=shop,reason=budget-exhausted}": 2,
				"alert_rollback.decisions{action=failed,kind=StatefulSet,namespace=shop,reason=forbidden}":        1,
				"alert_rollback.verifications{result=healed}":                                                     2,
				"alert_rollback.verifications{result=not-healed}":                                                 1,
				"alert_rollback.requests{http.response.status_code=200}":                                          2,
				"alert_rollback.requests{http.response.status_code=401}":                                          1,
				"alert_rollback.cloudevents{result=sent}":                                                         1,
				"alert_rollback.cloudevents{result=dropped}":                                                      1,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, r := newMetrics(t, &Namespaces{Listed: shop, Allowed: shop, Max: 10})
			tc.do(m)
			got := collect(t, r)
			var info string
			for k, v := range got {
				if strings.HasPrefix(k, BuildInfo+"{") {
					info = k
					if v != 1 || !strings.Contains(k, "go.version=go1.") || !strings.Contains(k, "version=") {
						t.Errorf("build info %s = %d; want 1 with version and go.version", k, v)
					}
					delete(got, k)
				}
			}
			if info == "" {
				t.Errorf("no %s", BuildInfo)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("counters (-want +got):\n%s", diff)
			}
			for k := range got {
				for _, leak := range []string{"0123456789abcdef", "KubePodUnschedulable", "web-7c9f8d6b5-x2k4q"} {
					if strings.Contains(k, leak) {
						t.Errorf("%s carries %q, an unbounded value", k, leak)
					}
				}
			}
		})
	}
}

// TestNamespacesBounded: alerts name 10,000 distinct namespaces (callers write the label).
// Whatever ROLLBACK_NAMESPACES says, the decisions make a bounded number of series: the
// namespaces listed by name, up to Max more under `*`, and "other".
func TestNamespacesBounded(t *testing.T) {
	const alerts = 10000
	tests := []struct {
		name string
		ns   *Namespaces
		// wantNamespaces is the set of namespace label values made.
		wantNamespaces int
		wantOther      int64
	}{
		{
			name: "its own namespace only",
			ns:   &Namespaces{Listed: func(ns string) bool { return ns == "ns-0" }, Allowed: func(ns string) bool { return ns == "ns-0" }, Max: DefaultMaxNamespaces},
			// ns-0 and other.
			wantNamespaces: 2, wantOther: alerts - 1,
		},
		{
			name: "a list",
			ns: &Namespaces{Listed: func(ns string) bool { return slices.Contains([]string{"ns-1", "ns-2", "ns-3"}, ns) },
				Allowed: func(ns string) bool { return slices.Contains([]string{"ns-1", "ns-2", "ns-3"}, ns) }, Max: DefaultMaxNamespaces},
			wantNamespaces: 4, wantOther: alerts - 3,
		},
		{
			name:           "every namespace (*)",
			ns:             &Namespaces{Listed: func(string) bool { return false }, Allowed: func(string) bool { return true }, Max: DefaultMaxNamespaces},
			wantNamespaces: DefaultMaxNamespaces + 1, wantOther: alerts - DefaultMaxNamespaces,
		},
		{
			name: "a list and * (kube-system listed by name)",
			ns: &Namespaces{Listed: func(ns string) bool { return ns == "kube-system" },
				Allowed: func(ns string) bool { return true }, Max: DefaultMaxNamespaces},
			wantNamespaces: DefaultMaxNamespaces + 2, wantOther: alerts - DefaultMaxNamespaces,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, r := newMetrics(t, tc.ns)
			ctx := context.Background()
			for i := range alerts {
				m.Result(ctx, row(fmt.Sprintf("ns-%d", i), "Deployment", outcome.Refused, outcome.ReasonNotFound))
			}
			m.Result(ctx, row("kube-system", "Deployment", outcome.Refused, outcome.ReasonNotFound))
			namespaces := map[string]bool{}
			var series int
			var other int64
			for k, v := range collect(t, r) {
				if !strings.HasPrefix(k, Decisions+"{") {
					continue
				}
				series++
				_, after, _ := strings.Cut(k, "namespace=")
				ns, _, _ := strings.Cut(after, ",")
				namespaces[ns] = true
				if ns == Other {
					other += v
				}
			}
			if len(namespaces) != tc.wantNamespaces || series != tc.wantNamespaces {
				t.Errorf("%d alerts' namespaces made %d series, %d namespace values; want %d", alerts+1, series, len(namespaces), tc.wantNamespaces)
			}
			// kube-system counts under other unless listed.
			wantOther := tc.wantOther
			if !tc.ns.Listed("kube-system") {
				wantOther++
			}
			if other != wantOther {
				t.Errorf("namespace=other counted %d; want %d", other, wantOther)
			}
		})
	}
}

// TestResource: the process is a series of its own (service.instance.id), named
// alert-rollback unless OTEL_SERVICE_NAME says otherwise, and OTEL_RESOURCE_ATTRIBUTES
// is honoured.
func TestResource(t *testing.T) {
	tests := []struct {
		name        string
		env         map[string]string
		wantService string
		wantAttr    [2]string
	}{
		{name: "defaults", wantService: "alert-rollback"},
		{name: "from the environment", env: map[string]string{"OTEL_SERVICE_NAME": "rollback-prod", "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod"},
			wantService: "rollback-prod", wantAttr: [2]string{"deployment.environment", "prod"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			ids := map[string]bool{}
			for range 2 {
				r := sdkmetric.NewManualReader()
				m, err := New(context.Background(), Options{Reader: r, Resource: []attribute.KeyValue{attribute.String("k8s.namespace.name", "monitoring")}})
				if err != nil {
					t.Fatal(err)
				}
				var rm metricdata.ResourceMetrics
				if err := r.Collect(context.Background(), &rm); err != nil {
					t.Fatal(err)
				}
				_ = m.Close(context.Background())
				get := func(k string) string { v, _ := rm.Resource.Set().Value(attribute.Key(k)); return v.Emit() }
				if got := get("service.name"); got != tc.wantService {
					t.Errorf("service.name = %q; want %q", got, tc.wantService)
				}
				if got := get("k8s.namespace.name"); got != "monitoring" {
					t.Errorf("k8s.namespace.name = %q; want monitoring", got)
				}
				if tc.wantAttr[0] != "" && get(tc.wantAttr[0]) != tc.wantAttr[1] {
					t.Errorf("%s = %q; want %q", tc.wantAttr[0], get(tc.wantAttr[0]), tc.wantAttr[1])
				}
				ids[get("service.instance.id")] = true
			}
			if len(ids) != 2 || ids[""] {
				t.Errorf("service.instance.id of two processes: %v; want two distinct ids", ids)
			}
		})
	}
}
