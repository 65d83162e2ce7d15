// Package function is an Alertmanager webhook receiver that rolls a workload back to its
// last good revision, as `kubectl rollout undo` would, when an alert says its rollout
// went bad. It fits Knative Functions' instanced Go HTTP contract (New, Handle, Start,
// Stop, Ready, Alive); cmd/rollback serves the same function with
// functions-framework-go for kservice.yaml and local runs.
//
// A request goes decode (decode.go) → the pipeline (internal/pipeline: lookups → targets →
// guards → undo → report) → reply (reply.go); package outcome says what each result means
// and which HTTP status it gets.
package function

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"

	automemlimit "github.com/KimMachineGun/automemlimit/memlimit"
	"go.uber.org/zap"
	"knative.dev/pkg/logging"

	"github.com/sre-kit/alert-rollback/internal/budget"
	"github.com/sre-kit/alert-rollback/internal/clip"
	"github.com/sre-kit/alert-rollback/internal/gitops"
	"github.com/sre-kit/alert-rollback/internal/memlimit"
	"github.com/sre-kit/alert-rollback/internal/outcome"
	"github.com/sre-kit/alert-rollback/internal/pipeline"
	"github.com/sre-kit/alert-rollback/internal/report"
	"github.com/sre-kit/alert-rollback/internal/target"
	"github.com/sre-kit/alert-rollback/internal/undo"
)

// Function is the rollback function. Its zero value is not usable: create it with New and
// configure it with Start.
//
// func's runtime (knative.dev/func-go) opens its port and serves before Start has finished:
// it runs Start in a goroutine. So Start builds everything into a started value and
// publishes it at once when it is done; Handle, Ready and Authorized load it once, and
// until it is there a notification is answered 503 (Alertmanager sends it again), never
// judged on a half-built configuration.
type Function struct {
	state atomic.Pointer[started]
	// lifecycle orders Start's publishing against Stop, which may come first: a process told
	// to stop while starting must not go on to serve.
	lifecycle sync.Mutex
	starting  bool
	stopped   bool
	inflight  inflight
	// newClient builds the Kubernetes clients and finds the function's own namespace;
	// tests replace it with fakes.
	newClient func(config) (clients, error)
	// newLogger builds the logger; tests replace it to keep their output quiet.
	newLogger func() *zap.SugaredLogger
	// memoryLimit reports the container's memory limit (its cgroup's); tests replace it.
	memoryLimit automemlimit.Provider
}

// started is the function once Start has finished: its configuration and clients, never
// changed afterwards.
type started struct {
	cfg      config
	log      *zap.SugaredLogger
	pipeline *pipeline.Pipeline
	// slots bounds the notifications handled at once, whatever server runs the function:
	// cmd/rollback bounds them in front as well, func's runtime does not.
	slots chan struct{}
	// liveness answers kubelet's liveness probe on the pod's own address (liveness.go);
	// nil unless ROLLBACK_LIVENESS_ADDRESS is set.
	liveness *http.Server
	// tell sends the results as CloudEvents and counts them (telemetry.go); each part is
	// nil unless its setting is there.
	tell *telemetry
}

// New returns an unstarted Function. func calls it once per process.
func New() *Function {
	return &Function{newClient: kubeClient, memoryLimit: automemlimit.FromCgroup, newLogger: func() *zap.SugaredLogger {
		log, _ := logging.NewLogger("", "info")
		return log.Named("alert-rollback")
	}}
}

// Start configures the function from cfg (the environment: see the README for every
// setting) and builds its Kubernetes client, once. It refuses to start without credentials
// for callers unless ROLLBACK_ALLOW_UNAUTHENTICATED=true.
func (f *Function) Start(ctx context.Context, cfg map[string]string) error {
	c, err := ParseConfig(cfg)
	if err != nil {
		return err
	}
	return f.StartConfig(ctx, c)
}

// StartConfig is Start with the settings already parsed: cmd/rollback parses them once
// and sizes its server by them too. The function serves once it has returned nil; a second
// Start, and a Start after Stop, are refused.
func (f *Function) StartConfig(ctx context.Context, cfg Config) error {
	f.lifecycle.Lock()
	if f.starting || f.stopped {
		f.lifecycle.Unlock()
		if f.stopped {
			return errStopped
		}
		return errStartedAlready
	}
	f.starting = true
	f.lifecycle.Unlock()

	c := cfg.c
	// The heap is bounded here rather than by automemlimit's init in a main, so it holds
	// under func's runtime too, and the log says what the limit is.
	memory, err := memlimit.Set(f.memoryLimit)
	if err != nil {
		return err
	}
	// Every log line is clipped where it is written, whatever a field holds (see clip.Core).
	s := &started{cfg: c, log: f.newLogger().Desugar().WithOptions(zap.WrapCore(clip.Core)).Sugar()}
	cs, err := f.newClient(c)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	client, ownNamespace := cs.kube, cs.namespace
	resolver := &target.Resolver{Client: client, Allowed: c.allowed(ownNamespace),
		OwnNamespace: ownNamespace, DefaultNamespace: c.defaultNamespace, ReadPods: c.readPods}
	// The budget's Lease lives in the function's own namespace, shared by its replicas. It
	// keeps the cooldown too, where the workload's owners cannot delete it.
	g := pipeline.NewGate(budget.New(client.Leases(ownNamespace), ownNamespace, c.budget, budget.Options{Cooldown: c.cooldown}),
		gitops.New(cs.dynamic, cs.discovery, c.gitops, c.argoCDNamespace, c.allowed(ownNamespace)), s.log)
	undoer := undo.New(client, undo.Options{DryRun: c.dryRun, Cooldown: c.cooldown, MaxAge: c.maxAge, Gate: g})
	s.pipeline = pipeline.New(pipeline.Config{Match: c.match, MaxAlerts: c.maxAlerts, MaxTargets: c.maxTargets},
		s.log, resolver, undoer, report.NewEvents(client, "alert-rollback"))
	s.slots = make(chan struct{}, c.maxConcurrent)
	if s.tell, err = startTelemetry(ctx, c, ownNamespace, s.log); err != nil {
		s.pipeline.Events.Shutdown()
		return err
	}
	if c.livenessAddress != "" {
		if s.liveness, err = startLiveness(c.livenessAddress, f.Alive); err != nil {
			_ = s.close(ctx)
			return err
		}
	}
	if err := f.publish(s); err != nil {
		_ = s.close(ctx)
		return err
	}
	if c.authToken == "" {
		s.log.Warn("ROLLBACK_ALLOW_UNAUTHENTICATED=true: anyone who can reach this function can trigger rollbacks")
	}
	s.log.Infow("started", "namespace", ownNamespace, "allowedNamespaces", c.namespaces,
		"match", c.match, "dryRun", c.dryRun, "cooldown", c.cooldown.String(), "maxAge", c.maxAge.String(), "maxTargets", c.maxTargets, "readPods", c.readPods,
		"budget", c.budget.String(), "gitops", c.gitops, "argoCDNamespace", c.argoCDNamespace, "memory", memory,
		"cloudEventsSink", c.sinkURL != "", "otlpMetrics", c.otlp)
	return nil
}

// Errors of the lifecycle: Start after Stop, or a second time.
var (
	errStopped        = errors.New("stopped before Start finished")
	errStartedAlready = errors.New("already started")
)

// publish makes s the function that serves, unless Stop came first.
func (f *Function) publish(s *started) error {
	f.lifecycle.Lock()
	defer f.lifecycle.Unlock()
	if f.stopped {
		return errStopped
	}
	f.state.Store(s)
	return nil
}

// Stop lets the notifications in flight finish (up to ctx's deadline) and refuses new ones
// with 503, which Alertmanager retries, possibly on another replica. It may come before
// Start has finished: Start then returns an error and the function never serves.
func (f *Function) Stop(ctx context.Context) error {
	f.lifecycle.Lock()
	f.stopped = true
	s := f.state.Load()
	f.lifecycle.Unlock()
	if s != nil {
		s.log.Info("stopping: new notifications get 503, those in flight finish")
	}
	err := f.inflight.drain(ctx)
	if s != nil {
		// Every answer is written: what they decided is sent and counted now, before the
		// process ends (a function scaled to zero is stopped right after its last answer).
		if terr := s.close(ctx); terr != nil {
			s.log.Warnw("telemetry not all delivered", "error", terr)
		}
		_ = s.log.Sync()
	}
	return err
}

// close releases what Start built: the Events sink, the liveness server, and the
// CloudEvents and counters, flushed within a bounded time.
func (s *started) close(ctx context.Context) error {
	s.pipeline.Events.Shutdown()
	if s.liveness != nil {
		_ = s.liveness.Shutdown(ctx)
	}
	return s.tell.close(ctx)
}

// Ready reports whether the function can take notifications: started and not stopping.
func (f *Function) Ready(ctx context.Context) (bool, error) {
	if f.state.Load() == nil {
		return false, errors.New("not started")
	}
	if f.inflight.draining() {
		return false, errors.New("stopping")
	}
	return true, nil
}

// Alive reports whether the process is healthy; it has no state that can go bad.
func (f *Function) Alive(ctx context.Context) (bool, error) { return true, nil }

// Handle answers one Alertmanager notification; until Start has finished, and once Stop
// has begun, with 503 and Retry-After.
func (f *Function) Handle(w http.ResponseWriter, r *http.Request) {
	if !f.inflight.begin() {
		refuse(w, outcome.ErrStopping)
		return
	}
	defer f.inflight.end()
	s := f.state.Load()
	if s == nil {
		refuse(w, outcome.ErrStarting)
		return
	}
	s.handle(w, r)
}

// handle answers a notification with the function started.
func (s *started) handle(w http.ResponseWriter, r *http.Request) {
	// Only a caller with the token takes a slot (others get 401 from decode, at once), and
	// it takes it before its body is read, so a burst cannot pile bodies up in memory.
	if s.authorized(r) {
		select {
		case s.slots <- struct{}{}:
			defer func() { <-s.slots }()
		default:
			s.fail(w, outcome.ErrBusy)
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.requestTimeout)
	defer cancel()

	in, err := s.decode(r)
	if err != nil {
		s.fail(w, err)
		return
	}
	resp := s.pipeline.Run(ctx, in.msg)
	s.reply(ctx, w, in, resp)
	// Send the answer now, before this request stops counting as in flight: Stop waits
	// for in-flight requests, and the process may exit right after.
	_ = http.NewResponseController(w).Flush()
	// Then tell the sink and the counters: queued, never waited for.
	s.tell.results(context.WithoutCancel(ctx), resp.Results)
}
