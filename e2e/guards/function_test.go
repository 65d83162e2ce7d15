package guards

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
	"github.com/sre-kit/alert-rollback/e2e/fixture"
	"github.com/sre-kit/alert-rollback/e2e/run"
	"github.com/sre-kit/alert-rollback/internal/alert"
	"github.com/sre-kit/alert-rollback/internal/gitops"
	"github.com/sre-kit/alert-rollback/internal/outcome"
	"github.com/sre-kit/alert-rollback/internal/report"
	"github.com/sre-kit/alert-rollback/internal/undo"
)

// fn is a namespace with the function's identity installed, and the function's processes.
type fn struct {
	t          *testing.T
	ns         string
	dir        string
	token      string
	kubeconfig string
}

func newFn(t *testing.T, ns string) *fn {
	t.Helper()
	cluster.Require(t, "rollback", "alertmanager")
	install(t, kube, ns)
	sa, err := kube.Token(context.Background(), ns, "alert-rollback")
	if err != nil {
		t.Fatal(err)
	}
	f := &fn{t: t, ns: ns, dir: t.TempDir(), token: "guards-token-" + ns}
	f.kubeconfig = filepath.Join(f.dir, "kubeconfig")
	if err := kube.WriteKubeconfig(f.kubeconfig, ns, sa); err != nil {
		t.Fatal(err)
	}
	return f
}

// start runs the function's binary as the ServiceAccount, with settings.
func (f *fn) start(name string, settings map[string]string) *run.Function {
	f.t.Helper()
	env := map[string]string{"KUBECONFIG": f.kubeconfig, "ROLLBACK_AUTH_TOKEN": f.token}
	for k, v := range settings {
		env[k] = v
	}
	p, err := run.StartFunction(context.Background(), run.FunctionOptions{Dir: f.dir, Env: env, Name: name})
	if err != nil {
		f.t.Fatalf("start %s: %v", name, err)
	}
	f.t.Cleanup(func() {
		p.Stop()
		if f.t.Failed() {
			f.t.Logf("log of %s:\n%s", name, p.Log())
		}
	})
	return p
}

// rolledOut creates a Deployment and rolls it to revision 2 (v1 → v2), with the labels and
// annotations its deployer would have set.
func (f *fn) rolledOut(name string, labels, annotations map[string]string) {
	f.t.Helper()
	ctx := context.Background()
	d := fixture.Deployment(f.ns, name, fixture.Container("registry.invalid/"+name+":v1", "10m"))
	d.Labels, d.Annotations = labels, annotations
	if _, err := kube.Clientset.AppsV1().Deployments(f.ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
	if err := fixture.WaitDeploymentRevision(ctx, kube.Clientset, f.ns, name, 1); err != nil {
		f.t.Fatal(err)
	}
	err := fixture.UpdateDeployment(ctx, kube.Clientset, f.ns, name, 2, func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.Containers[0].Image = "registry.invalid/" + name + ":v2"
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

func (f *fn) deployment(name string) *appsv1.Deployment {
	f.t.Helper()
	d, err := kube.Clientset.AppsV1().Deployments(f.ns).Get(context.Background(), name, get)
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

// alertAbout is a firing alert asking to roll back Deployment name.
func (f *fn) alertAbout(alertname, name string, startsAt time.Time) alert.Alert {
	return alert.Alert{Status: "firing", StartsAt: startsAt.UTC(), Fingerprint: fmt.Sprintf("%016x", startsAt.UnixNano()),
		Labels: map[string]string{"alertname": alertname, "severity": "rollback", "namespace": f.ns, "deployment": name}}
}

func notification(alerts ...alert.Alert) []byte {
	b, err := json.Marshal(alert.Message{Version: "4", Status: "firing", Receiver: "alert-rollback", Alerts: alerts})
	if err != nil {
		panic(err)
	}
	return b
}

// spread stands where Knative's routing does: it hands each delivery to the next of several
// function processes, round-robin, and keeps every answer.
type spread struct {
	URL     string
	next    atomic.Int64
	mu      sync.Mutex
	answers []delivery
}

type delivery struct {
	status int
	resp   outcome.Response
}

func newSpread(t *testing.T, fns ...*run.Function) *spread {
	t.Helper()
	s := &spread{}
	var proxies []*httputil.ReverseProxy
	for _, f := range fns {
		u, err := url.Parse(f.URL)
		if err != nil {
			t.Fatal(err)
		}
		p := httputil.NewSingleHostReverseProxy(u)
		p.ModifyResponse = func(r *http.Response) error {
			b, err := io.ReadAll(r.Body)
			if err != nil {
				return err
			}
			r.Body = io.NopCloser(bytes.NewReader(b))
			var resp outcome.Response
			_ = json.Unmarshal(b, &resp)
			s.mu.Lock()
			s.answers = append(s.answers, delivery{status: r.StatusCode, resp: resp})
			s.mu.Unlock()
			return nil
		}
		proxies = append(proxies, p)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxies[int(s.next.Add(1))%len(proxies)].ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s.URL = srv.URL + "/"
	return s
}

func (s *spread) deliveries() []delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]delivery(nil), s.answers...)
}

// tally counts the results of deliveries by reason, and the workloads each reason was given for.
func tally(ds []delivery) (byReason map[outcome.Reason]int, workloads map[outcome.Reason]map[string]bool) {
	byReason, workloads = map[outcome.Reason]int{}, map[outcome.Reason]map[string]bool{}
	for _, d := range ds {
		for _, r := range d.resp.Results {
			byReason[r.Reason]++
			if workloads[r.Reason] == nil {
				workloads[r.Reason] = map[string]bool{}
			}
			workloads[r.Reason][r.Name] = true
		}
	}
	return byReason, workloads
}

func union(a, b map[string]bool) map[string]bool {
	u := map[string]bool{}
	for k := range a {
		u[k] = true
	}
	for k := range b {
		u[k] = true
	}
	return u
}

// undone lists the Deployments of names the function rolled back: their template is v1
// again (the undo's patch sets it; the controller records it as revision 3 later).
func (f *fn) undone(names []string) []string {
	f.t.Helper()
	var out []string
	for _, n := range names {
		if strings.HasSuffix(f.deployment(n).Spec.Template.Spec.Containers[0].Image, ":v1") {
			out = append(out, n)
		}
	}
	return out
}

// TestBudgetStorm: a storm of 12 bad rollouts, one alert each under 4 alert names, reaches two
// Alertmanagers, which each send 4 notifications (the shipped route groups by alertname) and
// re-send them every 2 s, spread over 3 function processes. With ROLLBACK_BUDGET=5/30s exactly
// 5 Deployments are rolled back, never a sixth, whatever replica and notification; every
// other alert is refused (budget-exhausted). Once the window has passed, the next alert
// proceeds.
func TestBudgetStorm(t *testing.T) {
	const units, window = 5, 30 * time.Second
	f := newFn(t, "storm")
	ctx := context.Background()
	var names []string
	for i := range 12 {
		names = append(names, fmt.Sprintf("svc-%02d", i))
		f.rolledOut(names[i], nil, nil)
	}
	settings := map[string]string{"ROLLBACK_BUDGET": fmt.Sprintf("%d/%s", units, window), "ROLLBACK_COOLDOWN": "0s"}
	var fns []*run.Function
	for i := range 3 {
		fns = append(fns, f.start(fmt.Sprintf("rollback-%d", i), settings))
	}
	s := newSpread(t, fns...)
	creds := filepath.Join(f.dir, "credentials")
	if err := os.WriteFile(creds, []byte(f.token), 0o600); err != nil {
		t.Fatal(err)
	}
	var ams []*run.Alertmanager
	for i := range 2 {
		am, err := run.StartAlertmanager(ctx, run.AlertmanagerOptions{Dir: f.dir, Name: fmt.Sprintf("alertmanager-%d", i),
			WebhookURL: s.URL, CredentialsFile: creds, Timers: &run.Timers{GroupWait: "1s", GroupInterval: "1s", RepeatInterval: "2s"}})
		if err != nil {
			t.Fatal(err)
		}
		defer am.Stop()
		ams = append(ams, am)
	}

	began := time.Now()
	var alerts []run.Alert
	for i, n := range names {
		a := f.alertAbout(fmt.Sprintf("Storm%c", 'A'+i%4), n, began)
		alerts = append(alerts, run.Alert{Labels: a.Labels, StartsAt: a.StartsAt})
	}
	for _, am := range ams {
		if err := am.Fire(ctx, alerts...); err != nil {
			t.Fatal(err)
		}
	}
	// The storm is settled when every workload has had an answer and Alertmanager has
	// re-sent everything at least twice more (both Alertmanagers, 4 groups, every 2 s).
	// A workload refused at one moment may be rolled back a moment later, from a re-send,
	// when a unit held for an undo that then failed (a conflict with another replica undoing
	// the same workload) has been given back: count each workload once.
	var answered int
	err := pollFor(30*time.Second, func() bool {
		_, w := tally(s.deliveries())
		answered = len(union(w[outcome.ReasonRolledBack], w[outcome.ReasonBudgetExhausted]))
		return answered == len(names)
	})
	if err != nil {
		t.Fatalf("%d of %d workloads answered: %v", answered, len(names), err)
	}
	settledAt := len(s.deliveries())
	if err := pollFor(30*time.Second, func() bool { return len(s.deliveries()) >= settledAt+16 }); err != nil {
		t.Fatalf("Alertmanager re-sent %d notifications; want 16: %v", len(s.deliveries())-settledAt, err)
	}
	for _, am := range ams {
		am.Stop()
	}
	ds := s.deliveries()
	byReason, w := tally(ds)
	undone := f.undone(names)
	t.Logf("storm: %d alerts, %d notifications over %d function processes in %.1fs: %d undos (%v), %d refusals (budget-exhausted, %d workloads), %d skips (already-handled); results by reason %v",
		len(names), len(ds), len(fns), time.Since(began).Seconds(), len(undone), undone, byReason[outcome.ReasonBudgetExhausted],
		len(w[outcome.ReasonBudgetExhausted]), byReason[outcome.ReasonAlreadyHandled], byReason)
	if time.Since(began) > window {
		t.Fatalf("the storm took %s, longer than the window of %s: the count would span two windows", time.Since(began), window)
	}
	if len(undone) != units || byReason[outcome.ReasonRolledBack] != units {
		t.Errorf("%d Deployments rolled back, %d rolled-back results; want exactly %d", len(undone), byReason[outcome.ReasonRolledBack], units)
	}
	var neverUndone []string
	for n := range w[outcome.ReasonBudgetExhausted] {
		if !w[outcome.ReasonRolledBack][n] {
			neverUndone = append(neverUndone, n)
		}
	}
	if len(neverUndone) != len(names)-units {
		t.Errorf("%d workloads refused by the budget and never rolled back; want %d", len(neverUndone), len(names)-units)
	}
	for _, d := range ds {
		if d.status != http.StatusOK {
			t.Errorf("a delivery was answered %d: %+v", d.status, d.resp)
		}
		for _, r := range d.resp.Results {
			if r.Action == outcome.Failed {
				t.Errorf("failed result: %+v", r)
			}
		}
	}
	if spent := onLease(t, kube.Clientset, f.ns); spent != units {
		t.Errorf("the Lease holds %d units; want %d", spent, units)
	}

	// After the window, the next alert proceeds: a fresh one about a refused workload.
	refused := neverUndone[0]
	fresh := notification(f.alertAbout("StormA", refused, time.Now()))
	var last outcome.Response
	err = pollFor(2*window, func() bool {
		code, resp, err := fns[0].Post(ctx, fresh, f.token)
		if err != nil || code != http.StatusOK || len(resp.Results) != 1 {
			t.Fatalf("fresh alert answered %d %+v: %v", code, resp, err)
		}
		last = resp
		return resp.Results[0].Reason != outcome.ReasonBudgetExhausted
	})
	if err != nil || last.Results[0].Action != outcome.RolledBack {
		t.Fatalf("after the window: %+v, %v; want rolled back", last.Results, err)
	}
	if since := time.Since(began); since < window {
		t.Errorf("the next alert proceeded %s after the storm began, inside the window of %s", since, window)
	}
	after := f.undone(names)
	t.Logf("after the window (%.1fs after the storm began): %s %s; %d Deployments rolled back in all",
		time.Since(began).Seconds(), refused, last.Results[0].Action, len(after))
	if len(after) != units+1 {
		t.Errorf("%d Deployments rolled back after the window; want %d", len(after), units+1)
	}
}

// pollFor polls cond every 200 ms until it holds or timeout passes.
func pollFor(timeout time.Duration, cond func() bool) error {
	return wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, timeout, true,
		func(context.Context) (bool, error) { return cond(), nil })
}

// gitopsFn is the function's binary as the ServiceAccount of the world's namespace, which
// newGitopsWorld installed (no Alertmanager needed).
func gitopsFn(t *testing.T, w *gitopsWorld) *fn {
	t.Helper()
	cluster.Require(t, "rollback")
	f := &fn{t: t, ns: w.ns, dir: t.TempDir(), token: "guards-token-" + w.ns}
	sa, err := kube.Token(context.Background(), w.ns, "alert-rollback")
	if err != nil {
		t.Fatal(err)
	}
	f.kubeconfig = filepath.Join(f.dir, "kubeconfig")
	if err := kube.WriteKubeconfig(f.kubeconfig, w.ns, sa); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestGitOpsThroughTheFunction: the function's binary, with the shipped RBAC (kservice.yaml
// and deploy/cluster-wide/gitops.yaml bound where the owners live, which ROLLBACK_NAMESPACES
// lists), on Deployments that a real Argo CD Application, Flux Kustomization and Flux
// HelmRelease own (their own CRDs), for each ROLLBACK_GITOPS. refuse changes nothing and names
// the owner; suspend pauses each owner through its real schema, rolls back, and says so in the
// state annotation and in Events on the workload and the owner; ignore rolls back and leaves
// the owners alone. A HelmRelease's workload is refused in refuse and suspend modes
// (gitops-unverified): only Helm's Secret records what the release manages.
func TestGitOpsThroughTheFunction(t *testing.T) {
	type owned struct {
		name                string
		labels, annotations map[string]string
		owner               gitops.Owner
	}
	for _, mode := range []gitops.Mode{gitops.Refuse, gitops.Suspend, gitops.Ignore} {
		t.Run(string(mode), func(t *testing.T) {
			ns := "gitops-fn-" + string(mode)
			w := newGitopsWorld(t, ns)
			f := gitopsFn(t, w)
			workloads := []owned{
				{name: "labelled", labels: map[string]string{gitops.InstanceLabel: "shop"},
					owner: gitops.Owner{Kind: gitops.Application, Namespace: w.argo, Name: "shop"}},
				{name: "kustomized", labels: map[string]string{gitops.KustomizeName: "apps", gitops.KustomizeNS: w.flux},
					owner: gitops.Owner{Kind: gitops.Kustomization, Namespace: w.flux, Name: "apps"}},
				{name: "released", labels: map[string]string{gitops.HelmName: "web", gitops.HelmNS: ns, gitops.ManagedByLabel: "Helm"},
					owner: gitops.Owner{Kind: gitops.HelmRelease, Namespace: ns, Name: "web"}},
			}
			before := map[string]map[string]any{}
			for _, o := range workloads {
				f.rolledOut(o.name, o.labels, o.annotations)
				before[o.name] = w.spec(t, o.owner.Kind, o.owner.Namespace, o.owner.Name)
			}
			p := f.start("rollback-"+string(mode), map[string]string{"ROLLBACK_GITOPS": string(mode), "ROLLBACK_ARGOCD_NAMESPACE": w.argo,
				"ROLLBACK_NAMESPACES": w.namespaces})
			ctx := context.Background()
			for _, o := range workloads {
				code, resp, err := p.Post(ctx, notification(f.alertAbout("BadRollout", o.name, time.Now())), f.token)
				if err != nil || code != http.StatusOK || len(resp.Results) != 1 {
					t.Fatalf("%s: answer %d %+v: %v", o.name, code, resp, err)
				}
				r := resp.Results[0]
				t.Logf("%s (%s): %s [%s]: %s", o.name, o.owner, r.Action, r.Reason, r.Message)
				after := w.spec(t, o.owner.Kind, o.owner.Namespace, o.owner.Name)
				// A rollback shows as revision 3 once the controller has recorded it.
				if r.Action == outcome.RolledBack {
					if err := fixture.WaitDeploymentRevision(ctx, kube.Clientset, ns, o.name, 3); err != nil {
						t.Errorf("%s: %v", o.name, err)
					}
				}
				rev := f.deployment(o.name).Annotations["deployment.kubernetes.io/revision"]
				switch {
				case o.owner.Kind == gitops.HelmRelease && mode != gitops.Ignore:
					if r.Reason != outcome.ReasonGitOpsUnverified || !strings.Contains(r.Message, o.owner.String()) {
						t.Errorf("%s: %s %s; want refused gitops-unverified naming %s", o.name, r.Reason, r.Message, o.owner)
					}
					if rev != "2" {
						t.Errorf("%s at revision %s after a refusal; want 2", o.name, rev)
					}
					if diff := cmp.Diff(before[o.name], after); diff != "" {
						t.Errorf("%s changed by a refusal (-before +after):\n%s", o.owner, diff)
					}
				case mode == gitops.Refuse:
					if r.Reason != outcome.ReasonGitOpsManaged || !strings.Contains(r.Message, o.owner.String()) {
						t.Errorf("%s: %s %s; want refused gitops-managed naming %s", o.name, r.Reason, r.Message, o.owner)
					}
					if rev != "2" {
						t.Errorf("%s at revision %s after a refusal; want 2", o.name, rev)
					}
					if diff := cmp.Diff(before[o.name], after); diff != "" {
						t.Errorf("%s changed by a refusal (-before +after):\n%s", o.owner, diff)
					}
				case mode == gitops.Suspend:
					want := withPath(before[o.name], true, "suspend")
					if o.owner.Kind == gitops.Application {
						want = withPath(before[o.name], false, "syncPolicy", "automated", "selfHeal")
					}
					if diff := cmp.Diff(want, after); diff != "" {
						t.Errorf("%s after suspend (-want +got):\n%s", o.owner, diff)
					}
					if r.Action != outcome.RolledBack || rev != "3" {
						t.Errorf("%s: %s at revision %s; want rolled back to revision 3", o.name, r.Action, rev)
					}
					state := f.deployment(o.name).Annotations[undo.StateAnnotation]
					if !strings.Contains(state, "suspended "+o.owner.String()) {
						t.Errorf("%s: state annotation %s does not record the suspension", o.name, state)
					}
					if _, err := fixture.WaitEvents(ctx, kube.Clientset, o.owner.Namespace, o.owner.Kind, o.owner.Name, report.ReasonSuspended, 1); err != nil {
						t.Errorf("no %s Event on %s: %v", report.ReasonSuspended, o.owner, err)
					}
					ev, err := fixture.WaitEvents(ctx, kube.Clientset, ns, "Deployment", o.name, report.ReasonRolledBack, 1)
					if err != nil || !strings.Contains(ev[0].Message, "suspended "+o.owner.String()) {
						t.Errorf("the RolledBack Event on %s does not say what was suspended: %v %v", o.name, ev, err)
					}
				case mode == gitops.Ignore:
					if r.Action != outcome.RolledBack || rev != "3" {
						t.Errorf("%s: %s at revision %s; want rolled back to revision 3", o.name, r.Action, rev)
					}
					if diff := cmp.Diff(before[o.name], after); diff != "" {
						t.Errorf("%s changed with ignore (-before +after):\n%s", o.owner, diff)
					}
				}
				if o.labels[gitops.ManagedByLabel] == "Helm" && r.Action == outcome.RolledBack &&
					!strings.Contains(r.Message, "the next `helm upgrade` puts the chart's template back") {
					t.Errorf("%s: Helm-managed, but the result does not say a helm upgrade supersedes it: %s", o.name, r.Message)
				}
			}
		})
	}
}
