package run

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
	"sigs.k8s.io/yaml"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
	"github.com/sre-kit/alert-rollback/e2e/fixture"
)

// KnativeStory is the product's claim played on a real node with Knative Serving: the
// function, applied from kservice.yaml (only its image replaced), scales to zero; a real
// Alertmanager, on the shipped configuration, sends the seed's alert to its cluster-local
// address through the ingress; that wakes it (0 -> 1), it rolls the broken Deployment back,
// and it scales to zero again; later alerts wake it again and are skipped, because its
// state lives on the workload, not in the pod. Every step is checked on the cluster; an
// error says which failed.
type KnativeStory struct {
	Kube *cluster.Cluster
	// Dir holds Alertmanager's files and the edited kservice.yaml.
	Dir string
	// KService is the path of kservice.yaml; Image replaces its image.
	KService, Image string
	// Namespace is where it all happens; it must not exist yet.
	Namespace string
	// Logf receives one line per step and every change of the function's pod count.
	Logf func(format string, args ...any)
	// EndAtZero waits, at the end, for the function to scale to zero once more.
	EndAtZero bool
	// Env is added to the container's environment: func.yaml's settings for func's
	// runtime, which kservice.yaml does not have.
	Env []corev1.EnvVar
}

// KnativeResult is what the story measured (not asserted: timings vary with the machine).
type KnativeResult struct {
	// Pods is every pod count of the function seen, in order (0 1 0 1 ...).
	Pods []int
	// Woken is the index in Pods of the count when the first alert fired: the 0 it woke
	// the function from.
	Woken int
	// Ready is how long kservice.yaml took to become Ready after apply.
	Ready time.Duration
	// ColdAnswer and WarmAnswer are Alertmanager's own measure of its notifications to the
	// function (its "Notify success" duration): woken from zero, and with a pod running.
	ColdAnswer, WarmAnswer time.Duration
	// ColdAgain is the second cold answer, after the function scaled to zero once more.
	ColdAgain time.Duration
	// PodStart is from the woken pod's creation to its Ready condition (API timestamps:
	// whole seconds); negative when the pod was no longer Ready when read (see podStart).
	PodStart time.Duration
	// Action is the function's action for the broken Deployment, from its log.
	Action string
}

// knativeTimeout bounds each wait of the story on Knative: scale to zero takes the 6 s
// stable window, the 6 s grace period and the pod's shutdown.
const knativeTimeout = 3 * time.Minute

// serviceLabel selects the function's pods, which Knative labels with its Service's name.
const serviceLabel = "serving.knative.dev/service=alert-rollback"

// Run plays the story and returns what it measured.
func (s *KnativeStory) Run(ctx context.Context) (res KnativeResult, err error) {
	k, ns, token := s.Kube, s.Namespace, "knative-token-"+s.Namespace
	if err := k.CreateNamespace(ctx, ns); err != nil {
		return res, err
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "alert-rollback-auth"}, StringData: map[string]string{"token": token}}
	if _, err := k.Clientset.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		return res, err
	}

	// The pod count, watched from the start, so every 0 -> 1 -> 0 is seen as it happens.
	watch := &podWatch{}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go watch.run(watchCtx, k, ns, s.Logf)
	defer func() { res.Pods = watch.history() }()

	began := time.Now()
	if err := s.apply(ctx); err != nil {
		return res, err
	}
	if out, err := k.Kubectl(ctx, "wait", "-n", ns, "--for=condition=Ready", "--timeout=180s", "ksvc/alert-rollback"); err != nil {
		return res, fmt.Errorf("kservice.yaml not Ready: %w: %s", err, out)
	}
	res.Ready = time.Since(began)
	s.Logf("kservice.yaml (image %s) Ready in %s", s.Image, res.Ready.Round(time.Millisecond))

	pod, rev1, err := BrokenDeployment(ctx, k, ns, "checkout-api", func(c *corev1.Container) {
		c.Resources.Requests[corev1.ResourceCPU] = resource.MustParse("64")
	})
	if err != nil {
		return res, err
	}
	s.Logf("Deployment checkout-api: revision 1 Running, revision 2's pod %s Unschedulable", pod)

	if err := watch.waitFor(ctx, 0); err != nil {
		return res, fmt.Errorf("the function did not scale to zero: %w", err)
	}
	s.Logf("the function scaled to zero")

	am, err := s.alertmanager(ctx, token)
	if err != nil {
		return res, err
	}
	defer am.Stop()

	// 1. Cold: the seed's alert wakes the function, which rolls the Deployment back.
	labels := map[string]string{"alertname": "KubePodUnschedulable", "namespace": ns, "pod": pod, "severity": "rollback"}
	woken := watch.seen()
	res.Woken = woken - 1
	if err := am.Fire(ctx, Alert{Labels: labels, StartsAt: time.Now()}); err != nil {
		return res, err
	}
	s.Logf("alert fired into Alertmanager: KubePodUnschedulable for pod %s", pod)
	if res.ColdAnswer, err = am.waitNotified(ctx, 1); err != nil {
		return res, err
	}
	if err := watch.waitSeenSince(ctx, woken, 1); err != nil {
		return res, fmt.Errorf("the alert did not wake the function: %w", err)
	}
	if _, err := fixture.WaitEvents(ctx, k.Clientset, ns, "Deployment", "checkout-api", "RolledBack", 1); err != nil {
		return res, err
	}
	if res.Action, err = s.waitOutcome(ctx, "checkout-api", 0); err != nil {
		return res, err
	}
	if res.Action != "rolled-back" {
		return res, fmt.Errorf("the function's action for checkout-api is %q; want rolled-back", res.Action)
	}
	if err := fixture.WaitDeploymentRevision(ctx, k.Clientset, ns, "checkout-api", 3); err != nil {
		return res, err
	}
	if _, err := WaitOnlyRevisionRunning(ctx, k.Clientset, ns, "checkout-api", rev1); err != nil {
		return res, err
	}
	if res.PodStart, err = podStart(ctx, k, ns); err != nil {
		return res, err
	}
	s.Logf("answered %s in %s (cold); Event RolledBack on the Deployment; revision 1's pods Running", res.Action, ms(res.ColdAnswer))

	// 2. Back to zero, then a second alert wakes it again: skipped, because the function
	// keeps its guard state on the Deployment, which outlived the pod.
	if err := watch.waitFor(ctx, 0); err != nil {
		return res, fmt.Errorf("the function did not scale back to zero: %w", err)
	}
	s.Logf("the function scaled back to zero")
	woken = watch.seen()
	again := copyLabels(labels, "attempt", "2")
	if err := am.Fire(ctx, Alert{Labels: again, StartsAt: time.Now()}); err != nil {
		return res, err
	}
	if res.ColdAgain, err = am.waitNotified(ctx, 2); err != nil {
		return res, err
	}
	if err := watch.waitSeenSince(ctx, woken, 1); err != nil {
		return res, fmt.Errorf("the second alert did not wake the function: %w", err)
	}
	// The notification carries both alerts of the group, the first already handled. The new
	// pod has seen nothing (its process is new): only the state annotation on the Deployment
	// knows of the undo, so either answer proves the state survived zero. Once the undo's
	// rollout is complete, the repeat verifies it: healed; while it is still rolling out, the
	// group is already handled. Which one depends on how fast revision 1's pod is Ready.
	// A skip makes no Event (copies must not spend the workload's Event budget): the log
	// says it.
	second, err := s.waitOutcome(ctx, "checkout-api", 0, [2]string{"healed", "healed"}, [2]string{"skipped", "already-handled"})
	if err != nil {
		return res, fmt.Errorf("the second alert: %w", err)
	}
	s.Logf("a second alert woke it again: answered in %s (cold), %s (the state survived zero)", ms(res.ColdAgain), second)

	// 3. Warm: a third alert while the pod runs; the pod count must not move meanwhile, or
	// the answer would not be a warm one.
	warm := watch.seen()
	before, _, err := s.outcomesInLog(ctx, "checkout-api")
	if err != nil {
		return res, err
	}
	if err := am.Fire(ctx, Alert{Labels: copyLabels(labels, "attempt", "3"), StartsAt: time.Now()}); err != nil {
		return res, err
	}
	if res.WarmAnswer, err = am.waitNotified(ctx, 3); err != nil {
		return res, err
	}
	if h := watch.history(); watch.seen() != warm || h[len(h)-1] == 0 {
		return res, fmt.Errorf("the function's pods changed while the warm alert was answered (counts %v since %d)", h, warm)
	}
	if _, err := s.waitOutcome(ctx, "checkout-api", len(before), [2]string{"skipped", "already-handled"}); err != nil {
		return res, fmt.Errorf("the third alert: %w", err)
	}
	s.Logf("a third alert, warm: answered in %s, skipped already-handled", ms(res.WarmAnswer))
	d, err := k.Clientset.AppsV1().Deployments(ns).Get(ctx, "checkout-api", metav1.GetOptions{})
	if err != nil {
		return res, err
	}
	if rev := d.Annotations["deployment.kubernetes.io/revision"]; rev != "3" {
		return res, fmt.Errorf("checkout-api is at revision %s after the skipped alerts; want 3 (no second undo)", rev)
	}
	if s.EndAtZero {
		if err := watch.waitFor(ctx, 0); err != nil {
			return res, fmt.Errorf("the function did not scale back to zero: %w", err)
		}
	}
	return res, nil
}

// apply applies kservice.yaml as a user would, with only its image line changed and Env
// added.
func (s *KnativeStory) apply(ctx context.Context) error {
	var edit func(*servingv1.Service)
	if len(s.Env) > 0 {
		edit = func(svc *servingv1.Service) {
			c := &svc.Spec.Template.Spec.Containers[0]
			c.Env = append(c.Env, s.Env...)
		}
	}
	return ApplyKService(ctx, s.Kube, s.Dir, s.KService, s.Namespace, s.Image, edit)
}

// ApplyKService applies kservice.yaml (at path) in ns as a user would, with only its image
// line changed to image, and its Knative Service changed by edit if it is not nil. The file
// applied is written to dir.
func ApplyKService(ctx context.Context, k *cluster.Cluster, dir, path, ns, image string, edit func(*servingv1.Service)) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	re := regexp.MustCompile(`(?m)^(\s+image: )ko://\S+$`)
	if len(re.FindAll(b, -1)) != 1 {
		return fmt.Errorf("%s: want exactly one ko:// image line", path)
	}
	b = re.ReplaceAll(b, []byte("${1}"+image))
	if edit != nil {
		if b, err = editKService(b, edit); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	applied := filepath.Join(dir, "kservice.yaml")
	if err := os.WriteFile(applied, b, 0o644); err != nil {
		return err
	}
	if out, err := k.Kubectl(ctx, "apply", "-n", ns, "-f", applied); err != nil {
		return fmt.Errorf("kubectl apply -f kservice.yaml: %w: %s", err, out)
	}
	return nil
}

// editKService returns the YAML documents b with the Knative Service among them changed by
// edit; the other documents are left as written.
func editKService(b []byte, edit func(*servingv1.Service)) ([]byte, error) {
	docs := strings.Split(string(b), "\n---")
	for i, doc := range docs {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			return nil, err
		}
		if meta.Kind != "Service" || !strings.HasPrefix(meta.APIVersion, "serving.knative.dev/") {
			continue
		}
		var svc servingv1.Service
		if err := yaml.UnmarshalStrict([]byte(doc), &svc); err != nil {
			return nil, err
		}
		edit(&svc)
		out, err := yaml.Marshal(&svc)
		if err != nil {
			return nil, err
		}
		docs[i] = "\n" + string(out)
		return []byte(strings.Join(docs, "\n---")), nil
	}
	return nil, fmt.Errorf("no Knative Service in it")
}

// alertmanager starts Alertmanager on the node with the shipped configuration, its url the
// Service's cluster-local address (through the ingress), and test timers.
func (s *KnativeStory) alertmanager(ctx context.Context, token string) (*notifyingAlertmanager, error) {
	creds := filepath.Join(s.Dir, "token")
	if err := os.WriteFile(creds, []byte(token), 0o600); err != nil {
		return nil, err
	}
	am, err := StartAlertmanager(ctx, AlertmanagerOptions{
		Dir: s.Dir, Name: "alertmanager-" + s.Namespace,
		WebhookURL:      "http://alert-rollback." + s.Namespace + ".svc.cluster.local/",
		CredentialsFile: creds,
		Timers:          &Timers{GroupWait: "1s", GroupInterval: "1s", RepeatInterval: "1h"},
		Wrap:            s.Kube.Wrap(), HTTP: s.Kube.HTTP,
	})
	if err != nil {
		return nil, err
	}
	return &notifyingAlertmanager{am}, nil
}

// outcomesInLog returns the actions and reason codes the function logged for the workload
// name, in order, from the logs of its pods now listed (those of earlier wakes may be).
func (s *KnativeStory) outcomesInLog(ctx context.Context, name string) ([][2]string, string, error) {
	out, err := s.Kube.Kubectl(ctx, "logs", "-n", s.Namespace, "-l", serviceLabel, "-c", "rollback", "--tail=-1")
	if err != nil {
		return nil, "", err
	}
	var outcomes [][2]string
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, `"name":"`+name+`"`) {
			continue
		}
		if a := logField(line, "action"); a != "" {
			outcomes = append(outcomes, [2]string{a, logField(line, "reason")})
		}
	}
	return outcomes, out, nil
}

// waitOutcome waits until the function has logged more than since outcomes for the workload
// name, and returns the last one's action; with wants set, it must be one of those
// (action, reason) pairs.
func (s *KnativeStory) waitOutcome(ctx context.Context, name string, since int, wants ...[2]string) (string, error) {
	var got [][2]string
	var logs string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, knativeTimeout, true, func(ctx context.Context) (bool, error) {
		var err error
		var out string
		got, out, err = s.outcomesInLog(ctx, name)
		if len(out) >= len(logs) {
			logs = out // the pod's log is gone once it scaled to zero: keep the fullest read
		}
		if err != nil || len(got) <= since {
			return false, nil
		}
		return len(wants) == 0 || slices.Contains(wants, got[len(got)-1]), nil
	})
	if err != nil {
		if lines := strings.Split(strings.TrimSpace(logs), "\n"); len(lines) > 10 {
			logs = strings.Join(lines[len(lines)-10:], "\n")
		}
		return "", fmt.Errorf("the function's outcomes for %s are %v; want a new one of %v: %w (the last lines of its log read: %s)", name, got, wants, err, logs)
	}
	return got[len(got)-1][0], nil
}

// logField is the value of a string field of one JSON log line.
func logField(line, key string) string {
	m := regexp.MustCompile(`"` + key + `":"([a-z-]+)"`).FindStringSubmatch(line)
	if m == nil {
		return ""
	}
	return m[1]
}

// notifyingAlertmanager reads Alertmanager's log for its deliveries to the function.
type notifyingAlertmanager struct{ *Alertmanager }

var notifySuccess = regexp.MustCompile(`msg="Notify success".*receiver=alert-rollback.*duration=(\S+)`)

// waitNotified waits until Alertmanager has delivered its n-th notification to the function
// with a 2xx answer, and returns how long that delivery took, by Alertmanager's measure.
func (a *notifyingAlertmanager) waitNotified(ctx context.Context, n int) (time.Duration, error) {
	var took time.Duration
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, knativeTimeout, true, func(context.Context) (bool, error) {
		b, _ := os.ReadFile(a.LogPath)
		m := notifySuccess.FindAllStringSubmatch(string(b), -1)
		if len(m) < n {
			return false, nil
		}
		d, err := time.ParseDuration(m[n-1][1])
		if err != nil {
			return false, fmt.Errorf("Alertmanager's duration %q: %w", m[n-1][1], err)
		}
		took = d
		return true, nil
	})
	if err != nil {
		b, _ := os.ReadFile(a.LogPath)
		return 0, fmt.Errorf("Alertmanager's notification %d to the function did not succeed: %w\n--- Alertmanager's log (end) ---\n%s", n, err, lastLines(string(b), 15))
	}
	return took, nil
}

// podWatch follows the number of the function's pods (not terminating).
type podWatch struct {
	mu     sync.Mutex
	counts []int
	at     []time.Time // when each count was first seen
}

func (w *podWatch) run(ctx context.Context, k *cluster.Cluster, ns string, logf func(string, ...any)) {
	last := -1
	for ctx.Err() == nil {
		pods, err := k.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: serviceLabel})
		if err == nil {
			n := 0
			for _, p := range pods.Items {
				if p.DeletionTimestamp == nil {
					n++
				}
			}
			if n != last {
				w.mu.Lock()
				w.counts = append(w.counts, n)
				w.at = append(w.at, time.Now())
				w.mu.Unlock()
				logf("function pods: %d", n)
				last = n
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (w *podWatch) history() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]int(nil), w.counts...)
}

// seen is how many counts have been seen so far, a mark for waitSeenSince.
func (w *podWatch) seen() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.counts)
}

// waitFor waits until the latest count is n.
func (w *podWatch) waitFor(ctx context.Context, n int) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, knativeTimeout, true, func(context.Context) (bool, error) {
		h := w.history()
		return len(h) > 0 && h[len(h)-1] == n, nil
	})
}

// waitSeenSince waits until a count of at least n has been seen after the mark.
func (w *podWatch) waitSeenSince(ctx context.Context, mark, n int) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, knativeTimeout, true, func(context.Context) (bool, error) {
		for _, c := range w.history()[mark:] {
			if c >= n {
				return true, nil
			}
		}
		return false, nil
	})
}

// PodStartText says PodStart for people: whole seconds (the API's timestamps), or that it
// was not measured.
func (r KnativeResult) PodStartText() string {
	if r.PodStart < 0 {
		return "not measured (no longer Ready when read)"
	}
	return fmt.Sprintf("%.0f s", r.PodStart.Seconds())
}

// podStart is how long the newest function pod took from creation to Ready.
func podStart(ctx context.Context, k *cluster.Cluster, ns string) (time.Duration, error) {
	pods, err := k.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: serviceLabel})
	if err != nil {
		return 0, err
	}
	var newest *corev1.Pod
	for i := range pods.Items {
		if p := &pods.Items[i]; newest == nil || p.CreationTimestamp.After(newest.CreationTimestamp.Time) {
			newest = p
		}
	}
	if newest == nil {
		return 0, fmt.Errorf("no function pod in %s", ns)
	}
	for _, c := range newest.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return c.LastTransitionTime.Sub(newest.CreationTimestamp.Time), nil
		}
	}
	// The pod answered, so it was Ready; by now the autoscaler (whose windows are seconds
	// here) may be draining it, and the API keeps no time for a Ready condition since lost.
	// The figure is printed, never asserted: say it was not measured.
	return -1, nil
}

func copyLabels(labels map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for key, val := range labels {
		out[key] = val
	}
	return out
}

func ms(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
