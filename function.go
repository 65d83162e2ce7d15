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
type Function struct {
	cfg      config
	log      *zap.SugaredLogger
	pipeline *pipeline.Pipeline
	inflight inflight
	// slots bounds the notifications handled at once, whatever server runs the function:
	// cmd/rollback bounds them in front as well, func's runtime does not.
	slots chan struct{}
	// newClient builds the Kubernetes clients and finds the function's own namespace;
	// tests replace it with fakes.
	newClient func(config) (clients, error)
	// newLogger builds the logger; tests replace it to keep their output quiet.
	newLogger func() *zap.SugaredLogger
	// memoryLimit reports the container's memory limit (its cgroup's); tests replace it.
	memoryLimit automemlimit.Provider
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
// and sizes its server by them too.
func (f *Function) StartConfig(ctx context.Context, cfg Config) error {
	c := cfg.c
	// The heap is bounded here rather than by automemlimit's init in a main, so it holds
	// under func's runtime too, and the log says what the limit is.
	memory, err := memlimit.Set(f.memoryLimit)
	if err != nil {
		return err
	}
	f.cfg = c
	// Every log line is clipped where it is written, whatever a field holds (see clip.Core).
	f.log = f.newLogger().Desugar().WithOptions(zap.WrapCore(clip.Core)).Sugar()
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
		gitops.New(cs.dynamic, cs.discovery, c.gitops, c.argoCDNamespace, c.allowed(ownNamespace)), f.log)
	undoer := undo.New(client, undo.Options{DryRun: c.dryRun, Cooldown: c.cooldown, MaxAge: c.maxAge, Gate: g})
	f.pipeline = pipeline.New(pipeline.Config{Match: c.match, MaxAlerts: c.maxAlerts, MaxTargets: c.maxTargets},
		f.log, resolver, undoer, report.NewEvents(client, "alert-rollback"))
	f.slots = make(chan struct{}, c.maxConcurrent)
	if c.authToken == "" {
		f.log.Warn("ROLLBACK_ALLOW_UNAUTHENTICATED=true: anyone who can reach this function can trigger rollbacks")
	}
	f.log.Infow("started", "namespace", ownNamespace, "allowedNamespaces", c.namespaces,
		"match", c.match, "dryRun", c.dryRun, "cooldown", c.cooldown.String(), "maxAge", c.maxAge.String(), "maxTargets", c.maxTargets, "readPods", c.readPods,
		"budget", c.budget.String(), "gitops", c.gitops, "argoCDNamespace", c.argoCDNamespace, "memory", memory)
	return nil
}

// Stop lets the notifications in flight finish (up to ctx's deadline) and refuses new ones
// with 503, which Alertmanager retries, possibly on another replica.
func (f *Function) Stop(ctx context.Context) error {
	if f.log != nil {
		f.log.Info("stopping: new notifications get 503, those in flight finish")
	}
	err := f.inflight.drain(ctx)
	if f.pipeline != nil {
		f.pipeline.Events.Shutdown()
	}
	if f.log != nil {
		_ = f.log.Sync()
	}
	return err
}

// Ready reports whether the function can take notifications: started and not stopping.
func (f *Function) Ready(ctx context.Context) (bool, error) {
	if f.pipeline == nil {
		return false, errors.New("not started")
	}
	if f.inflight.draining() {
		return false, errors.New("stopping")
	}
	return true, nil
}

// Alive reports whether the process is healthy; it has no state that can go bad.
func (f *Function) Alive(ctx context.Context) (bool, error) { return true, nil }

// Handle answers one Alertmanager notification.
func (f *Function) Handle(w http.ResponseWriter, r *http.Request) {
	if !f.inflight.begin() {
		f.fail(w, outcome.ErrStopping)
		return
	}
	defer f.inflight.end()
	// Only a caller with the token takes a slot (others get 401 from decode, at once), and
	// it takes it before its body is read, so a burst cannot pile bodies up in memory.
	if f.slots != nil && f.authorized(r) {
		select {
		case f.slots <- struct{}{}:
			defer func() { <-f.slots }()
		default:
			f.fail(w, outcome.ErrBusy)
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), f.cfg.requestTimeout)
	defer cancel()

	in, err := f.decode(r)
	if err != nil {
		f.fail(w, err)
		return
	}
	resp := f.pipeline.Run(ctx, in.msg)
	f.reply(ctx, w, in, resp)
	// Send the answer now, before this request stops counting as in flight: Stop waits
	// for in-flight requests, and the process may exit right after.
	_ = http.NewResponseController(w).Flush()
}
