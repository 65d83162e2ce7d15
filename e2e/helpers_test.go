package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
	"github.com/sre-kit/alert-rollback/e2e/fixture"
	"github.com/sre-kit/alert-rollback/e2e/run"
	"github.com/sre-kit/alert-rollback/internal/alert"
)

// env is one test's namespace with the function's identity installed from kservice.yaml.
type env struct {
	t  testing.TB
	ns string
	cs kubernetes.Interface
	// dir holds the logs of the processes the test starts.
	dir string
	// token is the bearer token the function wants from Alertmanager.
	token string
	// kubeconfig authenticates as kservice.yaml's ServiceAccount, with only its Role.
	kubeconfig string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t, ns: namespaceFor(t), cs: kube.Clientset, dir: t.TempDir(), token: "e2e-token-" + namespaceFor(t)}
	if err := kube.CreateNamespace(ctx, e.ns); err != nil {
		t.Fatalf("create namespace %s: %v", e.ns, err)
	}
	if out, err := kube.Kubectl(ctx, "apply", "-n", e.ns, "-f", repoFile("kservice.yaml")); err != nil {
		t.Fatalf("kubectl apply -n %s -f kservice.yaml: %v: %s", e.ns, err, out)
	}
	sa, err := kube.Token(ctx, e.ns, "alert-rollback")
	if err != nil {
		t.Fatalf("token for alert-rollback: %v", err)
	}
	// The Node's room is shared by every test: free it when the test ends. The garbage
	// collector deletes the ReplicaSets and pods, and the harness's reaper finishes the pods
	// off, as a kubelet would.
	t.Cleanup(func() {
		bg := metav1.DeletePropagationBackground
		del, all := metav1.DeleteOptions{PropagationPolicy: &bg}, metav1.ListOptions{}
		_ = e.cs.AppsV1().Deployments(e.ns).DeleteCollection(ctx, del, all)
		_ = e.cs.AppsV1().StatefulSets(e.ns).DeleteCollection(ctx, del, all)
		_ = e.cs.AppsV1().DaemonSets(e.ns).DeleteCollection(ctx, del, all)
	})
	e.kubeconfig = filepath.Join(e.dir, "kubeconfig")
	if err := kube.WriteKubeconfig(e.kubeconfig, e.ns, sa); err != nil {
		t.Fatal(err)
	}
	return e
}

// startFunction starts the built function as kservice.yaml's ServiceAccount, with the
// test's token, and settings on top; args are cmd/rollback's flags.
func (e *env) startFunction(name string, settings map[string]string, args ...string) *run.Function {
	e.t.Helper()
	vars := map[string]string{"KUBECONFIG": e.kubeconfig, "ROLLBACK_AUTH_TOKEN": e.token}
	for k, v := range settings {
		vars[k] = v
	}
	f, err := run.StartFunction(context.Background(), run.FunctionOptions{Dir: e.dir, Env: vars, Name: name, Args: args})
	if err != nil {
		e.t.Fatalf("start the function: %v", err)
	}
	e.t.Cleanup(func() {
		f.Stop()
		if e.t.Failed() {
			e.t.Logf("log of %s:\n%s", name, f.Log())
		}
	})
	return f
}

// brokenDeployment plays the seed's scenario: a Deployment at revision 1 whose pod is
// bound to the Node, then an update (revision 2) asking for more CPU than any Node has,
// whose pod is Unschedulable. It returns that pod's name.
func (e *env) brokenDeployment(name string) string {
	e.t.Helper()
	return e.brokenAfter(name, 1)
}

// brokenAfter rolls out good revisions that schedule (v1, v2, ...), then a bad one, and
// returns the name of the bad revision's Unschedulable pod.
func (e *env) brokenAfter(name string, good int) string {
	e.t.Helper()
	return e.brokenOwned(name, good)
}

// brokenOwned is brokenAfter for a Deployment created with owners as its owner references.
func (e *env) brokenOwned(name string, good int, owners ...metav1.OwnerReference) string {
	e.t.Helper()
	ctx := context.Background()
	d := fixture.Deployment(e.ns, name, fixture.Container("registry.invalid/"+name+":v1", "100m"))
	d.OwnerReferences = owners
	if _, err := e.cs.AppsV1().Deployments(e.ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	if err := fixture.WaitDeploymentRevision(ctx, e.cs, e.ns, name, 1); err != nil {
		e.t.Fatal(err)
	}
	update := func(rev int, cpu string) *appsv1.ReplicaSet {
		if rev > 1 {
			err := fixture.UpdateDeployment(ctx, e.cs, e.ns, name, int64(rev), func(d *appsv1.Deployment) {
				d.Spec.Template.Spec.Containers[0] = fixture.Container(fmt.Sprintf("registry.invalid/%s:v%d", name, rev), cpu)
			})
			if err != nil {
				e.t.Fatal(err)
			}
		}
		rs, err := fixture.ReplicaSetOfRevision(ctx, e.cs, e.ns, name, int64(rev))
		if err != nil {
			e.t.Fatal(err)
		}
		return rs
	}
	for rev := 1; rev <= good; rev++ {
		if _, err := fixture.WaitPod(ctx, e.cs, e.ns, update(rev, "100m"), corev1.ConditionTrue, ""); err != nil {
			e.t.Fatal(err)
		}
	}
	pod, err := fixture.WaitPod(ctx, e.cs, e.ns, update(good+1, "64"), corev1.ConditionFalse, corev1.PodReasonUnschedulable)
	if err != nil {
		e.t.Fatal(err)
	}
	return pod
}

func (e *env) deployment(name string) *appsv1.Deployment {
	e.t.Helper()
	d, err := e.cs.AppsV1().Deployments(e.ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

// seedAlert is the seed's alert, as the shipped rule fires it: about a pod, with its
// namespace, asking for a rollback. Its fingerprint is computed as Alertmanager computes
// it, so a notification built here and one Alertmanager sends about the same alert agree.
func seedAlert(ns, pod string, startsAt time.Time) alert.Alert {
	labels := map[string]string{"alertname": "KubePodUnschedulable", "namespace": ns, "pod": pod, "severity": "rollback"}
	return alertWith(labels, startsAt)
}

func alertWith(labels map[string]string, startsAt time.Time) alert.Alert {
	ls := model.LabelSet{}
	for k, v := range labels {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return alert.Alert{
		Status: "firing", Labels: labels, StartsAt: startsAt.UTC(), Fingerprint: ls.Fingerprint().String(),
		Annotations: map[string]string{"summary": "pod cannot be scheduled"},
	}
}

func notification(alerts ...alert.Alert) []byte {
	b, err := json.Marshal(alert.Message{Version: "4", Status: "firing", Receiver: "alert-rollback", Alerts: alerts})
	if err != nil {
		panic(err)
	}
	return b
}

// amAlert is the same alert as Prometheus would post it to Alertmanager.
func amAlert(a alert.Alert) run.Alert {
	return run.Alert{Labels: a.Labels, Annotations: a.Annotations, StartsAt: a.StartsAt}
}

func writeFile(t testing.TB, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// settled returns the Deployment once the controllers have stopped writing to it (its
// resourceVersion held for a second), so a test can then check that nothing else does.
func (e *env) settled(name string) *appsv1.Deployment {
	e.t.Helper()
	d := e.deployment(name)
	stable := 0
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, fixture.PollTimeout, false, func(context.Context) (bool, error) {
		next := e.deployment(name)
		if next.ResourceVersion == d.ResourceVersion {
			stable++
		} else {
			stable = 0
		}
		d = next
		return stable >= 4, nil
	})
	if err != nil {
		e.t.Fatalf("Deployment %s never settled: %v", name, err)
	}
	return d
}

// consistently checks cond every 200 ms for d and fails the test the first time it returns
// an error: for "nothing more happens", which no single poll can show. Each check has its
// own deadline, so the end of d never cuts one short.
func consistently(t testing.TB, d time.Duration, cond func(context.Context) error) {
	t.Helper()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for end := time.Now().Add(d); time.Now().Before(end); <-tick.C {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := cond(ctx)
		cancel()
		if err != nil {
			t.Error(err)
			return
		}
	}
}

// functionRequests counts the API requests the function's ServiceAccount made in this
// test's namespace since mark, from the API server's audit log: those about Events apart.
func (e *env) functionRequests(mark cluster.AuditMark) (requests, events int) {
	e.t.Helper()
	log, err := kube.AuditSince(context.Background(), mark)
	if err != nil {
		e.t.Fatal(err)
	}
	user := "system:serviceaccount:" + e.ns + ":alert-rollback"
	for _, ev := range log {
		switch {
		case ev.User.Username != user:
		case ev.Resource() == "events":
			events++
		default:
			requests++
		}
	}
	return requests, events
}
