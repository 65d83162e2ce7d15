package function

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/sre-kit/alert-rollback/internal/alert"
	"github.com/sre-kit/alert-rollback/internal/budget"
	"github.com/sre-kit/alert-rollback/internal/gitops"
)

// config is every setting, read from the map Start receives (the process environment under
// func and cmd/rollback), so tests hand settings in without touching globals.
type config struct {
	authToken string
	// authTokenFile, when set, is where authToken came from; it is re-read when it changes.
	authTokenFile        *tokenFile
	allowUnauthenticated bool
	match                alert.Matcher
	// namespaces allowed; "*" allows all; empty means only the function's own.
	namespaces []string
	// defaultNamespace is the namespace of alerts that name a workload other than a pod
	// without a namespace label; empty refuses them.
	defaultNamespace string
	maxBodyBytes     int64
	cooldown         time.Duration
	maxAge           time.Duration
	maxTargets       int
	// maxAlerts bounds the firing, matching alerts of one notification that are looked at:
	// each may cost a lookup (ROLLBACK_MAX_ALERTS).
	maxAlerts int
	dryRun    bool
	// readPods reads every pod an alert names instead of trusting a name its
	// Deployment's ReplicaSet list confirms (target.Resolver.ReadPods).
	readPods bool
	// budget bounds the undos across all workloads and replicas (ROLLBACK_BUDGET).
	budget budget.Spec
	// gitops is what to do with a workload Argo CD or Flux owns; argoCDNamespace is where
	// Argo CD's Applications live.
	gitops          gitops.Mode
	argoCDNamespace string
	apiTimeout      time.Duration
	requestTimeout  time.Duration
	// maxConcurrent notifications (with the right token) are handled at once; the next
	// get 503 before their body is read.
	maxConcurrent int
	qps           float32
	burst         int
	// livenessAddress is where the function answers kubelet's liveness probe itself
	// (ROLLBACK_LIVENESS_ADDRESS, see liveness.go); empty: it does not.
	livenessAddress string
	// sinkURL is K_SINK, where every result goes as a CloudEvent (telemetry.go); empty: none
	// is sent. ceOverrides is K_CE_OVERRIDES, extensions Knative asks every event to carry.
	sinkURL, ceOverrides string
	// service is K_SERVICE, the function's name as Knative serves it (the events' source).
	service string
	// otlp is true when an OTLP endpoint is set: the counters are pushed there (telemetry.go).
	otlp bool
}

// Defaults, documented in the README.
const (
	defaultMaxBodyBytes = 1 << 20
	// maxMaxBodyBytes bounds ROLLBACK_MAX_BODY_BYTES: the body is held in memory.
	maxMaxBodyBytes   = 64 << 20
	defaultCooldown   = 10 * time.Minute
	defaultMaxAge     = time.Hour
	defaultMaxTargets = 10
	// At most three requests a lookup, through client-go's 50 QPS: about 6 s for 100,
	// well inside the 20 s a notification has.
	defaultMaxAlerts  = 100
	defaultAPITimeout = 5 * time.Second
	// func's HTTP server has a 30 s write timeout: answer well inside it.
	defaultRequestTimeout = 20 * time.Second
	// kservice.yaml's and func.yaml's containerConcurrency.
	defaultMaxConcurrent = 10
	defaultQPS           = 50
	defaultBurst         = 100
)

// errConfig marks a setting the function cannot start with.
var errConfig = errors.New("invalid configuration")

// removedSettings are settings the function no longer reads, with what replaces each. One
// still set stops the function at start: ignoring it would silently drop what its
// operator meant.
var removedSettings = map[string]string{
	"ROLLBACK_SERVER_MAX_CONCURRENT":      "renamed ROLLBACK_MAX_CONCURRENT (it bounds both runtimes)",
	"ROLLBACK_MEMORY_LIMIT":               "removed: the limit is read from the container's cgroup; set GOMEMLIMIT instead",
	"ROLLBACK_SERVER_MAX_HEADER_BYTES":    "removed: fixed at 16 KiB (README, Hostile connections)",
	"ROLLBACK_SERVER_READ_HEADER_TIMEOUT": "removed: fixed at 5s (README, Hostile connections)",
	"ROLLBACK_SERVER_READ_TIMEOUT":        "removed: fixed at 15s (README, Hostile connections)",
	"ROLLBACK_SERVER_WRITE_TIMEOUT":       "removed: fixed at 30s (README, Hostile connections)",
	"ROLLBACK_SERVER_IDLE_TIMEOUT":        "removed: fixed at 60s (README, Hostile connections)",
}

// Config is every setting, parsed once (ParseConfig): the function's own and the bound
// cmd/rollback's server applies in front of it.
type Config struct{ c config }

// MaxConcurrent is how many notifications with the right token are handled at once
// (ROLLBACK_MAX_CONCURRENT).
func (c Config) MaxConcurrent() int { return c.c.maxConcurrent }

// ParseConfig reads every setting from env (the process environment under func and
// cmd/rollback). Every setting that is wrong is named in the error, which wraps errConfig.
func ParseConfig(env map[string]string) (Config, error) {
	c, err := parseConfig(env)
	return Config{c}, err
}

func parseConfig(env map[string]string) (config, error) {
	c := config{
		maxBodyBytes:   defaultMaxBodyBytes,
		cooldown:       defaultCooldown,
		maxAge:         defaultMaxAge,
		maxTargets:     defaultMaxTargets,
		maxAlerts:      defaultMaxAlerts,
		apiTimeout:     defaultAPITimeout,
		requestTimeout: defaultRequestTimeout,
		maxConcurrent:  defaultMaxConcurrent,
		qps:            defaultQPS,
		burst:          defaultBurst,
	}
	var errs []error
	check := func(name string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}

	for _, name := range slices.Sorted(maps.Keys(removedSettings)) {
		if _, ok := env[name]; ok {
			check(name, fmt.Errorf("no longer read: %s", removedSettings[name]))
		}
	}

	c.authToken = strings.TrimSpace(env["ROLLBACK_AUTH_TOKEN"])
	if file := env["ROLLBACK_AUTH_TOKEN_FILE"]; file != "" {
		if c.authToken != "" {
			check("ROLLBACK_AUTH_TOKEN_FILE", errors.New("set either it or ROLLBACK_AUTH_TOKEN, not both"))
		}
		c.authTokenFile = &tokenFile{path: file}
		c.authToken = c.authTokenFile.get()
		if _, err := os.Stat(file); err != nil {
			check("ROLLBACK_AUTH_TOKEN_FILE", err)
		} else if c.authToken == "" {
			check("ROLLBACK_AUTH_TOKEN_FILE", fmt.Errorf("%s is empty", file))
		}
	}
	var err error
	c.allowUnauthenticated, err = parseBool(env, "ROLLBACK_ALLOW_UNAUTHENTICATED")
	check("ROLLBACK_ALLOW_UNAUTHENTICATED", err)
	if c.authToken == "" && c.authTokenFile == nil && !c.allowUnauthenticated {
		check("ROLLBACK_AUTH_TOKEN", errors.New("no credentials configured: set ROLLBACK_AUTH_TOKEN or ROLLBACK_AUTH_TOKEN_FILE (or ROLLBACK_ALLOW_UNAUTHENTICATED=true, never in production)"))
	}

	match := alert.DefaultMatch
	if v, ok := env["ROLLBACK_MATCH"]; ok {
		match = v
	}
	c.match, err = alert.ParseMatcher(match)
	check("ROLLBACK_MATCH", err)

	for _, ns := range strings.Split(env["ROLLBACK_NAMESPACES"], ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			// A misspelt namespace would never match: the function would silently do nothing there.
			if errs := validation.IsDNS1123Label(ns); ns != "*" && len(errs) > 0 {
				check("ROLLBACK_NAMESPACES", fmt.Errorf("%q: %s", ns, strings.Join(errs, "; ")))
			}
			c.namespaces = append(c.namespaces, ns)
		}
	}

	if ns := strings.TrimSpace(env["ROLLBACK_DEFAULT_NAMESPACE"]); ns != "" {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			check("ROLLBACK_DEFAULT_NAMESPACE", fmt.Errorf("%q: %v", ns, errs))
		}
		c.defaultNamespace = ns
	}

	if v := env["ROLLBACK_MAX_BODY_BYTES"]; v != "" {
		c.maxBodyBytes, err = strconv.ParseInt(v, 10, 64)
		if err == nil && (c.maxBodyBytes <= 0 || c.maxBodyBytes > maxMaxBodyBytes) {
			err = fmt.Errorf("must be between 1 and %d", maxMaxBodyBytes)
		}
		check("ROLLBACK_MAX_BODY_BYTES", err)
	}
	c.cooldown, err = parseDuration(env, "ROLLBACK_COOLDOWN", c.cooldown, true)
	check("ROLLBACK_COOLDOWN", err)
	c.maxAge, err = parseDuration(env, "ROLLBACK_MAX_AGE", c.maxAge, true)
	check("ROLLBACK_MAX_AGE", err)
	c.apiTimeout, err = parseDuration(env, "ROLLBACK_API_TIMEOUT", c.apiTimeout, false)
	check("ROLLBACK_API_TIMEOUT", err)
	if v := env["ROLLBACK_MAX_TARGETS"]; v != "" {
		c.maxTargets, err = strconv.Atoi(v)
		if err == nil && c.maxTargets <= 0 {
			err = errors.New("must be positive")
		}
		check("ROLLBACK_MAX_TARGETS", err)
	}
	if v := env["ROLLBACK_MAX_ALERTS"]; v != "" {
		c.maxAlerts, err = strconv.Atoi(v)
		if err == nil && (c.maxAlerts < 1 || c.maxAlerts > 10000) {
			err = errors.New("must be between 1 and 10000")
		}
		check("ROLLBACK_MAX_ALERTS", err)
	}
	if v := env["ROLLBACK_MAX_CONCURRENT"]; v != "" {
		c.maxConcurrent, err = strconv.Atoi(v)
		if err == nil && (c.maxConcurrent < 1 || c.maxConcurrent > 1000) {
			err = errors.New("must be between 1 and 1000")
		}
		check("ROLLBACK_MAX_CONCURRENT", err)
	}
	c.dryRun, err = parseBool(env, "ROLLBACK_DRY_RUN")
	check("ROLLBACK_DRY_RUN", err)
	c.readPods, err = parseBool(env, "ROLLBACK_READ_PODS")
	check("ROLLBACK_READ_PODS", err)
	spec := budget.Default
	if v := env["ROLLBACK_BUDGET"]; v != "" {
		spec = v
	}
	c.budget, err = budget.Parse(spec)
	check("ROLLBACK_BUDGET", err)
	c.gitops, err = gitops.ParseMode(env["ROLLBACK_GITOPS"])
	check("ROLLBACK_GITOPS", err)
	c.argoCDNamespace = gitops.DefaultArgoCDNamespace
	if v := strings.TrimSpace(env["ROLLBACK_ARGOCD_NAMESPACE"]); v != "" {
		if errs := validation.IsDNS1123Label(v); len(errs) > 0 {
			check("ROLLBACK_ARGOCD_NAMESPACE", fmt.Errorf("%q: %s", v, strings.Join(errs, "; ")))
		}
		c.argoCDNamespace = v
	}
	if v := env["ROLLBACK_LIVENESS_ADDRESS"]; v != "" {
		check("ROLLBACK_LIVENESS_ADDRESS", parseLivenessAddress(v))
		c.livenessAddress = v
	}
	c.sinkURL, c.ceOverrides, c.service = strings.TrimSpace(env["K_SINK"]), env["K_CE_OVERRIDES"], strings.TrimSpace(env["K_SERVICE"])
	if c.sinkURL != "" {
		check("K_SINK", checkSink(c.sinkURL, c.ceOverrides))
	}
	c.otlp, err = parseOTLP(env)
	check("OTEL_EXPORTER_OTLP_PROTOCOL", err)
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("%w: %w", errConfig, err)
	}
	return c, nil
}

func parseBool(env map[string]string, name string) (bool, error) {
	v := env[name]
	if v == "" {
		return false, nil
	}
	return strconv.ParseBool(v)
}

func parseDuration(env map[string]string, name string, def time.Duration, zeroOK bool) (time.Duration, error) {
	v := env[name]
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err == nil && (d < 0 || (d == 0 && !zeroOK)) {
		err = fmt.Errorf("%s is out of range", v)
	}
	return d, err
}

// systemNamespaces hold the cluster's own components. `*` does not reach them: rolling back
// kube-system's DaemonSets from an alert is a decision a person must make by listing it.
var systemNamespaces = map[string]bool{"kube-system": true, "kube-public": true, "kube-node-lease": true}

// allowed reports whether the function may act in namespace: its own when
// ROLLBACK_NAMESPACES is empty; else those listed; `*` stands for every namespace but the
// system ones, which only a listing by name allows.
func (c config) allowed(own string) func(string) bool {
	return func(namespace string) bool {
		if len(c.namespaces) == 0 {
			return namespace == own
		}
		for _, ns := range c.namespaces {
			if ns == namespace || ns == "*" && !systemNamespaces[namespace] {
				return true
			}
		}
		return false
	}
}
