package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/sre-kit/alert-rollback/e2e/fixture"
	"github.com/sre-kit/alert-rollback/e2e/run"
	"github.com/sre-kit/alert-rollback/internal/outcome"
	"github.com/sre-kit/alert-rollback/internal/undo"
)

// workload is the name of every case's Deployment (each case has its own namespace).
const workload = "checkout"

// harness is one case's world: a namespace with a broken Deployment, the function reaching
// the apiserver only through the fault proxy, and a recorder between Alertmanager and it.
type harness struct {
	t     *testing.T
	ns    string
	dir   string
	token string // what Alertmanager must send
	proxy *Proxy
	// kubeconfig names the proxy, with the function's ServiceAccount token.
	kubeconfig string
	settings   map[string]string
	// good and bad are the Deployment's ReplicaSets of revision 1 (schedulable) and 2 (not).
	good, bad *appsv1.ReplicaSet
	pods      []string // the bad revision's Unschedulable pods

	mu sync.Mutex
	fn *run.Function // the function process Alertmanager's deliveries go to
	// others are more replicas: each delivery goes to the next, as Knative spreads requests.
	others []*run.Function
	n      int // function processes started
}

// newHarness makes namespace name with the function's RBAC, a broken Deployment with pods
// replicas, the fault proxy, and one function process with settings.
func newHarness(t *testing.T, name string, settings map[string]string, pods int32) *harness {
	t.Helper()
	ctx := context.Background()
	h := &harness{t: t, ns: name, dir: t.TempDir(), token: "faults-" + name, settings: settings}
	if err := kube.CreateNamespace(ctx, h.ns); err != nil {
		t.Fatal(err)
	}
	if out, err := kube.Kubectl(ctx, "apply", "-n", h.ns, "-f", rbacFile); err != nil {
		t.Fatalf("apply the function's RBAC: %v: %s", err, out)
	}
	t.Cleanup(func() {
		// Free the Node's room for the next case.
		bg := metav1.DeletePropagationBackground
		_ = kube.Clientset.AppsV1().Deployments(h.ns).Delete(context.Background(), workload, metav1.DeleteOptions{PropagationPolicy: &bg})
	})
	h.brokenDeployment(pods)

	var err error
	if h.proxy, err = Start(kube.Host, kube.CAFile, h.dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.proxy.Close)
	sa, err := kube.Token(ctx, h.ns, "alert-rollback")
	if err != nil {
		t.Fatal(err)
	}
	h.kubeconfig = filepath.Join(h.dir, "kubeconfig")
	if err := writeKubeconfig(h.kubeconfig, h.proxy.URL, h.proxy.CAFile, h.ns, sa); err != nil {
		t.Fatal(err)
	}
	h.startFunction()
	return h
}

// writeKubeconfig writes a kubeconfig for server (trusting caFile) with token.
func writeKubeconfig(path, server, caFile, namespace, token string) error {
	cfg := clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"faults": {Server: server, CertificateAuthority: caFile}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"faults": {Token: token}},
		Contexts:       map[string]*clientcmdapi.Context{"faults": {Cluster: "faults", AuthInfo: "faults", Namespace: namespace}},
		CurrentContext: "faults",
	}
	return clientcmd.WriteToFile(cfg, path)
}

// brokenDeployment plays the seed's scenario: revision 1 schedules, revision 2 asks for more
// CPU than the Node has and its pods are Unschedulable.
func (h *harness) brokenDeployment(replicas int32) {
	h.t.Helper()
	ctx := context.Background()
	cs := kube.Clientset
	d := fixture.Deployment(h.ns, workload, fixture.Container("registry.invalid/checkout:v1", "100m"))
	d.Spec.Replicas = &replicas
	// Every replica of the bad revision is created at once, so each has a pod to alert on.
	surge := intstr.FromString("100%")
	d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: &surge}
	if _, err := cs.AppsV1().Deployments(h.ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
	if err := fixture.WaitDeploymentRevision(ctx, cs, h.ns, workload, 1); err != nil {
		h.t.Fatal(err)
	}
	var err error
	if h.good, err = fixture.ReplicaSetOfRevision(ctx, cs, h.ns, workload, 1); err != nil {
		h.t.Fatal(err)
	}
	if _, err := fixture.WaitPod(ctx, cs, h.ns, h.good, corev1.ConditionTrue, ""); err != nil {
		h.t.Fatal(err)
	}
	err = fixture.UpdateDeployment(ctx, cs, h.ns, workload, 2, func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.Containers[0] = fixture.Container("registry.invalid/checkout:v2", "64")
	})
	if err != nil {
		h.t.Fatal(err)
	}
	if h.bad, err = fixture.ReplicaSetOfRevision(ctx, cs, h.ns, workload, 2); err != nil {
		h.t.Fatal(err)
	}
	// Every replica of the bad revision: the cases with several alerts name each pod.
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, fixture.PollTimeout, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods(h.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		h.pods = nil
		for _, p := range pods.Items {
			if ref := metav1.GetControllerOf(&p); ref == nil || ref.UID != h.bad.UID {
				continue
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
					h.pods = append(h.pods, p.Name)
				}
			}
		}
		return len(h.pods) >= int(replicas), nil
	})
	if err != nil {
		h.t.Fatalf("%d Unschedulable pods of revision 2, want %d: %v", len(h.pods), replicas, err)
	}
	slices.Sort(h.pods)
}

// startFunction starts a function process (the first, or a replacement for one that was
// killed, as Knative would start another pod) and sends the next deliveries to it.
func (h *harness) startFunction() *run.Function {
	h.t.Helper()
	h.mu.Lock()
	h.n++
	name := fmt.Sprintf("rollback-%d", h.n)
	h.mu.Unlock()
	env := map[string]string{"KUBECONFIG": h.kubeconfig, "ROLLBACK_AUTH_TOKEN": h.token}
	for k, v := range h.settings {
		env[k] = v
	}
	f, err := run.StartFunction(context.Background(), run.FunctionOptions{Dir: h.dir, Env: env, Name: name})
	if err != nil {
		h.t.Fatalf("start the function: %v", err)
	}
	h.t.Cleanup(func() {
		f.Stop()
		if h.t.Failed() {
			h.t.Logf("log of %s:\n%s", name, f.Log())
		}
	})
	h.mu.Lock()
	h.fn = f
	h.mu.Unlock()
	return f
}

// addReplica starts another function process; deliveries then take turns.
func (h *harness) addReplica() {
	h.t.Helper()
	first := h.function()
	h.startFunction()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.others = append(h.others, first)
}

// rotate makes the next replica the one deliveries go to.
func (h *harness) rotate() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.others) > 0 {
		h.others = append(h.others, h.fn)
		h.fn, h.others = h.others[0], h.others[1:]
	}
}

// function is the process deliveries go to now.
func (h *harness) function() *run.Function {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.fn
}

// replaceFunction waits for the current process to exit (it was killed or told to stop) and
// starts another.
func (h *harness) replaceFunction() {
	h.t.Helper()
	select {
	case <-h.function().Done():
	case <-time.After(30 * time.Second):
		h.t.Fatalf("the function did not exit")
	}
	h.startFunction()
}

// alerts are the seed's alert, one per Unschedulable pod, as Prometheus would post them.
func (h *harness) alerts(alertname string) []run.Alert {
	var out []run.Alert
	now := time.Now().UTC()
	for _, pod := range h.pods {
		labels := map[string]string{"alertname": alertname, "namespace": h.ns, "pod": pod, "severity": "rollback"}
		out = append(out, run.Alert{Labels: labels, Annotations: map[string]string{"summary": "pod cannot be scheduled"}, StartsAt: now})
	}
	return out
}

// delivery is one notification Alertmanager sent and what the function answered.
type delivery struct {
	// status is the function's HTTP status, 0 when it gave no answer (it died, or cut the
	// request off).
	status int
	resp   outcome.Response
	body   []byte
	took   time.Duration
	by     string // which function process
	err    error  // why there was no answer
}

func (d delivery) String() string {
	if d.status == 0 {
		return fmt.Sprintf("no answer from %s after %s: %v", d.by, d.took.Round(time.Millisecond), d.err)
	}
	var parts []string
	for _, r := range d.resp.Results {
		s := fmt.Sprintf("%s (%s): %s", r.Action, r.Reason, r.Message)
		parts = append(parts, s)
	}
	return fmt.Sprintf("%d from %s in %s [%s]", d.status, d.by, d.took.Round(time.Millisecond), strings.Join(parts, "; "))
}

// final reports whether the answer ends the delivery for Alertmanager: 2xx done, 4xx
// dropped. 5xx and no answer are retried.
func (d delivery) final() bool { return d.status >= 200 && d.status < 500 }

// recorder stands between Alertmanager and the function: it forwards each delivery to the
// current function process, keeps its answer, and cuts Alertmanager's request off when the
// function gave none, as a dead process would.
type recorder struct {
	h   *harness
	URL string
	// after runs once a delivery is recorded and before Alertmanager gets the answer, so
	// what it does (heal a fault, replace a killed process) is in place for the next one.
	after func(n int, d delivery)

	mu  sync.Mutex
	got []delivery
}

func (h *harness) newRecorder(after func(int, delivery)) *recorder {
	r := &recorder{h: h, after: after}
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	h.t.Cleanup(srv.Close)
	r.URL = srv.URL + "/"
	return r
}

func (r *recorder) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	f := r.h.function()
	began := time.Now()
	out, err := http.NewRequestWithContext(req.Context(), http.MethodPost, f.URL, bytes.NewReader(body))
	if err != nil {
		panic(err)
	}
	out.Header = req.Header.Clone()
	d := delivery{by: f.Name}
	resp, err := http.DefaultClient.Do(out)
	if err == nil {
		d.body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			d.status = resp.StatusCode
			_ = json.Unmarshal(d.body, &d.resp)
		}
	}
	d.err = err
	d.took = time.Since(began)
	r.mu.Lock()
	r.got = append(r.got, d)
	n := len(r.got)
	r.mu.Unlock()
	if r.after != nil {
		r.after(n, d)
	}
	r.h.rotate()
	if d.status == 0 {
		panic(http.ErrAbortHandler)
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(d.status)
	_, _ = w.Write(d.body)
}

func (r *recorder) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// watcher follows every version of the Deployment the apiserver shows (a watch, resumed
// after the apiserver or etcd comes back) and checks each: the state annotation must agree
// with the template, and the template may go from the bad revision to the good one once,
// never back.
type watcher struct {
	h    *harness
	stop context.CancelFunc
	done chan struct{}

	mu         sync.Mutex
	versions   int
	seq        []string // "bad" or "good", one per change of template
	violations []string
	lastRV     string
}

func (h *harness) watch() *watcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{h: h, stop: cancel, done: make(chan struct{})}
	h.t.Cleanup(cancel)
	go func() {
		defer close(w.done)
		// Each round reads the Deployment and watches it until the watch ends (the apiserver
		// restarting, etcd gone); then it starts again a moment later.
		wait.UntilWithContext(ctx, w.round, 100*time.Millisecond)
	}()
	return w
}

func (w *watcher) round(ctx context.Context) {
	deployments := kube.Clientset.AppsV1().Deployments(w.h.ns)
	d, err := deployments.Get(ctx, workload, metav1.GetOptions{})
	if err != nil {
		return
	}
	w.check(d)
	wi, err := deployments.Watch(ctx, metav1.ListOptions{
		FieldSelector:   fields.OneTermEqualSelector("metadata.name", workload).String(),
		ResourceVersion: d.ResourceVersion,
	})
	if err != nil {
		return
	}
	defer wi.Stop()
	for ev := range wi.ResultChan() {
		if ev.Type != watch.Added && ev.Type != watch.Modified {
			return
		}
		if d, ok := ev.Object.(*appsv1.Deployment); ok {
			w.check(d)
		}
	}
}

func (w *watcher) check(d *appsv1.Deployment) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if d.ResourceVersion == w.lastRV {
		return
	}
	w.lastRV = d.ResourceVersion
	w.versions++
	var st undo.State
	if raw := d.Annotations[undo.StateAnnotation]; raw != "" {
		if err := json.Unmarshal([]byte(raw), &st); err != nil {
			w.violate(d, "state annotation unreadable: %v", err)
			return
		}
	}
	badHash := w.h.bad.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
	var now string
	switch {
	case fixture.SameTemplate(d.Spec.Template, w.h.bad.Spec.Template):
		now = "bad"
		if st.Last != nil || len(st.Bad) > 0 || len(st.Handled) > 0 {
			w.violate(d, "template of revision 2 (bad) but the state records an undo: %s", d.Annotations[undo.StateAnnotation])
		}
	case fixture.SameTemplate(d.Spec.Template, w.h.good.Spec.Template):
		now = "good"
		if st.Last == nil || st.Last.From != 2 || st.Last.To != 1 || !slices.Contains(st.Bad, badHash) || len(st.Handled) == 0 {
			w.violate(d, "template of revision 1 (undone) but the state does not record that undo: %q", d.Annotations[undo.StateAnnotation])
		}
	default:
		now = "other"
		w.violate(d, "template is neither revision's: %+v", d.Spec.Template)
	}
	if len(w.seq) == 0 || w.seq[len(w.seq)-1] != now {
		w.seq = append(w.seq, now)
	}
}

func (w *watcher) violate(d *appsv1.Deployment, format string, args ...any) {
	w.violations = append(w.violations, fmt.Sprintf("resourceVersion %s: ", d.ResourceVersion)+fmt.Sprintf(format, args...))
}

// finish stops watching and returns what was seen.
func (w *watcher) finish() (versions int, seq, violations []string) {
	w.stop()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.versions, w.seq, w.violations
}

func writeFile(t testing.TB, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
