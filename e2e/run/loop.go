package run

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
)

// The loop's timings. The shipped rules' `for:` (1m to 10m) and a real cluster's intervals
// (30s to 1m) are shortened to these; nothing else of the rules changes.
const (
	LoopInterval = time.Second
	LoopFor      = 3 * time.Second
	// loopTimeout bounds each wait of the loop: the slowest step is Knative's scale to
	// zero (its 6 s windows and the pod's shutdown), a minute on a loaded machine.
	loopTimeout = 4 * time.Minute
)

// Where the loop's servers listen inside the node's network namespace: Prometheus and the
// CloudEvents receiver on the node's address (the function's pod pushes to them),
// kube-state-metrics on the namespace's loopback (only Prometheus scrapes it).
var (
	promListen     = cluster.NodeIP + ":9090"
	receiverListen = cluster.NodeIP + ":9095"
	ksmListen      = "127.0.0.1:9180"
	ksmTelemetry   = "9181"
)

// Loop is the whole loop running on a cluster with a node and Knative: kube-state-metrics
// watching the apiserver, Prometheus scraping it and evaluating deploy/prometheus's rules,
// Alertmanager on the shipped configuration, the function as kservice.yaml's Knative
// Service at zero, and a CloudEvents receiver for what the function reports.
type Loop struct {
	Kube      *cluster.Cluster
	Dir       string
	Namespace string
	Logf      func(format string, args ...any)

	Prometheus   *Prometheus
	Alertmanager *notifyingAlertmanager
	KSM          *cluster.Process
	Receiver     *Receiver
	// Shortened says which `for:` the rules were loaded with instead of the shipped ones.
	Shortened []ShortenedFor
	// Began is when the loop started: every series it checks is newer.
	Began time.Time

	watch        *podWatch
	stopWatch    context.CancelFunc
	crashCreated time.Time
}

// LoopOptions configure StartLoop.
type LoopOptions struct {
	Kube *cluster.Cluster
	// Dir holds every file and log of the loop's components.
	Dir string
	// KService is the path of kservice.yaml; Image replaces its image.
	KService, Image string
	// Namespace is where the function and the workloads live; it must not exist yet.
	Namespace string
	Logf      func(format string, args ...any)
}

// StartLoop starts every component of the loop and returns once the function has scaled
// to zero. Stop stops what it started.
func StartLoop(ctx context.Context, o LoopOptions) (_ *Loop, err error) {
	l := &Loop{Kube: o.Kube, Dir: o.Dir, Namespace: o.Namespace, Logf: o.Logf, Began: time.Now()}
	defer func() {
		if err != nil {
			l.Stop()
		}
	}()
	k, ns := l.Kube, l.Namespace
	token := "loop-token-" + ns
	if err := k.CreateNamespace(ctx, ns); err != nil {
		return nil, err
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "alert-rollback-auth"}, StringData: map[string]string{"token": token}}
	if _, err := k.Clientset.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	// A pod crash looping outside any workload, started first: the kubelet reports
	// CrashLoopBackOff only minutes into a crash loop (WaitCrashLoopBackOff). It gives the
	// shipped crash-loop rule its waiting-reason series, and the rule (which keeps only pods
	// a workload owns) must not fire for it.
	if err := l.crashLoopingPod(ctx); err != nil {
		return nil, err
	}
	if l.Receiver, err = StartReceiver(k, receiverListen); err != nil {
		return nil, err
	}
	l.Logf("CloudEvents receiver (sdk-go) listening on %s", receiverListen)
	if l.KSM, err = startKSM(ctx, k, l.Dir); err != nil {
		return nil, err
	}
	l.Logf("kube-state-metrics v2.20.0 watching the apiserver, serving on %s", ksmListen)

	// Alertmanager on the shipped configuration: only its url and credentials_file change.
	creds := filepath.Join(l.Dir, "token")
	if err := os.WriteFile(creds, []byte(token), 0o600); err != nil {
		return nil, err
	}
	amOpts := AlertmanagerOptions{
		Dir: l.Dir, Name: "alertmanager",
		WebhookURL:      "http://alert-rollback." + ns + ".svc.cluster.local/",
		CredentialsFile: creds,
		Wrap:            k.Wrap(), HTTP: k.HTTP,
	}
	am, err := StartAlertmanager(ctx, amOpts)
	if err != nil {
		return nil, err
	}
	l.Alertmanager = &notifyingAlertmanager{am}
	l.Logf("Alertmanager on deploy/alertmanager/alertmanager.yml, changed only in: url: %s, credentials_file: %s", amOpts.WebhookURL, creds)

	rules, err := l.rewriteRules()
	if err != nil {
		return nil, err
	}
	l.Prometheus, err = StartPrometheus(ctx, PrometheusOptions{
		Dir: l.Dir, Listen: promListen, Interval: LoopInterval,
		Targets:      map[string]string{"kube-state-metrics": ksmListen},
		Alertmanager: strings.TrimPrefix(am.URL, "http://"),
		RuleFiles:    rules, Wrap: k.Wrap(), HTTP: k.HTTP,
	})
	if err != nil {
		return nil, err
	}
	l.Logf("Prometheus v0.316.0 on %s (OTLP receiver on): scrape and evaluation interval %s (shipped: Prometheus's defaults, 1m)", promListen, LoopInterval)

	// The function pod count, watched from the start.
	l.watch = &podWatch{}
	watchCtx, stop := context.WithCancel(context.Background())
	l.stopWatch = stop
	go l.watch.run(watchCtx, k, ns, func(string, ...any) {})

	began := time.Now()
	if err := ApplyKService(ctx, k, l.Dir, o.KService, ns, o.Image, func(svc *servingv1.Service) {
		c := &svc.Spec.Template.Spec.Containers[0]
		c.Env = append(c.Env, SinkEnv()...)
	}); err != nil {
		return nil, err
	}
	if out, err := k.Kubectl(ctx, "wait", "-n", ns, "--for=condition=Ready", "--timeout=180s", "ksvc/alert-rollback"); err != nil {
		return nil, fmt.Errorf("kservice.yaml not Ready: %w: %s", err, out)
	}
	l.Logf("kservice.yaml Ready in %s, with %s", time.Since(began).Round(time.Millisecond), envText(SinkEnv()))
	if err := l.watch.waitFor(ctx, 0); err != nil {
		return nil, fmt.Errorf("the function did not scale to zero: %w", err)
	}
	l.Logf("the function scaled to zero")
	return l, nil
}

// SinkEnv is what the loop sets on the Knative Service for the function's reports: K_SINK
// (as Knative's SinkBinding would) to the CloudEvents receiver, and the OTLP endpoint to
// Prometheus's OTLP receiver, both on the node's address, which pods reach.
func SinkEnv() []corev1.EnvVar {
	return []corev1.EnvVar{
		{Name: "K_SINK", Value: "http://" + receiverListen},
		{Name: "OTEL_EXPORTER_OTLP_ENDPOINT", Value: "http://" + promListen + "/api/v1/otlp"},
		{Name: "OTEL_EXPORTER_OTLP_PROTOCOL", Value: "http/protobuf"},
		{Name: "OTEL_METRIC_EXPORT_INTERVAL", Value: "1000"},
	}
}

func envText(env []corev1.EnvVar) string {
	var parts []string
	for _, e := range env {
		parts = append(parts, e.Name+"="+e.Value)
	}
	return strings.Join(parts, " ")
}

// rewriteRules writes deploy/prometheus's rule files with only their `for:` shortened, and
// says what it shortened.
func (l *Loop) rewriteRules() ([]string, error) {
	files, err := ShippedRuleFiles()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		short, changed, err := ShortenFor(b, LoopFor)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		path := filepath.Join(l.Dir, filepath.Base(f))
		if err := os.WriteFile(path, short, 0o644); err != nil {
			return nil, err
		}
		out = append(out, path)
		for _, c := range changed {
			l.Logf("rule %s (deploy/prometheus/%s): for: %s shortened to %s", c.Alert, filepath.Base(f), c.From, c.To)
		}
		l.Shortened = append(l.Shortened, changed...)
	}
	return out, nil
}

// startKSM runs kube-state-metrics on the node with the admin kubeconfig, as it runs in a
// cluster with its ClusterRole: every resource it exports by default.
func startKSM(ctx context.Context, k *cluster.Cluster, dir string) (*cluster.Process, error) {
	bin, err := cluster.ToolPath("kube-state-metrics")
	if err != nil {
		return nil, err
	}
	host, port, _ := strings.Cut(ksmListen, ":")
	return cluster.StartServer(ctx, readyTimeout, func() (cluster.ProcessSpec, error) {
		return cluster.ProcessSpec{Name: "kube-state-metrics", LogPath: filepath.Join(dir, "kube-state-metrics.log"),
			Args: append(append([]string{}, k.Wrap()...), bin, "--kubeconfig", k.Kubeconfig,
				"--host", host, "--port", port, "--telemetry-host", host, "--telemetry-port", ksmTelemetry)}, nil
	}, cluster.HTTPReadyVia(k.HTTP, "http://"+ksmListen+"/healthz"))
}

// crashLoopingName is the bare pod whose container exits at once.
const crashLoopingName = "crash-looping"

// crashLoopingPod starts the bare pod whose container exits at once.
func (l *Loop) crashLoopingPod(ctx context.Context) error {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: crashLoopingName, Namespace: l.Namespace},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: new(int64),
			Containers:                    []corev1.Container{{Name: "app", Image: cluster.CrashImage, ImagePullPolicy: corev1.PullNever}},
		},
	}
	created, err := l.Kube.Clientset.CoreV1().Pods(l.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err == nil {
		l.crashCreated = created.CreationTimestamp.Time
	}
	return err
}

// WaitCrashLoopBackOff waits until Prometheus holds a CrashLoopBackOff sample of the crash
// looping pod, and returns how long after the pod's creation that was first seen.
//
// Kubernetes 1.35's kubelet syncs a crash-looping pod again when its back-off expires,
// and only then writes its status: CrashLoopBackOff is in the status between that sync and
// the restart, milliseconds, until a back-off outlasts the kubelet's 1-minute resync (80 s,
// the fourth crash), about 2 to 5 minutes into the loop. A fast loop ends before that.
func (l *Loop) WaitCrashLoopBackOff(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	sel := fmt.Sprintf(`kube_pod_container_status_waiting_reason{namespace=%q, pod=%q, reason="CrashLoopBackOff"}`, l.Namespace, crashLoopingName)
	var seen time.Time
	err := wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		s, err := l.Prometheus.Series(ctx, sel, l.Began, time.Now())
		seen = time.Now()
		return len(s) > 0, err
	})
	if err != nil {
		return 0, fmt.Errorf("no %s in Prometheus %s after the pod was created: %w", sel, time.Since(l.crashCreated).Round(time.Second), err)
	}
	return seen.Sub(l.crashCreated), nil
}

// Stop stops every component the loop started (the cluster is the caller's).
func (l *Loop) Stop() {
	if l.stopWatch != nil {
		l.stopWatch()
	}
	l.Prometheus.Stop()
	if l.Alertmanager != nil {
		l.Alertmanager.Stop()
	}
	if l.KSM != nil {
		l.KSM.Stop()
	}
	l.Receiver.Stop()
}

// Scenario is one bad rollout the loop must heal with no help: the Deployment Name at a
// good revision, then a bad one applied with kubectl, which makes Alert fire.
type Scenario struct {
	// Alert is the shipped rule that must fire.
	Alert string
	// Name is the Deployment's name.
	Name string
	// Good and Bad are the Deployment's manifests, applied with kubectl in turn.
	Good, Bad string
	// Failing reports, from the cluster, when the bad revision's pods are failing; FailingSource
	// says what it looks at.
	FailingSource string
	Failing       func(ctx context.Context, k *cluster.Cluster, ns string) (bool, error)
	// Labels picks the alert of this Deployment among the rule's (its namespace is added).
	Labels func(ctx context.Context, k *cluster.Cluster, ns string) (map[string]string, error)
}

// Step is one moment of the loop, timed from the bad rollout.
type Step struct {
	Name string
	At   time.Time
	// Source says which component the time comes from.
	Source string
}

// Timeline is what one scenario measured.
type Timeline struct {
	Alert, Deployment string
	Start             time.Time // the bad rollout: kubectl apply
	Steps             []Step
	// FunctionStarted and FunctionAnswered are the function's own log lines: its process
	// started, and its answer logged. Their difference is the function's own time.
	FunctionStarted, FunctionAnswered time.Time
	// FunctionRequests are the function's requests to the apiserver for this alert, from
	// the apiserver's audit log (with Options.Audit): its work, first to last.
	FunctionRequests []cluster.AuditEvent
	// NotifyTook is Alertmanager's own measure of its notification to the function, cold
	// start included.
	NotifyTook time.Duration
	// Answer is the function's action and reason for the Deployment.
	Answer string
}

// The steps of a timeline, in order.
const (
	StepFailing  = "pods failing"
	StepPending  = "alert pending"
	StepFiring   = "alert firing"
	StepNotified = "Alertmanager notifies the function"
	StepWoken    = "function pods 0 -> 1"
	StepAnswer   = "answer rolled-back"
	StepReady    = "good revision's pods Ready"
	StepResolved = "alert resolved"
	StepZero     = "function back to 0"
)

// At is the time of step name since the bad rollout (-1 if missing).
func (t Timeline) At(name string) time.Duration {
	for _, s := range t.Steps {
		if s.Name == name {
			return s.At.Sub(t.Start)
		}
	}
	return -1
}

// Healthy is when both the good revision was Ready and the alert resolved.
func (t Timeline) Healthy() time.Duration { return max(t.At(StepReady), t.At(StepResolved)) }

// Summary is the timeline's one line.
func (t Timeline) Summary() string {
	return fmt.Sprintf("loop: bad rollout -> healthy in %.1f s (firing %.1f s, rolled back %.1f s, Ready %.1f s, resolved %.1f s)",
		t.Healthy().Seconds(), t.At(StepFiring).Seconds(), t.At(StepAnswer).Seconds(), t.At(StepReady).Seconds(), t.At(StepResolved).Seconds())
}

// FunctionWork is the function's own time on this alert: from the apiserver's receipt of
// its first request to its answer to the last (-1 without an audit log).
func (t Timeline) FunctionWork() time.Duration {
	if len(t.FunctionRequests) == 0 {
		return -1
	}
	first, last := t.FunctionRequests[0].Received, t.FunctionRequests[0].Completed
	for _, e := range t.FunctionRequests {
		if e.Received.Before(first) {
			first = e.Received
		}
		if e.Completed.After(last) {
			last = e.Completed
		}
	}
	return last.Sub(first)
}

// FunctionShare says how much of the time to healthy the function itself took.
func (t Timeline) FunctionShare() string {
	total := t.Healthy().Seconds()
	process := t.FunctionAnswered.Sub(t.FunctionStarted)
	work := ""
	if w := t.FunctionWork(); w >= 0 {
		work = fmt.Sprintf("%d ms of work (%d API requests, first to last, apiserver's audit log: %.1f%% of %.1f s); ",
			w.Milliseconds(), len(t.FunctionRequests), 100*w.Seconds()/total, total)
	}
	return fmt.Sprintf("the function's own time: %s%d ms from its process start to its answer, waiting for Knative to route to it included (its log: %.1f%%); Alertmanager's notification took %d ms, the cold start included",
		work, process.Milliseconds(), 100*process.Seconds()/total, t.NotifyTook.Milliseconds())
}

// Lines are the steps, one line each, for people.
func (t Timeline) Lines() []string {
	out := []string{fmt.Sprintf("%s on Deployment %s, times since the bad rollout (kubectl apply):", t.Alert, t.Deployment)}
	for _, s := range t.Steps {
		out = append(out, fmt.Sprintf("  %+7.1f s  %-36s (%s)", s.At.Sub(t.Start).Seconds(), s.Name, s.Source))
	}
	return out
}

// Run plays s: the good revision, then the bad one with kubectl, and from then on it only
// watches: Prometheus fires the alert, Alertmanager notifies, Knative wakes the function,
// it rolls back, the good revision's pods are Ready, the alert resolves, the function scales
// to zero. Each time comes from the component that did the step.
func (l *Loop) Run(ctx context.Context, s Scenario) (tl Timeline, err error) {
	k, ns := l.Kube, l.Namespace
	tl = Timeline{Alert: s.Alert, Deployment: s.Name}
	if err := l.apply(ctx, s.Good); err != nil {
		return tl, err
	}
	if out, err := k.Kubectl(ctx, "rollout", "status", "-n", ns, "--timeout=120s", "deployment/"+s.Name); err != nil {
		return tl, fmt.Errorf("%s's good revision did not roll out: %w: %s", s.Name, err, out)
	}
	if err := l.watch.waitFor(ctx, 0); err != nil {
		return tl, fmt.Errorf("the function is not at zero: %w", err)
	}
	l.Logf("%s: Deployment %s at its good revision; the function at zero", s.Alert, s.Name)

	mark := l.watch.seen()
	audit, auditErr := k.AuditMark()
	tl.Start = time.Now()
	if err := l.apply(ctx, s.Bad); err != nil {
		return tl, err
	}
	l.Logf("%s: the bad revision applied with kubectl; from now on nothing is posted, only watched", s.Alert)
	step := func(name, source string, at time.Time) {
		tl.Steps = append(tl.Steps, Step{Name: name, At: at, Source: source})
		l.Logf("%s: %+.1f s %s", s.Alert, at.Sub(tl.Start).Seconds(), name)
	}

	at, err := poll(ctx, func(ctx context.Context) (bool, error) { return s.Failing(ctx, k, ns) })
	if err != nil {
		return tl, fmt.Errorf("%s's bad revision: pods not failing: %w", s.Name, err)
	}
	step(StepFailing, s.FailingSource, at)

	// The alert, in Prometheus: ALERTS samples carry the evaluation's own time.
	labels, err := s.Labels(ctx, k, ns)
	if err != nil {
		return tl, err
	}
	labels["namespace"] = ns
	labels["alertname"] = s.Alert
	sel := alertSelector(labels)
	var firing time.Time
	if _, err := poll(ctx, func(ctx context.Context) (bool, error) {
		firing, err = l.Prometheus.FirstSample(ctx, strings.Replace(sel, "{", `{alertstate="firing", `, 1), time.Since(tl.Start))
		return !firing.IsZero(), err
	}); err != nil {
		return tl, fmt.Errorf("Prometheus did not fire %s: %w\n%s", sel, err, l.rulesState(ctx))
	}
	pending, err := l.Prometheus.FirstSample(ctx, strings.Replace(sel, "{", `{alertstate="pending", `, 1), time.Since(tl.Start))
	if err != nil || pending.IsZero() {
		return tl, fmt.Errorf("no pending sample of %s before it fired: %v", sel, err)
	}
	step(StepPending, "Prometheus ALERTS{alertstate=\"pending\"}, first sample", pending)
	step(StepFiring, "Prometheus ALERTS{alertstate=\"firing\"}, first sample", firing)

	// Alertmanager's notification, from its own log: when it sent, and how long the
	// function (woken by Knative) took to answer.
	sent, took, err := l.Alertmanager.waitNotification(ctx, s.Alert)
	if err != nil {
		return tl, err
	}
	tl.NotifyTook = took
	step(StepNotified, "Alertmanager's log: Notify success minus its duration", sent)
	if err := l.watch.waitSeenSince(ctx, mark, 1); err != nil {
		return tl, fmt.Errorf("the notification did not wake the function: %w", err)
	}
	step(StepWoken, "function pod count, watched", l.watch.firstAtLeastSince(mark, 1))

	ans, err := l.waitAnswer(ctx, s.Name)
	if err != nil {
		return tl, err
	}
	tl.Answer, tl.FunctionStarted, tl.FunctionAnswered = ans.action+" "+ans.reason, ans.started, ans.at
	if ans.action != "rolled-back" {
		return tl, fmt.Errorf("the function answered %s for %s; want rolled-back", tl.Answer, s.Name)
	}
	step(StepAnswer, "the function's log line", ans.at)
	if auditErr == nil {
		events, err := k.AuditSince(ctx, audit)
		if err != nil {
			return tl, err
		}
		user := "system:serviceaccount:" + ns + ":alert-rollback"
		for _, e := range events {
			if e.User.Username == user && !e.Completed.After(ans.at.Add(time.Second)) {
				tl.FunctionRequests = append(tl.FunctionRequests, e)
			}
		}
		if len(tl.FunctionRequests) == 0 {
			return tl, fmt.Errorf("the apiserver's audit log has no request of %s for %s", user, s.Name)
		}
	}
	l.Receiver.Expect(ns, s.Name, "rolled-back")

	// Then three things happen at once: the good revision rolls out, the alert resolves,
	// and the function scales to zero.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	observe := func(name, source string, cond func(context.Context) (bool, error)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			at, err := poll(ctx, cond)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				return
			}
			tl.Steps = append(tl.Steps, Step{Name: name, At: at, Source: source})
		}()
	}
	observe(StepReady, "Deployment status, polled", func(ctx context.Context) (bool, error) {
		return rolledBack(ctx, k, ns, s.Name)
	})
	observe(StepResolved, "Prometheus's alerts API, polled", func(ctx context.Context) (bool, error) {
		alerts, err := l.Prometheus.Alerts(ctx)
		if err != nil {
			return false, err
		}
		for _, a := range alerts {
			if matches(a.Labels, labels) {
				return false, nil
			}
		}
		return true, nil
	})
	observe(StepZero, "function pod count, watched", func(context.Context) (bool, error) {
		h := l.watch.history()
		return h[len(h)-1] == 0, nil
	})
	wg.Wait()
	sortSteps(tl.Steps)
	for _, st := range tl.Steps[len(tl.Steps)-3:] {
		l.Logf("%s: %+.1f s %s", s.Alert, st.At.Sub(tl.Start).Seconds(), st.Name)
	}
	if len(errs) > 0 {
		return tl, errors.Join(errs...)
	}
	return tl, nil
}

// apply applies a manifest with kubectl, as a person rolling out would.
func (l *Loop) apply(ctx context.Context, manifest string) error {
	path := filepath.Join(l.Dir, fmt.Sprintf("manifest-%d.yaml", time.Now().UnixNano()))
	if err := os.WriteFile(path, []byte(manifest), 0o644); err != nil {
		return err
	}
	if out, err := l.Kube.Kubectl(ctx, "apply", "-n", l.Namespace, "-f", path); err != nil {
		return fmt.Errorf("kubectl apply: %w: %s", err, out)
	}
	return nil
}

// rulesState is Prometheus's view of its alerts and of the rules' health, for an error.
func (l *Loop) rulesState(ctx context.Context) string {
	var b strings.Builder
	if alerts, err := l.Prometheus.Alerts(ctx); err == nil {
		fmt.Fprintf(&b, "Prometheus's alerts: %v\n", alerts)
	}
	if rules, err := l.Prometheus.Rules(ctx); err == nil {
		for _, r := range rules {
			fmt.Fprintf(&b, "rule %s: health %s %s\n", r.Name, r.Health, r.LastError)
		}
	}
	return b.String()
}

// rolledBack reports whether the Deployment name is back at its good revision with every
// pod of it Ready: a third revision (the undo), observed, all replicas updated, ready and
// available, and no other pods left.
func rolledBack(ctx context.Context, k *cluster.Cluster, ns, name string) (bool, error) {
	d, err := k.Clientset.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, nil
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	st := d.Status
	return d.Annotations["deployment.kubernetes.io/revision"] == "3" && st.ObservedGeneration >= d.Generation &&
		st.UpdatedReplicas == want && st.ReadyReplicas == want && st.AvailableReplicas == want && st.Replicas == want, nil
}

func alertSelector(labels map[string]string) string {
	var parts []string
	for _, k := range sortedKeys(labels) {
		parts = append(parts, fmt.Sprintf("%s=%q", k, labels[k]))
	}
	return "ALERTS{" + strings.Join(parts, ", ") + "}"
}

func matches(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func sortSteps(steps []Step) {
	for i := 1; i < len(steps); i++ {
		for j := i; j > 0 && steps[j].At.Before(steps[j-1].At); j-- {
			steps[j], steps[j-1] = steps[j-1], steps[j]
		}
	}
}

// poll checks cond every 100 ms until it holds, and returns when it was first seen to.
func poll(ctx context.Context, cond func(context.Context) (bool, error)) (time.Time, error) {
	return pollFor(ctx, loopTimeout, cond)
}

// sinkTimeout bounds the wait for what the function reports: by then it has scaled to
// zero, so it has flushed everything on Stop; the wait covers delivery alone.
const sinkTimeout = 30 * time.Second

// pollFor is poll with its own timeout.
func pollFor(ctx context.Context, timeout time.Duration, cond func(context.Context) (bool, error)) (time.Time, error) {
	var at time.Time
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		ok, err := cond(ctx)
		if ok {
			at = time.Now()
		}
		return ok, err
	})
	return at, err
}

// Fields of Alertmanager's log lines (logfmt).
var (
	amTime     = regexp.MustCompile(`^time=(\S+)`)
	amDuration = regexp.MustCompile(` duration=(\S+)`)
)

// waitNotification waits for Alertmanager's first successful notification to the function
// about alertname, and returns when it was sent and how long it took, from Alertmanager's
// own log.
func (a *notifyingAlertmanager) waitNotification(ctx context.Context, alertname string) (time.Time, time.Duration, error) {
	var sent time.Time
	var took time.Duration
	_, err := poll(ctx, func(context.Context) (bool, error) {
		b, _ := os.ReadFile(a.LogPath)
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.Contains(line, `msg="Notify success"`) || !strings.Contains(line, "receiver=alert-rollback") || !strings.Contains(line, alertname) {
				continue
			}
			t, d := amTime.FindStringSubmatch(line), amDuration.FindStringSubmatch(line)
			if t == nil || d == nil {
				return false, fmt.Errorf("Alertmanager's log line has no time or duration: %s", line)
			}
			at, err := time.Parse(time.RFC3339Nano, t[1])
			if err != nil {
				return false, fmt.Errorf("Alertmanager's time %q: %w", t[1], err)
			}
			if took, err = time.ParseDuration(d[1]); err != nil {
				return false, fmt.Errorf("Alertmanager's duration %q: %w", d[1], err)
			}
			sent = at.Add(-took)
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		b, _ := os.ReadFile(a.LogPath)
		return sent, took, fmt.Errorf("Alertmanager did not notify the function of %s: %w\n--- Alertmanager's log (end) ---\n%s", alertname, err, lastLines(string(b), 15))
	}
	return sent, took, nil
}

// answer is the function's logged outcome for a workload.
type answer struct {
	action, reason string
	at, started    time.Time
}

var (
	logTime    = regexp.MustCompile(`"(?:ts|timestamp|time)":"([^"]+)"`)
	logStarted = regexp.MustCompile(`"(?:msg|message)":"started"`)
)

// waitAnswer waits for the function's outcome for the workload name in the log of the pod
// that answered (read while that pod still runs), and the time that pod's process logged
// that it started.
func (l *Loop) waitAnswer(ctx context.Context, name string) (answer, error) {
	var a answer
	var last string
	_, err := poll(ctx, func(ctx context.Context) (bool, error) {
		pods, err := l.Kube.Clientset.CoreV1().Pods(l.Namespace).List(ctx, metav1.ListOptions{LabelSelector: serviceLabel})
		if err != nil {
			return false, nil
		}
		for _, p := range pods.Items {
			out, err := l.Kube.Kubectl(ctx, "logs", "-n", l.Namespace, p.Name, "-c", "rollback")
			if err != nil {
				continue
			}
			last = out
			var started time.Time
			for _, line := range strings.Split(out, "\n") {
				at := parseLogTime(line)
				if logStarted.MatchString(line) {
					started = at
				}
				if strings.Contains(line, `"name":"`+name+`"`) && logField(line, "action") != "" {
					a = answer{action: logField(line, "action"), reason: logField(line, "reason"), at: at, started: started}
					return true, nil
				}
			}
		}
		return false, nil
	})
	if err != nil {
		return a, fmt.Errorf("the function logged no outcome for %s: %w\n%s", name, err, lastLines(last, 10))
	}
	if a.at.IsZero() || a.started.IsZero() {
		return a, fmt.Errorf("the function's log lines for %s carry no time or no start line:\n%s", name, lastLines(last, 10))
	}
	return a, nil
}

func parseLogTime(line string) time.Time {
	m := logTime.FindStringSubmatch(line)
	if m == nil {
		return time.Time{}
	}
	t, _ := time.Parse(time.RFC3339Nano, m[1])
	return t
}

// Receiver is a CloudEvents receiver (sdk-go's HTTP client) inside the node's network
// namespace, where the function's pods reach it: it keeps every event it gets.
type Receiver struct {
	mu       sync.Mutex
	events   []cloudevents.Event
	expected [][3]string
	stop     context.CancelFunc
	done     chan struct{}
}

// StartReceiver listens on address inside the node's namespace.
func StartReceiver(k *cluster.Cluster, address string) (*Receiver, error) {
	ln, err := k.Listen("tcp", address)
	if err != nil {
		return nil, err
	}
	c, err := cloudevents.NewClientHTTP(cehttp.WithListener(ln))
	if err != nil {
		ln.Close()
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	r := &Receiver{stop: stop, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		_ = c.StartReceiver(ctx, func(e cloudevents.Event) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.events = append(r.events, e)
		})
	}()
	return r, nil
}

// Stop stops the receiver.
func (r *Receiver) Stop() {
	if r == nil {
		return
	}
	r.stop()
	<-r.done
}

// Events returns the events received so far.
func (r *Receiver) Events() []cloudevents.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]cloudevents.Event(nil), r.events...)
}

// Expect records a result the function must have sent: the workload in ns and its action.
func (r *Receiver) Expect(ns, name, action string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expected = append(r.expected, [3]string{ns, name, action})
}

// Missing waits until every expected result arrived as a CloudEvent whose data is the
// result row and whose type names its action, and returns those still missing.
func (r *Receiver) Missing(ctx context.Context) []string {
	var missing []string
	_, _ = pollFor(ctx, sinkTimeout, func(context.Context) (bool, error) {
		missing = nil
		r.mu.Lock()
		expected := append([][3]string(nil), r.expected...)
		r.mu.Unlock()
		for _, want := range expected {
			if !r.has(want) {
				missing = append(missing, fmt.Sprintf("%s %s/%s", want[2], want[0], want[1]))
			}
		}
		return len(missing) == 0, nil
	})
	return missing
}

func (r *Receiver) has(want [3]string) bool {
	for _, e := range r.Events() {
		var row struct{ Namespace, Name, Action string }
		if err := json.Unmarshal(e.Data(), &row); err != nil {
			continue
		}
		if row.Namespace == want[0] && row.Name == want[1] && row.Action == want[2] && strings.Contains(e.Type(), want[2]) {
			return true
		}
	}
	return false
}

// firstAtLeastSince is when a count of at least n was first seen after mark.
func (w *podWatch) firstAtLeastSince(mark, n int) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := mark; i < len(w.counts); i++ {
		if w.counts[i] >= n {
			return w.at[i]
		}
	}
	return time.Time{}
}

// DeploymentManifest is a Deployment of the app image, one replica, with a readiness probe
// on readyPort, requesting cpu; progressDeadline 0 keeps Kubernetes' default.
func DeploymentManifest(name, cpu string, readyPort, progressDeadline int) string {
	pds := ""
	if progressDeadline > 0 {
		pds = fmt.Sprintf("\n  progressDeadlineSeconds: %d", progressDeadline)
	}
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
spec:
  replicas: 1%[4]s
  selector:
    matchLabels: {app: %[1]s}
  template:
    metadata:
      labels: {app: %[1]s}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: app
          image: %[5]s
          imagePullPolicy: Never
          resources:
            requests: {cpu: %[2]s}
          readinessProbe:
            httpGet: {path: /, port: %[3]d}
            periodSeconds: 1
`, name, cpu, readyPort, pds, cluster.AppImage)
}

// LoopScenarios are the two bad rollouts of the loop: a revision whose pod asks for more
// cpu than the node has (KubePodUnschedulable), and one whose pod never gets Ready, which
// the Deployment controller itself declares failed after progressDeadlineSeconds
// (AlertRollbackDeploymentRolloutStuck).
func LoopScenarios() []Scenario {
	return []Scenario{
		{
			Alert: "KubePodUnschedulable", Name: "checkout-api",
			Good:          DeploymentManifest("checkout-api", "10m", 8080, 0),
			Bad:           DeploymentManifest("checkout-api", "64", 8080, 0),
			FailingSource: "pod condition PodScheduled=False Unschedulable, polled",
			Failing: func(ctx context.Context, k *cluster.Cluster, ns string) (bool, error) {
				_, err := unschedulablePod(ctx, k, ns, "checkout-api")
				return err == nil, nil
			},
			Labels: func(ctx context.Context, k *cluster.Cluster, ns string) (map[string]string, error) {
				pod, err := unschedulablePod(ctx, k, ns, "checkout-api")
				return map[string]string{"pod": pod}, err
			},
		},
		{
			Alert: "AlertRollbackDeploymentRolloutStuck", Name: "billing-api",
			Good: DeploymentManifest("billing-api", "10m", 8080, 10),
			// Nothing listens on 8081: the pod runs and is never Ready.
			Bad: DeploymentManifest("billing-api", "10m", 8081, 10),
			// The controller declares the rollout failed progressDeadlineSeconds (10 s) later.
			FailingSource: "pod Running, Ready=False (its readiness probe fails), polled",
			Failing: func(ctx context.Context, k *cluster.Cluster, ns string) (bool, error) {
				pods, err := k.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=billing-api"})
				if err != nil {
					return false, nil
				}
				for _, p := range pods.Items {
					probe := p.Spec.Containers[0].ReadinessProbe
					if p.Status.Phase == corev1.PodRunning && !podReady(&p) && probe != nil && probe.HTTPGet.Port.IntValue() == 8081 {
						return true, nil
					}
				}
				return false, nil
			},
			Labels: func(context.Context, *cluster.Cluster, string) (map[string]string, error) {
				return map[string]string{"deployment": "billing-api"}, nil
			},
		},
	}
}

// unschedulablePod is the Deployment's pod the scheduler could not place.
func unschedulablePod(ctx context.Context, k *cluster.Cluster, ns, app string) (string, error) {
	pods, err := k.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		return "", err
	}
	for _, p := range pods.Items {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
				return p.Name, nil
			}
		}
	}
	return "", fmt.Errorf("no unschedulable pod of %s", app)
}

// FunctionSeries waits for the function's decision counter, pushed over OTLP, to count a
// decision with action in ns (alert_rollback_decisions_total, as the README names it), and
// returns the label sets of those series.
func (l *Loop) FunctionSeries(ctx context.Context, ns, action string) ([]map[string]string, error) {
	var found []map[string]string
	_, err := pollFor(ctx, sinkTimeout, func(ctx context.Context) (bool, error) {
		all, err := l.Prometheus.Series(ctx, `alert_rollback_decisions_total`, l.Began, time.Now())
		if err != nil {
			return false, nil
		}
		found = nil
		for _, s := range all {
			if s["action"] == action && s["namespace"] == ns {
				found = append(found, s)
			}
		}
		return len(found) > 0, nil
	})
	return found, err
}
