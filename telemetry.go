package function

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.uber.org/zap"

	"github.com/sre-kit/alert-rollback/internal/metrics"
	"github.com/sre-kit/alert-rollback/internal/outcome"
	"github.com/sre-kit/alert-rollback/internal/sink"
)

// telemetry tells others what the function did, the Knative way: every result row as a
// CloudEvent to K_SINK, and counters pushed over OTLP. Both are optional and neither is on
// the answer's path: it is told the results once the answer is written, queues the events
// and adds to counters, and returns.
type telemetry struct {
	sink    *sink.Sink
	metrics *metrics.Metrics
}

// flushTimeout bounds what Stop spends pushing the last events and counters. Notifications
// in flight end within the 20 s a notification has; with this, Stop ends inside the 25 s
// cmd/rollback grants and the 30 s Knative gives a pod (terminationGracePeriodSeconds, the
// revision's timeoutSeconds) between SIGTERM and SIGKILL.
const flushTimeout = 5 * time.Second

// startTelemetry starts what the settings ask for: nothing, one or both.
func startTelemetry(ctx context.Context, c config, ownNamespace string, log *zap.SugaredLogger) (*telemetry, error) {
	t := &telemetry{}
	if c.otlp {
		allowed := c.allowed(ownNamespace)
		listed := func(ns string) bool {
			return slices.Contains(c.namespaces, ns) || len(c.namespaces) == 0 && ns == ownNamespace
		}
		m, err := metrics.New(ctx, metrics.Options{
			Namespaces: &metrics.Namespaces{Listed: listed, Allowed: allowed, Max: metrics.DefaultMaxNamespaces},
			// Under Knative, which revision's pod this is; in Prometheus, on target_info.
			Resource: []attribute.KeyValue{attribute.String("k8s.namespace.name", ownNamespace)},
		})
		if err != nil {
			return nil, err
		}
		t.metrics = m
	}
	if c.sinkURL != "" {
		s, err := sink.New(sink.Config{URL: c.sinkURL, Overrides: c.ceOverrides, Source: eventSource(ownNamespace, c.service)})
		if err != nil {
			t.close(ctx)
			return nil, err
		}
		s.OnDone = t.metrics.CloudEvent
		s.OnError = func(err error) { log.Warnw("CloudEvent not delivered", "error", err) }
		t.sink = s
	}
	return t, nil
}

// eventSource names the function that sent an event: its namespace and its Knative
// Service's name (K_SERVICE), or alert-rollback outside Knative.
func eventSource(namespace, service string) string {
	if service == "" {
		service = "alert-rollback"
	}
	return "/alert-rollback/namespaces/" + url.PathEscape(namespace) + "/functions/" + url.PathEscape(service)
}

// results tells the sink and the counters about a notification's results.
func (t *telemetry) results(ctx context.Context, rs []outcome.Result) {
	if t == nil {
		return
	}
	for _, r := range rs {
		t.metrics.Result(ctx, r)
		t.sink.Send(r)
	}
}

// request counts a request answered with status.
func (t *telemetry) request(ctx context.Context, status int) {
	if t != nil {
		t.metrics.Request(ctx, status)
	}
}

// close sends the events queued, then pushes the last counts (which count what became of
// those events), within flushTimeout and ctx: the process may end right after (a function
// scaled to zero).
func (t *telemetry) close(ctx context.Context) error {
	if t == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, flushTimeout)
	defer cancel()
	// The sink gets most of the time; the counters' push gets the rest, at least a fifth.
	sinkCtx, cancelSink := context.WithTimeout(ctx, flushTimeout*4/5)
	defer cancelSink()
	return errors.Join(t.sink.Close(sinkCtx), t.metrics.Close(ctx))
}

// checkSink checks K_SINK and K_CE_OVERRIDES as the sink will use them.
func checkSink(u, overrides string) error {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return fmt.Errorf("%q is not an absolute http or https URL", u)
	}
	_, err = sink.ParseOverrides(overrides)
	return err
}

// parseOTLP reports whether counters are pushed: an OTLP endpoint is set (for metrics or
// for every signal) and the SDK is not disabled. The exporter speaks OTLP over HTTP
// (protobuf), what Prometheus's OTLP receiver and every collector take; a protocol set to
// anything else would be silently ignored, so it stops the function at start.
func parseOTLP(env map[string]string) (bool, error) {
	if disabled, _ := strconv.ParseBool(env["OTEL_SDK_DISABLED"]); disabled {
		return false, nil
	}
	if env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "" && env["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"] == "" {
		return false, nil
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := strings.TrimSpace(env[name]); p != "" && p != "http/protobuf" {
			return false, fmt.Errorf("%s=%q: only http/protobuf is supported", name, p)
		}
	}
	return true, nil
}
