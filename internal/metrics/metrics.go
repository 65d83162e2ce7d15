// Package metrics counts what the function does (decisions, verifications, requests,
// CloudEvents) and pushes the counters over OTLP with the OpenTelemetry SDK.
//
// Push, never a scrape endpoint: a Knative Service that is scraped never scales to zero,
// and its counters die with the pod anyway. The exporter is configured the SDK's way, by
// the standard environment (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_METRICS_*,
// OTEL_METRIC_EXPORT_INTERVAL, OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME); Close pushes
// what was counted since the last export before the process ends.
//
// Every label is bounded: action, reason and kind are the code's own; the namespace comes
// from the alert, which callers control, so Namespaces keeps only the namespaces the
// function may act in (and at most a fixed number of them) and calls every other "other".
// No fingerprint, alert name or workload name is ever a label.
package metrics

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/sre-kit/alert-rollback/internal/outcome"
)

// The instruments, as OTLP names them. Prometheus's OTLP receiver (default translation,
// UnderscoreEscapingWithSuffixes) stores the counters as alert_rollback_decisions_total,
// alert_rollback_verifications_total, alert_rollback_requests_total and
// alert_rollback_cloudevents_total, and the gauge as alert_rollback_build_info: the unit in
// braces is an annotation and adds no suffix.
const (
	Decisions     = "alert_rollback.decisions"
	Verifications = "alert_rollback.verifications"
	Requests      = "alert_rollback.requests"
	CloudEvents   = "alert_rollback.cloudevents"
	BuildInfo     = "alert_rollback.build.info"
)

// Attribute keys (Prometheus labels of the same names, dots made underscores).
const (
	KeyNamespace = "namespace"
	KeyKind      = "kind"
	KeyAction    = "action"
	KeyReason    = "reason"
	KeyResult    = "result"
	KeyStatus    = "http.response.status_code"
	KeyVersion   = "version"
	KeyGoVersion = "go.version"
)

// Verification actions: a result with one of these actions reports whether an undo healed
// its workload, and is counted as a verification (by its action, the result) instead of a
// decision. They are package outcome's Healed and NotHealed.
var verificationActions = map[outcome.Action]bool{"healed": true, "not-healed": true}

// IsVerification reports whether a result with action a is a verification.
func IsVerification(a outcome.Action) bool { return verificationActions[a] }

// Other is the namespace label of a namespace not counted by name.
const Other = "other"

// Namespaces bounds the namespace label. A namespace the function may act in is counted by
// name: those ROLLBACK_NAMESPACES names (Listed), or, under `*`, the first Max namespaces
// it allows (Allowed) that results name; every other is Other. However many namespaces
// alerts carry, a process makes at most len(listed) + Max + 1 namespace values.
type Namespaces struct {
	Listed  func(string) bool
	Allowed func(string) bool
	Max     int

	mu   sync.Mutex
	seen map[string]bool
}

// DefaultMaxNamespaces bounds the namespaces counted by name under `*`.
const DefaultMaxNamespaces = 50

// Label is the namespace label for ns.
func (n *Namespaces) Label(ns string) string {
	switch {
	case ns == "":
		return ""
	case n.Listed != nil && n.Listed(ns):
		return ns
	case n.Allowed == nil || !n.Allowed(ns):
		return Other
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.seen[ns] {
		return ns
	}
	if len(n.seen) >= n.Max {
		return Other
	}
	if n.seen == nil {
		n.seen = map[string]bool{}
	}
	n.seen[ns] = true
	return ns
}

// Options configure New.
type Options struct {
	// Namespaces bounds the namespace label.
	Namespaces *Namespaces
	// Reader collects the counters; nil: a periodic reader pushing over OTLP/HTTP, set up
	// by the SDK's environment. Tests pass a ManualReader.
	Reader sdkmetric.Reader
	// Resource is added to the SDK's own and the environment's (which win).
	Resource []attribute.KeyValue
}

// Metrics holds the counters. Its methods are safe for concurrent use; a nil *Metrics
// counts nothing.
type Metrics struct {
	provider                                       *sdkmetric.MeterProvider
	decisions, verifications, requests, cloudevent metric.Int64Counter
	namespaces                                     *Namespaces
}

// New starts the counters. The resource names the service alert-rollback (OTEL_SERVICE_NAME
// overrides it) and the process, by a service.instance.id of its own (Prometheus's
// `instance` label): every process's counters are a series of their own, starting at zero,
// so two replicas never write one series and a restart is not a counter reset.
func New(ctx context.Context, o Options) (*Metrics, error) {
	reader := o.Reader
	if reader == nil {
		exp, err := otlpmetrichttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("OTLP metrics exporter: %w", err)
		}
		reader = sdkmetric.NewPeriodicReader(exp)
	}
	attrs := append([]attribute.KeyValue{
		attribute.String("service.name", "alert-rollback"),
		attribute.String("service.instance.id", uuid.NewString()),
	}, o.Resource...)
	res, err := resource.New(ctx, resource.WithTelemetrySDK(), resource.WithAttributes(attrs...), resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("OTLP metrics resource: %w", err)
	}
	m := &Metrics{provider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader), sdkmetric.WithResource(res)),
		namespaces: o.Namespaces}
	if m.namespaces == nil {
		m.namespaces = &Namespaces{Max: DefaultMaxNamespaces}
	}
	meter := m.provider.Meter("github.com/sre-kit/alert-rollback")
	counter := func(name, unit, desc string) metric.Int64Counter {
		if err != nil {
			return nil
		}
		var c metric.Int64Counter
		c, err = meter.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		return c
	}
	m.decisions = counter(Decisions, "{decision}", "Decisions about workloads, by namespace, kind, action and reason.")
	m.verifications = counter(Verifications, "{verification}", "Checks of whether an undo healed its workload, by result.")
	m.requests = counter(Requests, "{request}", "Requests answered, by HTTP status code.")
	m.cloudevent = counter(CloudEvents, "{event}", "CloudEvents to K_SINK, by result: sent, failed or dropped.")
	if err != nil {
		return nil, fmt.Errorf("OTLP metrics: %w", err)
	}
	info, err := meter.Int64Gauge(BuildInfo, metric.WithDescription("1, labelled with the function's version and Go version."))
	if err != nil {
		return nil, fmt.Errorf("OTLP metrics: %w", err)
	}
	info.Record(ctx, 1, metric.WithAttributes(attribute.String(KeyVersion, version()), attribute.String(KeyGoVersion, runtime.Version())))
	// The results a verification can have are known: their series exist from the start at
	// zero, so the first not-healed is an increase a rule sees, and the health rules'
	// selectors match a series before anything went wrong.
	for a := range verificationActions {
		m.verifications.Add(ctx, 0, metric.WithAttributes(attribute.String(KeyResult, string(a))))
	}
	return m, nil
}

// version is the main module's version as built ("(devel)" for a build from a checkout).
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "unknown"
}

// Result counts a result row: a verification by its result, anything else as a decision.
func (m *Metrics) Result(ctx context.Context, r outcome.Result) {
	if m == nil {
		return
	}
	if IsVerification(r.Action) {
		m.verifications.Add(ctx, 1, metric.WithAttributes(attribute.String(KeyResult, string(r.Action))))
		return
	}
	m.decisions.Add(ctx, 1, metric.WithAttributes(
		attribute.String(KeyNamespace, m.namespaces.Label(r.Namespace)),
		attribute.String(KeyKind, r.Kind),
		attribute.String(KeyAction, string(r.Action)),
		attribute.String(KeyReason, string(r.Reason)),
	))
}

// Request counts a request answered with status.
func (m *Metrics) Request(ctx context.Context, status int) {
	if m == nil {
		return
	}
	m.requests.Add(ctx, 1, metric.WithAttributes(attribute.String(KeyStatus, strconv.Itoa(status))))
}

// CloudEvent counts a CloudEvent by what became of it: sent, failed or dropped.
func (m *Metrics) CloudEvent(result string) {
	if m == nil {
		return
	}
	m.cloudevent.Add(context.Background(), 1, metric.WithAttributes(attribute.String(KeyResult, result)))
}

// Close pushes what was counted since the last export and stops, within ctx. The periodic
// reader's Shutdown collects and exports once more before it stops (a ForceFlush first
// would export the same cumulative values twice).
func (m *Metrics) Close(ctx context.Context) error {
	if m == nil {
		return nil
	}
	if err := m.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("OTLP metrics: pushing the last counts: %w", err)
	}
	return nil
}
