package node

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
	"github.com/sre-kit/alert-rollback/e2e/fixture"
	"github.com/sre-kit/alert-rollback/e2e/run"
	"github.com/sre-kit/alert-rollback/internal/alert"
	"github.com/sre-kit/alert-rollback/internal/outcome"
)

// rollouts is the Argo Rollout's resource.
var rollouts = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "rollouts"}

// rolloutTimeout bounds each wait on the Argo Rollouts controller and the node: a healthy
// step takes seconds, a busy 2-core machine many more.
const rolloutTimeout = 4 * time.Minute

// TestArgoRollout runs the Argo Rollouts controller v1.10.2 (built from its module, with the
// CRDs of the same module) against the real node, and the function as a pod with
// kservice.yaml's RBAC. A canary Rollout whose new revision crash-loops mid-rollout is
// aborted (the stable ReplicaSet serves, the canary is scaled down, the template is left as
// it was); a Rollout whose bad revision was fully promoted is undone to the previous
// revision (its pods Ready, its image back). The answer says which of the two was done.
func TestArgoRollout(t *testing.T) {
	cluster.Require(t, "rollouts-controller", "argo-rollouts-crds.yaml")
	ctx := context.Background()
	ns := "argo"
	if err := kube.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	startArgoRollouts(t)
	dyn, err := dynamic.NewForConfig(kube.Config)
	if err != nil {
		t.Fatal(err)
	}
	token := "node-token-argo"
	url := startFunctionPod(t, ns, cluster.RollbackImage, token)
	a := &argo{t: t, dyn: dyn.Resource(rollouts).Namespace(ns), ns: ns}

	t.Run("abort during a rollout", func(t *testing.T) {
		a := a.with(t)
		stable := a.create("web")
		a.setImage("web", cluster.CrashImage)
		canary := a.waitRollout("web", "the canary of revision 2 created", func(ro *unstructured.Unstructured) bool {
			return status(ro, "currentPodHash") != stable && status(ro, "stableRS") == stable
		})
		canaryRS := "web-" + status(canary, "currentPodHash")
		pod, err := run.WaitContainerWaiting(ctx, kube.Clientset, ns, a.replicaSet(canaryRS), "CrashLoopBackOff")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("before: %s", a.describe("web"))
		labels := map[string]string{"alertname": "KubePodCrashLooping", "namespace": ns, "pod": pod,
			"container": "app", "reason": "CrashLoopBackOff", "severity": "rollback"}
		r := a.post(url, token, labels)
		if r.FromRevision != 2 || r.ToRevision != 1 || !slices.ContainsFunc(r.Notes, func(n string) bool { return strings.Contains(n, "kubectl argo rollouts abort") }) {
			t.Fatalf("answer %+v; want revision 2 to 1, aborted", r)
		}
		after := a.waitRollout("web", "aborted, the canary scaled down and the stable ReplicaSet serving", func(ro *unstructured.Unstructured) bool {
			abort, _, _ := unstructured.NestedBool(ro.Object, "status", "abort")
			return abort && a.scaledDown(canaryRS) && a.serving(stable, cluster.AppImage, 2)
		})
		if image := templateImage(after); image != cluster.CrashImage {
			t.Errorf("the Rollout's template runs %s; an abort leaves it at %s", image, cluster.CrashImage)
		}
		t.Logf("after:  %s", a.describe("web"))
		// The alert resolves: the abort healed the Rollout (Argo calls it Degraded, aborted).
		a.resolved(url, token, labels)
	})

	t.Run("undo after full promotion", func(t *testing.T) {
		a := a.with(t)
		first := a.create("api")
		// A revision that runs and is Ready, but serves nothing: the pause image.
		a.setImage("api", cluster.PauseImage)
		promoted := a.waitRollout("api", "revision 2 fully promoted", func(ro *unstructured.Unstructured) bool {
			h := status(ro, "currentPodHash")
			return h != first && status(ro, "stableRS") == h && status(ro, "phase") == "Healthy"
		})
		bad := status(promoted, "stableRS")
		t.Logf("before: %s", a.describe("api"))
		labels := map[string]string{"alertname": "AppNotServing", "namespace": ns, "rollout": "api", "severity": "rollback"}
		r := a.post(url, token, labels)
		if r.FromRevision != 2 || r.ToRevision != 1 || !slices.ContainsFunc(r.Notes, func(n string) bool { return strings.Contains(n, "kubectl argo rollouts undo") }) {
			t.Fatalf("answer %+v; want revision 2 to 1, undone", r)
		}
		after := a.waitRollout("api", "revision 1's template promoted again, its pods Ready", func(ro *unstructured.Unstructured) bool {
			return status(ro, "stableRS") == first && status(ro, "currentPodHash") == first && status(ro, "phase") == "Healthy" &&
				a.scaledDown("api-"+bad) && a.serving(first, cluster.AppImage, 2)
		})
		if image := templateImage(after); image != cluster.AppImage {
			t.Errorf("the Rollout's template runs %s; want %s back", image, cluster.AppImage)
		}
		if _, hashed := templateLabels(after)["rollouts-pod-template-hash"]; hashed {
			t.Errorf("the undo wrote the ReplicaSet's rollouts-pod-template-hash into the Rollout's template")
		}
		t.Logf("after:  %s", a.describe("api"))
		a.resolved(url, token, labels)
	})

	// The Rollout runs a Deployment's template (workloadRef); the alert names the Deployment,
	// which has no owner reference to follow: the function finds the Rollout that runs it
	// and undoes it as the plugin does, writing the Deployment's template.
	t.Run("workloadRef Deployment named by the alert", func(t *testing.T) {
		a := a.with(t)
		const name, dep = "cart", "cart-app"
		first := a.createRef(name, dep)
		a.setDeploymentImage(dep, cluster.PauseImage)
		promoted := a.waitRollout(name, "revision 2 fully promoted", func(ro *unstructured.Unstructured) bool {
			h := status(ro, "currentPodHash")
			return h != first && status(ro, "stableRS") == h && status(ro, "phase") == "Healthy"
		})
		bad := status(promoted, "stableRS")
		t.Logf("before: %s; Deployment %s runs %s", a.describe(name), dep, a.deploymentImage(dep))
		labels := map[string]string{"alertname": "AppNotServing", "namespace": ns, "deployment": dep, "severity": "rollback"}
		r := a.post(url, token, labels)
		if r.Kind != "Rollout" || r.Name != name || !slices.ContainsFunc(r.Notes, func(n string) bool { return strings.Contains(n, "the template of Deployment "+dep) }) {
			t.Fatalf("answer %+v; want Rollout %s undone through Deployment %s's template", r, name, dep)
		}
		a.waitRollout(name, "revision 1's template promoted again, its pods Ready", func(ro *unstructured.Unstructured) bool {
			return status(ro, "stableRS") == first && status(ro, "currentPodHash") == first && status(ro, "phase") == "Healthy" &&
				a.scaledDown(name+"-"+bad) && a.serving(first, cluster.AppImage, 2)
		})
		if image := a.deploymentImage(dep); image != cluster.AppImage {
			t.Errorf("Deployment %s runs %s; want %s back", dep, image, cluster.AppImage)
		}
		t.Logf("after:  %s; Deployment %s runs %s", a.describe(name), dep, a.deploymentImage(dep))
		a.resolved(url, token, labels)
	})
}

// createRef makes Deployment dep (no replicas of its own) and the canary Rollout name that
// runs its template through workloadRef, and returns the Rollout's first ReplicaSet's hash
// once it is Healthy.
func (a *argo) createRef(name, dep string) string {
	a.t.Helper()
	c := fixture.Container(cluster.AppImage, "10m")
	c.ImagePullPolicy = corev1.PullNever
	d := fixture.Deployment(a.ns, dep, c)
	d.Spec.Replicas = new(int32)
	d.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}
	d.Spec.Template.Labels = map[string]string{"app": name}
	if _, err := kube.Clientset.AppsV1().Deployments(a.ns).Create(context.Background(), d, metav1.CreateOptions{}); err != nil {
		a.t.Fatal(err)
	}
	return a.startCanary(name, map[string]any{
		"workloadRef": map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "name": dep},
	})
}

// setDeploymentImage makes a new template of Deployment name, running image.
func (a *argo) setDeploymentImage(name, image string) {
	a.t.Helper()
	patch := fmt.Sprintf(`[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":%q}]`, image)
	if _, err := kube.Clientset.AppsV1().Deployments(a.ns).Patch(context.Background(), name, types.JSONPatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		a.t.Fatal(err)
	}
}

func (a *argo) deploymentImage(name string) string {
	a.t.Helper()
	d, err := kube.Clientset.AppsV1().Deployments(a.ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		a.t.Fatal(err)
	}
	return d.Spec.Template.Spec.Containers[0].Image
}

// startArgoRollouts applies the Argo Rollouts CRDs and runs its controller on the node (as a
// process with the admin kubeconfig, as Traefik runs), until the test ends.
func startArgoRollouts(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	crds, err := cluster.ToolPath("argo-rollouts-crds.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := kube.Kubectl(ctx, "apply", "--server-side", "-f", crds); err != nil {
		t.Fatalf("apply the Argo Rollouts CRDs: %v: %s", err, out)
	}
	if err := kube.WaitEstablished(ctx, "rollouts.argoproj.io"); err != nil {
		t.Fatal(err)
	}
	path, err := cluster.ToolPath("rollouts-controller")
	if err != nil {
		t.Fatal(err)
	}
	// Its metrics and health servers listen inside the node's namespace, on ports nothing of
	// the node uses.
	args := append(append([]string{}, kube.Wrap()...), path, "--kubeconfig", kube.Kubeconfig,
		"--leader-elect=false", "--metricsPort", "18090", "--healthzPort", "18091", "--loglevel", "info")
	p, err := cluster.StartProcess(cluster.ProcessSpec{Name: "rollouts-controller", Args: args,
		LogPath: filepath.Join(kube.Dir, "rollouts-controller.log")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("rollouts-controller's log (last lines):\n%s", p.Tail(40))
		}
		p.Stop()
	})
}

// argo drives Rollouts in one namespace.
type argo struct {
	t   *testing.T
	dyn dynamic.ResourceInterface
	ns  string
}

func (a *argo) with(t *testing.T) *argo { b := *a; b.t = t; return &b }

// create makes the canary Rollout name at the app's image (revision 1) and returns its
// ReplicaSet's hash once it is Healthy.
func (a *argo) create(name string) string {
	a.t.Helper()
	return a.startCanary(name, map[string]any{
		"template": map[string]any{
			"metadata": map[string]any{"labels": map[string]any{"app": name}},
			"spec": map[string]any{"containers": []any{map[string]any{
				"name": "app", "image": cluster.AppImage, "imagePullPolicy": "Never",
				"resources": map[string]any{"requests": map[string]any{"cpu": "10m"}},
			}}},
		},
	})
}

// startCanary makes the canary Rollout name whose pods come from pods (its template, or a
// workloadRef): two replicas, labelled app=name; a new revision goes to 50% of the pods,
// then the rest after 2 s. It returns the first ReplicaSet's hash once it is Healthy.
func (a *argo) startCanary(name string, pods map[string]any) string {
	a.t.Helper()
	spec := map[string]any{
		"replicas": int64(2),
		"selector": map[string]any{"matchLabels": map[string]any{"app": name}},
		"strategy": map[string]any{"canary": map[string]any{"steps": []any{
			map[string]any{"setWeight": int64(50)},
			map[string]any{"pause": map[string]any{"duration": "2s"}},
		}}},
	}
	maps.Copy(spec, pods)
	ro := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
		"metadata": map[string]any{"name": name, "namespace": a.ns},
		"spec":     spec,
	}}
	if _, err := a.dyn.Create(context.Background(), ro, metav1.CreateOptions{}); err != nil {
		a.t.Fatal(err)
	}
	healthy := a.waitRollout(name, "revision 1 Healthy", func(ro *unstructured.Unstructured) bool {
		h := status(ro, "stableRS")
		return h != "" && h == status(ro, "currentPodHash") && status(ro, "phase") == "Healthy" && a.serving(h, cluster.AppImage, 2)
	})
	return status(healthy, "stableRS")
}

// setImage makes a new revision of Rollout name running image.
func (a *argo) setImage(name, image string) {
	a.t.Helper()
	patch := fmt.Sprintf(`[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":%q}]`, image)
	if _, err := a.dyn.Patch(context.Background(), name, types.JSONPatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		a.t.Fatal(err)
	}
}

// waitRollout waits until ok holds for Rollout name, and returns it.
func (a *argo) waitRollout(name, what string, ok func(*unstructured.Unstructured) bool) *unstructured.Unstructured {
	a.t.Helper()
	var last *unstructured.Unstructured
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, rolloutTimeout, true, func(ctx context.Context) (bool, error) {
		ro, err := a.dyn.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = ro
		return ok(ro), nil
	})
	if err != nil {
		state := "not read"
		if last != nil {
			state = a.describe(name)
		}
		a.t.Fatalf("rollout %s: %s: %v; now %s", name, what, err, state)
	}
	return last
}

// replicaSet reads the ReplicaSet name.
func (a *argo) replicaSet(name string) *appsv1.ReplicaSet {
	a.t.Helper()
	rs, err := kube.Clientset.AppsV1().ReplicaSets(a.ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		a.t.Fatal(err)
	}
	return rs
}

// pods lists the pods of the namespace that are not being deleted.
func (a *argo) pods(selector string) []corev1.Pod {
	l, err := kube.Clientset.CoreV1().Pods(a.ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil
	}
	return slices.DeleteFunc(l.Items, func(p corev1.Pod) bool { return p.DeletionTimestamp != nil })
}

// serving reports whether n pods of the ReplicaSet of hash run image and are Ready.
func (a *argo) serving(hash, image string, n int) bool {
	ready := 0
	for _, p := range a.pods("rollouts-pod-template-hash=" + hash) {
		if p.Spec.Containers[0].Image == image && podReady(&p) {
			ready++
		}
	}
	return ready == n
}

// scaledDown reports whether ReplicaSet name wants no pods and has none left running.
func (a *argo) scaledDown(name string) bool {
	rs, err := kube.Clientset.AppsV1().ReplicaSets(a.ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil || rs.Spec.Replicas == nil || *rs.Spec.Replicas != 0 {
		return false
	}
	return len(a.pods("rollouts-pod-template-hash="+rs.Labels["rollouts-pod-template-hash"])) == 0
}

// describe is one line on Rollout name: its revision and template image, its stable and
// current ReplicaSets, whether it is aborted, and what serves (its Ready pods by ReplicaSet
// and image).
func (a *argo) describe(name string) string {
	ro, err := a.dyn.Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return err.Error()
	}
	abort, _, _ := unstructured.NestedBool(ro.Object, "status", "abort")
	serving := map[string]int{}
	var others []string
	for _, p := range a.pods("app=" + name) {
		key := fmt.Sprintf("%s-%s (%s)", name, p.Labels["rollouts-pod-template-hash"], p.Spec.Containers[0].Image)
		if podReady(&p) {
			serving[key]++
		} else {
			others = append(others, fmt.Sprintf("%s (%s)", run.PodState(&p), p.Spec.Containers[0].Image))
		}
	}
	var s []string
	for k, n := range serving {
		s = append(s, fmt.Sprintf("%d Ready pod(s) of %s", n, k))
	}
	slices.Sort(s)
	line := fmt.Sprintf("rollout %s revision %s, template %s, phase %s, stable %s-%s, current %s-%s, abort %v; serving: %s",
		name, ro.GetAnnotations()["rollout.argoproj.io/revision"], templateImage(ro), status(ro, "phase"),
		name, status(ro, "stableRS"), name, status(ro, "currentPodHash"), abort, strings.Join(s, ", "))
	if len(others) > 0 {
		line += "; not Ready: " + strings.Join(others, ", ")
	}
	return line
}

// post sends the alert to the function and returns its one result, which must be rolled-back.
func (a *argo) post(url, token string, labels map[string]string) outcome.Result {
	a.t.Helper()
	return a.send(url, token, run.AlertOf(labels, time.Now()), outcome.RolledBack)
}

// resolved sends the alert with labels as Alertmanager does once it has ended, and checks
// that the function verified the undo: healed.
func (a *argo) resolved(url, token string, labels map[string]string) outcome.Result {
	a.t.Helper()
	al := run.AlertOf(labels, time.Now().Add(-time.Minute))
	al.Status, al.EndsAt = "resolved", time.Now().UTC()
	r := a.send(url, token, al, outcome.Healed)
	if r.Reason != outcome.ReasonHealed {
		a.t.Fatalf("the resolved alert's answer: %+v; want healed", r)
	}
	return r
}

func (a *argo) send(url, token string, al alert.Alert, want outcome.Action) outcome.Result {
	a.t.Helper()
	began := time.Now()
	status, resp, err := run.PostNotification(context.Background(), kube.HTTP, url, run.Notification(al), token)
	if err != nil || status != http.StatusOK || len(resp.Results) != 1 || resp.Results[0].Action != want {
		a.t.Fatalf("POST the alert = %d %+v, %v; want 200 and one %s", status, resp, err, want)
	}
	r := resp.Results[0]
	a.t.Logf("answer in %s: %s %s/%s %s (%s): %s", time.Since(began).Round(time.Millisecond), r.Kind, r.Namespace, r.Name, r.Action, r.Reason, r.Message)
	return r
}

func status(ro *unstructured.Unstructured, field string) string {
	s, _, _ := unstructured.NestedString(ro.Object, "status", field)
	return s
}

func templateImage(ro *unstructured.Unstructured) string {
	cs, _, _ := unstructured.NestedSlice(ro.Object, "spec", "template", "spec", "containers")
	if len(cs) == 0 {
		return ""
	}
	image, _, _ := unstructured.NestedString(cs[0].(map[string]any), "image")
	return image
}

func templateLabels(ro *unstructured.Unstructured) map[string]string {
	l, _, _ := unstructured.NestedStringMap(ro.Object, "spec", "template", "metadata", "labels")
	return l
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
