// Package sink sends every result row (each decision, each verification) as a CloudEvent to
// the address Knative injects as K_SINK (a SinkBinding, or a source's sink), so people and
// other programs learn what the function did without reading its logs.
//
// Sending is never on the answer's path: Send only puts the event in a bounded queue, which
// one goroutine drains, each send bounded by its own timeout. A full queue drops the event
// and counts it. Close sends what is queued, within the time it is given: a Knative
// function scaled to zero is stopped right after its last answer, and what it decided must
// still reach the sink.
package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/google/uuid"

	"github.com/sre-kit/alert-rollback/internal/clip"
	"github.com/sre-kit/alert-rollback/internal/outcome"
)

// TypePrefix and TypeSuffix frame an event's type around the result's action:
// dev.alert-rollback.rolled-back.v1, dev.alert-rollback.refused.v1, ... An action added to
// package outcome gets its own type with no change here.
const (
	TypePrefix = "dev.alert-rollback."
	TypeSuffix = ".v1"
)

// ReasonExtension is the CloudEvent extension attribute that holds the result's reason
// code, so a Knative Trigger can filter on it (reason: budget-exhausted).
const ReasonExtension = "reason"

// Defaults of the queue and of each send.
const (
	// DefaultQueue bounds the events waiting: at most ROLLBACK_MAX_ALERTS rows a
	// notification, ten notifications at once, each row clipped to a few KiB.
	DefaultQueue = 1024
	// DefaultSendTimeout bounds each send: a sink that hangs costs the queue this long per
	// event, never the answer.
	DefaultSendTimeout = 5 * time.Second
)

// ErrConfig marks a K_SINK or K_CE_OVERRIDES the function cannot use.
var ErrConfig = errors.New("invalid CloudEvents sink setting")

// Config is where and how events are sent.
type Config struct {
	// URL is K_SINK: an absolute http or https URL.
	URL string
	// Overrides is K_CE_OVERRIDES as Knative writes it: {"extensions": {"name": "value"}},
	// set on every event.
	Overrides string
	// Source is the events' source attribute: which function sent them.
	Source string
	// Queue and SendTimeout default to DefaultQueue and DefaultSendTimeout.
	Queue       int
	SendTimeout time.Duration
}

// Counts is what became of the events so far.
type Counts struct {
	Sent, Failed, Dropped int64
}

// Sink sends results as CloudEvents. It is safe for concurrent use.
type Sink struct {
	client      cloudevents.Client
	source      string
	extensions  map[string]string
	sendTimeout time.Duration
	// OnDone, when set before the first Send, is told how each event ended: "sent",
	// "failed" or "dropped" (metrics count them).
	OnDone func(result string)
	// OnError, when set before the first Send, is told why a send failed.
	OnError func(err error)

	queue chan cloudevents.Event
	// closing ends the sender's loop once the queue is empty; abort cancels the send in
	// flight when Close runs out of time.
	closing   chan struct{}
	closeOnce sync.Once
	closed    atomic.Bool
	done      chan struct{}
	base      context.Context
	abort     context.CancelFunc

	sent, failed, dropped atomic.Int64
}

// New checks cfg and starts the sender.
func New(cfg Config) (*Sink, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: K_SINK %q is not an absolute http(s) URL", ErrConfig, clip.String(cfg.URL, clip.Max))
	}
	ext, err := ParseOverrides(cfg.Overrides)
	if err != nil {
		return nil, err
	}
	if cfg.Queue <= 0 {
		cfg.Queue = DefaultQueue
	}
	if cfg.SendTimeout <= 0 {
		cfg.SendTimeout = DefaultSendTimeout
	}
	// A client of its own: the timeout bounds a send whatever the context says, and no
	// other code's transport settings apply.
	hc := http.Client{Timeout: cfg.SendTimeout, Transport: &http.Transport{
		Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second,
		ResponseHeaderTimeout: cfg.SendTimeout,
	}}
	p, err := cloudevents.NewHTTP(cehttp.WithTarget(cfg.URL), cehttp.WithClient(hc))
	if err != nil {
		return nil, fmt.Errorf("CloudEvents sink: %w", err)
	}
	c, err := cloudevents.NewClient(p, cloudevents.WithTimeNow(), cloudevents.WithUUIDs())
	if err != nil {
		return nil, fmt.Errorf("CloudEvents sink: %w", err)
	}
	base, abort := context.WithCancel(context.Background())
	s := &Sink{client: c, source: cfg.Source, extensions: ext, sendTimeout: cfg.SendTimeout,
		queue: make(chan cloudevents.Event, cfg.Queue), closing: make(chan struct{}), done: make(chan struct{}),
		base: base, abort: abort}
	go s.run()
	return s, nil
}

// ParseOverrides reads K_CE_OVERRIDES: {"extensions": {"name": "value", ...}}. Empty is
// none.
func ParseOverrides(s string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var o struct {
		Extensions map[string]any `json:"extensions"`
	}
	if err := json.Unmarshal([]byte(s), &o); err != nil {
		return nil, fmt.Errorf("%w: K_CE_OVERRIDES: %w", ErrConfig, err)
	}
	ext := map[string]string{}
	for k, v := range o.Extensions {
		// The spec's attribute names: lower-case letters and digits, none of the core
		// attributes (an override must not replace the type or the subject).
		if !event.IsExtensionNameValid(k) || coreAttributes[k] {
			return nil, fmt.Errorf("%w: K_CE_OVERRIDES: %q is not an extension attribute name", ErrConfig, clip.String(k, clip.Max))
		}
		ext[k] = fmt.Sprint(v)
	}
	return ext, nil
}

// coreAttributes are the CloudEvents attributes that are not extensions.
var coreAttributes = map[string]bool{"id": true, "source": true, "specversion": true, "type": true,
	"datacontenttype": true, "dataschema": true, "subject": true, "time": true, "data": true, "data_base64": true}

// Event is the CloudEvent for a result: its type from the action, its subject the
// workload, its data the result row (strings clipped as in the answer).
func (s *Sink) Event(r outcome.Result) (cloudevents.Event, error) {
	ev := cloudevents.NewEvent()
	ev.SetID(uuid.NewString())
	ev.SetTime(time.Now())
	ev.SetType(Type(r.Action))
	ev.SetSource(s.source)
	if subject := Subject(r); subject != "" {
		ev.SetSubject(subject)
	}
	if r.Reason != "" {
		ev.SetExtension(ReasonExtension, string(r.Reason))
	}
	for k, v := range s.extensions {
		ev.SetExtension(k, v)
	}
	if err := ev.SetData(cloudevents.ApplicationJSON, clip.Strings(r, clip.Max)); err != nil {
		return ev, err
	}
	return ev, ev.Validate()
}

// Type is the event type of an action.
func Type(a outcome.Action) string { return TypePrefix + string(a) + TypeSuffix }

// Subject names the workload a result is about, as namespace/Kind/name; a result about no
// workload (an alert naming none) has none.
func Subject(r outcome.Result) string {
	if r.Name == "" {
		return ""
	}
	return clip.String(r.Namespace+"/"+r.Kind+"/"+r.Name, clip.Max)
}

// Send queues the event for r and returns at once. When the queue is full, or the sink
// is closed, the event is dropped and counted.
func (s *Sink) Send(r outcome.Result) {
	if s == nil {
		return
	}
	ev, err := s.Event(r)
	if err != nil {
		s.end("failed", &s.failed, fmt.Errorf("CloudEvent for %s: %w", r.Action, err))
		return
	}
	if s.closed.Load() {
		s.end("dropped", &s.dropped, nil)
		return
	}
	select {
	case s.queue <- ev:
	default:
		s.end("dropped", &s.dropped, nil)
	}
}

// run sends the queued events one at a time until Close, then what is left.
func (s *Sink) run() {
	defer close(s.done)
	for {
		select {
		case ev := <-s.queue:
			s.send(ev)
		case <-s.closing:
			for {
				select {
				case ev := <-s.queue:
					s.send(ev)
				default:
					return
				}
			}
		}
	}
}

func (s *Sink) send(ev cloudevents.Event) {
	if s.base.Err() != nil {
		s.end("dropped", &s.dropped, nil)
		return
	}
	ctx, cancel := context.WithTimeout(s.base, s.sendTimeout)
	defer cancel()
	if res := s.client.Send(ctx, ev); !cloudevents.IsACK(res) {
		s.end("failed", &s.failed, fmt.Errorf("sending %s about %q to K_SINK: %w", ev.Type(), ev.Subject(), res))
		return
	}
	s.end("sent", &s.sent, nil)
}

func (s *Sink) end(result string, n *atomic.Int64, err error) {
	n.Add(1)
	if s.OnDone != nil {
		s.OnDone(result)
	}
	if err != nil && s.OnError != nil {
		s.OnError(err)
	}
}

// Counts returns what became of the events so far.
func (s *Sink) Counts() Counts {
	return Counts{Sent: s.sent.Load(), Failed: s.failed.Load(), Dropped: s.dropped.Load()}
}

// Close sends the events queued, until ctx ends; those still queued then are dropped and
// counted, and the send in flight is cancelled. Events sent after Close are dropped.
func (s *Sink) Close(ctx context.Context) error {
	if s == nil {
		return nil
	}
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.closing)
	})
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
	}
	s.abort()
	<-s.done
	return fmt.Errorf("CloudEvents sink: stopped before every event was sent (%d dropped in all): %w", s.dropped.Load(), ctx.Err())
}
