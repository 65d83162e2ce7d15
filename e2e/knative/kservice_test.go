package knative

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
	"github.com/sre-kit/alert-rollback/e2e/fixture"
	"github.com/sre-kit/alert-rollback/e2e/run"
)

var (
	ksvcs = schema.GroupVersionResource{Group: "serving.knative.dev", Version: "v1", Resource: "services"}
	revs  = schema.GroupVersionResource{Group: "serving.knative.dev", Version: "v1", Resource: "revisions"}
)

// knTimeout bounds each wait on Knative: a revision's pod starts in seconds here, a failed
// one is marked so within a minute.
const knTimeout = 3 * time.Minute

// TestKnativeServiceRollback: on the real node with Knative Serving v0.50.0, the function
// (kservice.yaml, this build's image) rolls Knative Services back, woken by a real
// Alertmanager: a Service at a good revision is updated to a bad one (its pods crash, or
// cannot be scheduled); an alert naming the bad revision's pod, or its Deployment, or the
// revision by Knative's own metric label, makes the function set the Service's
// spec.template back to the good revision's, Knative makes a new revision of it, and a
// request to the Service answers from that revision. A Service whose traffic is pinned to a
// named revision is refused (traffic-pinned), and a Revision's Deployment the function may
// not follow (its Role lacks Knative's rules) is refused (controller-owned), nothing written.
func TestKnativeServiceRollback(t *testing.T) {
	ctx := context.Background()
	ns, token := "kn-services", "knative-token-kn-services"
	dir := t.TempDir()
	if err := kube.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "alert-rollback-auth"}, StringData: map[string]string{"token": token}}
	if _, err := kube.Clientset.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := run.ApplyKService(ctx, kube, dir, "../../kservice.yaml", ns, cluster.RollbackImage, nil); err != nil {
		t.Fatal(err)
	}
	if out, err := kube.Kubectl(ctx, "wait", "-n", ns, "--for=condition=Ready", "--timeout=180s", "ksvc/alert-rollback"); err != nil {
		t.Fatalf("kservice.yaml not Ready: %v: %s", err, out)
	}
	dyn, err := dynamic.NewForConfig(kube.Config)
	if err != nil {
		t.Fatal(err)
	}
	k := &knative{t: t, ns: ns, dir: dir, dyn: dyn}
	creds := filepath.Join(dir, "token")
	if err := os.WriteFile(creds, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	am, err := run.StartAlertmanager(ctx, run.AlertmanagerOptions{
		Dir: dir, Name: "alertmanager-" + ns,
		WebhookURL:      "http://alert-rollback." + ns + ".svc.cluster.local/",
		CredentialsFile: creds,
		Timers:          &run.Timers{GroupWait: "1s", GroupInterval: "1s", RepeatInterval: "1h"},
		Wrap:            kube.Wrap(), HTTP: kube.HTTP,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer am.Stop()
	fire := func(t *testing.T, alertname string, labels map[string]string) run.Alert {
		t.Helper()
		labels["alertname"], labels["namespace"], labels["severity"] = alertname, ns, "rollback"
		a := run.Alert{Labels: labels, StartsAt: time.Now()}
		if err := am.Fire(ctx, a); err != nil {
			t.Fatal(err)
		}
		t.Logf("alert %s fired into Alertmanager: %v", alertname, labels)
		return a
	}

	crash := func(c map[string]any) { c["image"] = cluster.CrashImage }
	unschedulable := func(c map[string]any) {
		c["resources"] = map[string]any{"requests": map[string]any{"cpu": "64"}}
	}
	rolledBack := []struct {
		name, how string
		bad       func(map[string]any)
		// byo names the revisions in the template (bring your own names).
		byo bool
		// labels name what the alert is about, given the bad revision and its pod.
		labels func(rev, pod string) map[string]string
	}{
		{name: "hello", how: "pod", bad: crash, labels: func(_, pod string) map[string]string { return map[string]string{"pod": pod} }},
		{name: "hola", how: "deployment", bad: unschedulable, labels: func(rev, _ string) map[string]string {
			return map[string]string{"deployment": rev + "-deployment"}
		}},
		{name: "byo", how: "kn_revision_name", bad: crash, byo: true, labels: func(rev, _ string) map[string]string {
			return map[string]string{"kn_revision_name": rev}
		}},
	}
	for _, tc := range rolledBack {
		t.Run(tc.name, func(t *testing.T) {
			k.t = t
			good, bad, pod := k.goodThenBad(tc.name, tc.byo, tc.bad)
			before := k.state(tc.name)
			servedBefore := k.ask(tc.name, good)
			a := fire(t, "KnativeBad"+tc.name, tc.labels(bad, pod))
			ev, err := fixture.WaitEvents(ctx, kube.Clientset, ns, "Service", tc.name, "RolledBack", 1)
			if err != nil {
				t.Fatalf("the function did not roll %s back: %v\n%s", tc.name, err, k.events())
			}
			if ev[0].InvolvedObject.APIVersion != "serving.knative.dev/v1" || ev[0].Annotations["alert-rollback.dev/reason"] != "rolled-back" {
				t.Errorf("Event %s on %s: %s; want rolled-back on the Knative Service", ev[0].Reason, ev[0].InvolvedObject.APIVersion, ev[0].Message)
			}
			after := k.waitServing(tc.name, before.latestCreated)
			if after.image != before.goodImage || after.latestCreated == bad || after.latestCreated == good {
				t.Fatalf("after: %+v; want a new revision with the good template (image %s)", after, before.goodImage)
			}
			if tc.byo && after.templateName != "" {
				t.Errorf("the restored template names its revision %q", after.templateName)
			}
			if !after.hasState {
				t.Errorf("no state annotation on the Service after its undo")
			}
			servedAfter := k.ask(tc.name, after.latestCreated)
			// The alert resolves, as Prometheus would once the bad pods are gone: the resolved
			// notification verifies the undo by the Service's own status.
			a.EndsAt = time.Now()
			if err := am.Fire(ctx, a); err != nil {
				t.Fatal(err)
			}
			healed, err := fixture.WaitEvents(ctx, kube.Clientset, ns, "Service", tc.name, "RollbackHealed", 1)
			if err != nil {
				t.Fatalf("the resolved notification did not verify %s as healed: %v\n%s", tc.name, err, k.events())
			}
			t.Logf("verified: %s", healed[0].Message)
			fmt.Printf("knative-service %-5s alert on %-16s: before: revision %s (image %s, Ready %s), serving %s -> after: revision %s (image %s, Ready %s), serving %s; Event: %s\n",
				tc.name, tc.how, before.latestCreated, before.image, before.ready, servedBefore,
				after.latestCreated, after.image, after.ready, servedAfter, ev[0].Message)
		})
	}

	t.Run("traffic pinned", func(t *testing.T) {
		k.t = t
		name := "pinned"
		k.apply(name, "pinned-v1", cluster.AppImage, nil, "pinned-v1")
		k.waitRevisionReady("pinned-v1")
		k.apply(name, "pinned-v2", cluster.AppImage, unschedulable, "pinned-v1")
		before := k.state(name)
		fire(t, "KnativePinned", map[string]string{"knative_service": name})
		ev, err := fixture.WaitEvents(ctx, kube.Clientset, ns, "Service", name, "RollbackRefused", 1)
		if err != nil {
			t.Fatalf("no refusal: %v\n%s", err, k.events())
		}
		if r := ev[0].Annotations["alert-rollback.dev/reason"]; r != "traffic-pinned" || !strings.Contains(ev[0].Message, "latestRevision: true") {
			t.Errorf("refused %s: %s; want traffic-pinned, saying what to do", r, ev[0].Message)
		}
		after := k.state(name)
		if after.templateName != "pinned-v2" || after.generation != before.generation {
			t.Errorf("the Service changed: %+v -> %+v", before, after)
		}
		fmt.Printf("knative-service pinned alert on knative_service : spec.traffic 100%% to pinned-v1, template pinned-v2 -> refused traffic-pinned (%s); Service unchanged (generation %d)\n",
			ev[0].Message, after.generation)
	})

	t.Run("no rights to follow the Revision", func(t *testing.T) {
		k.t = t
		name := "norights"
		revoke(t, ns)
		_, bad, pod := k.goodThenBad(name, false, unschedulable)
		before := k.state(name)
		deployment := bad + "-deployment"
		d0, err := kube.Clientset.AppsV1().Deployments(ns).Get(ctx, deployment, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		fire(t, "KnativeNoRights", map[string]string{"pod": pod})
		ev, err := fixture.WaitEvents(ctx, kube.Clientset, ns, "Deployment", deployment, "RollbackRefused", 1)
		if err != nil {
			t.Fatalf("no refusal: %v\n%s", err, k.events())
		}
		if r := ev[0].Annotations["alert-rollback.dev/reason"]; r != "controller-owned" || !strings.Contains(ev[0].Message, "Revision "+bad) {
			t.Errorf("refused %s: %s; want controller-owned naming Revision %s", r, ev[0].Message, bad)
		}
		d1, err := kube.Clientset.AppsV1().Deployments(ns).Get(ctx, deployment, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !fixture.SameTemplate(d0.Spec.Template, d1.Spec.Template) {
			t.Errorf("the Deployment Knative owns was written")
		}
		after := k.state(name)
		if after.generation != before.generation {
			t.Errorf("the Service changed: %+v -> %+v", before, after)
		}
		fmt.Printf("knative-service norights alert on pod %s: Role without serving.knative.dev -> refused controller-owned on Deployment %s (%s); Deployment and Service unchanged (generation %d, latest Ready %s)\n",
			pod, deployment, ev[0].Message, after.generation, after.latestReady)
	})
}

// knative drives Knative Services of namespace ns.
type knative struct {
	t   *testing.T
	ns  string
	dir string
	dyn dynamic.Interface
}

// apply applies Knative Service name with one container running image, changed by edit
// if not nil; revision names the template's revision (bring your own name) unless empty;
// pinned, unless empty, routes all traffic to that revision name.
func (k *knative) apply(name, revision, image string, edit func(map[string]any), pinned string) {
	k.t.Helper()
	container := map[string]any{"image": image}
	if edit != nil {
		edit(container)
	}
	meta := map[string]any{}
	if revision != "" {
		meta["name"] = revision
	}
	spec := map[string]any{"template": map[string]any{"metadata": meta, "spec": map[string]any{"containers": []any{container}}}}
	if pinned != "" {
		spec["traffic"] = []any{map[string]any{"revisionName": pinned, "percent": int64(100)}}
	}
	svc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "serving.knative.dev/v1", "kind": "Service",
		"metadata": map[string]any{"name": name, "namespace": k.ns}, "spec": spec,
	}}
	b, err := svc.MarshalJSON()
	if err != nil {
		k.t.Fatal(err)
	}
	path := filepath.Join(k.dir, name+".json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		k.t.Fatal(err)
	}
	if out, err := kube.Kubectl(context.Background(), "apply", "-f", path); err != nil {
		k.t.Fatalf("kubectl apply Knative Service %s: %v: %s", name, err, out)
	}
}

// goodThenBad creates Service name at a good revision (Ready), then updates it to a bad one
// (bad changes its container), and waits until that revision's pod is failing: crashing
// (restarted, or waiting in CrashLoopBackOff) or Unschedulable, what the alert is about.
// Knative itself may say so only once the revision's progress deadline (10 minutes) has
// passed: its revision's Ready stays Unknown until then. It returns both revisions' names
// and the failing pod's.
func (k *knative) goodThenBad(name string, byo bool, bad func(map[string]any)) (good, broken, pod string) {
	k.t.Helper()
	good, broken = name+"-00001", name+"-00002"
	if byo {
		good, broken = name+"-blue", name+"-green"
	}
	named := func(rev string) string { // the template's revision name: none unless brought
		if byo {
			return rev
		}
		return ""
	}
	k.apply(name, named(good), cluster.AppImage, nil, "")
	k.waitRevisionReady(good)
	k.apply(name, named(broken), cluster.AppImage, bad, "")
	pod, state := k.failingPod(broken)
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, knTimeout, true, func(context.Context) (bool, error) {
		return k.state(name).latestCreated == broken, nil
	})
	if err != nil {
		k.t.Fatalf("Knative Service %s does not report %s as its latest revision: %v", name, broken, err)
	}
	k.t.Logf("Knative Service %s: revision %s Ready, revision %s's pod %s %s", name, good, broken, pod, state)
	return good, broken, pod
}

func (k *knative) waitRevisionReady(name string) { k.t.Helper(); k.waitRevision(name, "True") }

// waitRevision waits until Revision name's Ready condition has status.
func (k *knative) waitRevision(name, status string) {
	k.t.Helper()
	var got string
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, knTimeout, true, func(ctx context.Context) (bool, error) {
		rev, err := k.dyn.Resource(revs).Namespace(k.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		got = condition(rev, "Ready")
		return got == status, nil
	})
	if err != nil {
		k.t.Fatalf("revision %s Ready %q; want %q: %v\n%s", name, got, status, err, k.events())
	}
}

// failingPod waits for a pod of Revision rev (Knative labels them with it) that has crashed or
// cannot be scheduled, and returns its name and state.
func (k *knative) failingPod(rev string) (pod, state string) {
	k.t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, knTimeout, true, func(ctx context.Context) (bool, error) {
		pods, err := kube.Clientset.CoreV1().Pods(k.ns).List(ctx, metav1.ListOptions{LabelSelector: "serving.knative.dev/revision=" + rev})
		if err != nil {
			return false, nil
		}
		for _, p := range pods.Items {
			pod = p.Name
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
					state = "Unschedulable: " + c.Message
					return true, nil
				}
			}
			for _, c := range p.Status.ContainerStatuses {
				if c.Name == "user-container" && c.RestartCount > 0 {
					state = fmt.Sprintf("crashing (restarts %d)", c.RestartCount)
					return true, nil
				}
			}
		}
		return false, nil
	})
	if err != nil {
		k.t.Fatalf("no failing pod of revision %s (last seen %q): %v\n%s", rev, pod, err, k.events())
	}
	return pod, state
}

// serviceState is what a Knative Service says of itself.
type serviceState struct {
	generation                 int64
	latestCreated, latestReady string
	ready                      string
	image, templateName        string
	traffic                    string
	goodImage                  string // the image of the latest Ready revision
	hasState                   bool   // the function's state annotation is there
}

func (k *knative) state(name string) serviceState {
	k.t.Helper()
	ctx := context.Background()
	svc, err := k.dyn.Resource(ksvcs).Namespace(k.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		k.t.Fatal(err)
	}
	_, hasState := svc.GetAnnotations()["alert-rollback.dev/state"]
	s := serviceState{generation: svc.GetGeneration(), ready: condition(svc, "Ready"), hasState: hasState}
	s.latestCreated, _, _ = unstructured.NestedString(svc.Object, "status", "latestCreatedRevisionName")
	s.latestReady, _, _ = unstructured.NestedString(svc.Object, "status", "latestReadyRevisionName")
	s.templateName, _, _ = unstructured.NestedString(svc.Object, "spec", "template", "metadata", "name")
	containers, _, _ := unstructured.NestedSlice(svc.Object, "spec", "template", "spec", "containers")
	s.image = describe(containers)
	traffic, _, _ := unstructured.NestedSlice(svc.Object, "status", "traffic")
	s.traffic = fmt.Sprint(traffic)
	if s.latestReady != "" {
		rev, err := k.dyn.Resource(revs).Namespace(k.ns).Get(ctx, s.latestReady, metav1.GetOptions{})
		if err == nil {
			containers, _, _ := unstructured.NestedSlice(rev.Object, "spec", "containers")
			s.goodImage = describe(containers)
		}
	}
	return s
}

// describe says what the first container runs: its image, and its CPU request when set.
func describe(containers []any) string {
	if len(containers) == 0 {
		return ""
	}
	c, _ := containers[0].(map[string]any)
	s, _ := c["image"].(string)
	if cpu, found, _ := unstructured.NestedString(c, "resources", "requests", "cpu"); found {
		s += ", cpu " + cpu
	}
	return s
}

// waitServing waits until the Service has a new revision (not previous), Ready, that is the
// latest created and the latest Ready and takes all the traffic, and the Service is Ready.
func (k *knative) waitServing(name, previous string) serviceState {
	k.t.Helper()
	var s serviceState
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, knTimeout, true, func(context.Context) (bool, error) {
		s = k.state(name)
		return s.latestCreated != previous && s.latestCreated == s.latestReady && s.ready == "True" &&
			strings.Contains(s.traffic, "revisionName:"+s.latestCreated) && strings.Contains(s.traffic, "percent:100"), nil
	})
	if err != nil {
		k.t.Fatalf("Service %s not serving a new revision: %+v: %v\n%s", name, s, err, k.events())
	}
	return s
}

// ask sends a request to the Service through the ingress (its cluster-local name) and
// returns the revision that answered (the app's App-Revision header). It asks again while
// the ingress does not route the name yet or routes it to another revision than want.
func (k *knative) ask(name, want string) string {
	k.t.Helper()
	var got string
	err := wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, knTimeout, true, func(ctx context.Context) (bool, error) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(cluster.NodeIP, "8081")+"/", nil)
		if err != nil {
			return false, err
		}
		req.Host = name + "." + k.ns + ".svc.cluster.local"
		resp, err := kube.HTTP.Do(req)
		if err != nil {
			got = err.Error()
			return false, nil
		}
		resp.Body.Close()
		got = fmt.Sprintf("%d %s", resp.StatusCode, resp.Header.Get("App-Revision"))
		return resp.StatusCode == http.StatusOK && resp.Header.Get("App-Revision") == want, nil
	})
	if err != nil {
		k.t.Fatalf("request to %s: %s; want 200 from revision %s: %v", name, got, want, err)
	}
	return want
}

// events lists the namespace's Events, for a failure's message.
func (k *knative) events() string {
	out, _ := kube.Kubectl(context.Background(), "get", "events", "-n", k.ns, "--sort-by=.lastTimestamp")
	if lines := strings.Split(strings.TrimRight(out, "\n"), "\n"); len(lines) > 30 {
		out = strings.Join(lines[len(lines)-30:], "\n")
	}
	return out
}

func condition(obj *unstructured.Unstructured, typ string) string {
	conditions, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conditions {
		if m, ok := c.(map[string]any); ok && m["type"] == typ {
			s, _ := m["status"].(string)
			return s
		}
	}
	return ""
}

// revoke takes Knative Serving's rules out of the function's Role, as a user who applied an
// older kservice.yaml would have it, and waits until the authorizer says so.
func revoke(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	role, err := kube.Clientset.RbacV1().Roles(ns).Get(ctx, "alert-rollback", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var kept []rbacv1.PolicyRule
	for _, r := range role.Rules {
		if len(r.APIGroups) != 1 || r.APIGroups[0] != "serving.knative.dev" {
			kept = append(kept, r)
		}
	}
	if len(kept) == len(role.Rules) {
		t.Fatalf("kservice.yaml's Role has no serving.knative.dev rule: %+v", role.Rules)
	}
	role.Rules = kept
	if _, err := kube.Clientset.RbacV1().Roles(ns).Update(ctx, role, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		out, _ := kube.Kubectl(ctx, "auth", "can-i", "get", "revisions.serving.knative.dev", "-n", ns, "--as=system:serviceaccount:"+ns+":alert-rollback")
		return strings.TrimSpace(out) == "no", nil
	})
	if err != nil {
		t.Fatalf("the function may still read Revisions: %v", err)
	}
}
