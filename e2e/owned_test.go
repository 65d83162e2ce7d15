package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
	"github.com/sre-kit/alert-rollback/e2e/fixture"
	"github.com/sre-kit/alert-rollback/internal/outcome"
)

// TestControllerOwned: a workload another controller owns is that controller's to write,
// and an undo of it would be put back. On the real control plane, a Deployment, a
// StatefulSet and a DaemonSet controlled by a Knative Service (a real object of Knative's
// own CRD, so the garbage collector keeps its dependents), each rolled out to a second
// revision (the Deployment's Unschedulable), are refused (controller-owned, naming the
// owner) whichever label the alert used, and the function writes none of them.
func TestControllerOwned(t *testing.T) {
	e := newEnv(t)
	f := e.startFunction("rollback", map[string]string{"ROLLBACK_COOLDOWN": "0s"})
	ctx := context.Background()
	owner := e.knativeService("hello")
	ownerName := fmt.Sprintf("%s %s %s", owner.APIVersion, owner.Kind, owner.Name)

	// refused posts an alert with labels and checks the answer: refused, controller-owned,
	// about the workload kind/name, naming the owner.
	refused := func(t *testing.T, labels map[string]string, kind, name string) {
		t.Helper()
		labels["alertname"], labels["severity"], labels["namespace"] = "Owned", "rollback", e.ns
		status, resp, err := f.Post(ctx, notification(alertWith(labels, time.Now())), e.token)
		if err != nil || status != http.StatusOK || len(resp.Results) != 1 {
			t.Fatalf("POST %v = %d %+v %v; want 200 and one result", labels, status, resp, err)
		}
		r := resp.Results[0]
		if r.Action != outcome.Refused || r.Reason != outcome.ReasonControllerOwned || r.Kind != kind || r.Name != name ||
			!strings.Contains(r.Message, ownerName) {
			t.Errorf("alert %v: %s %s %s/%s: %s; want refused controller-owned about %s %s, naming %s",
				labels, r.Action, r.Reason, r.Kind, r.Name, r.Message, kind, name, ownerName)
		}
	}

	t.Run("Deployment", func(t *testing.T) {
		mark, err := kube.AuditMark()
		if err != nil {
			t.Fatal(err)
		}
		pod := e.brokenOwned("hello-deployment", 1, owner) // revision 2 is Unschedulable
		rs, err := fixture.ReplicaSetOfRevision(ctx, e.cs, e.ns, "hello-deployment", 2)
		if err != nil {
			t.Fatal(err)
		}
		before := e.deployment("hello-deployment")
		for _, labels := range []map[string]string{{"pod": pod}, {"replicaset": rs.Name}, {"deployment": "hello-deployment"}} {
			refused(t, labels, "Deployment", "hello-deployment")
		}
		after := e.deployment("hello-deployment")
		assertUnchanged(t, before, after)
		if s, ok := after.Annotations["alert-rollback.dev/state"]; ok {
			t.Errorf("state annotation %s written", s)
		}
		e.assertNoWrites(mark)
	})

	for _, kind := range []string{"StatefulSet", "DaemonSet"} {
		t.Run(kind, func(t *testing.T) {
			mark, err := kube.AuditMark()
			if err != nil {
				t.Fatal(err)
			}
			name := "hello-" + strings.ToLower(kind)
			e.revisionRollout(kind, name, 2)
			// The owner comes after creation, as an operator adopting a workload sets it.
			patch := fmt.Sprintf(`{"metadata":{"ownerReferences":[{"apiVersion":%q,"kind":%q,"name":%q,"uid":%q,"controller":true}]}}`,
				owner.APIVersion, owner.Kind, owner.Name, owner.UID)
			if kind == "StatefulSet" {
				_, err = e.cs.AppsV1().StatefulSets(e.ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
			} else {
				_, err = e.cs.AppsV1().DaemonSets(e.ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
			}
			if err != nil {
				t.Fatal(err)
			}
			before := e.podTemplate(kind, name)
			refused(t, map[string]string{strings.ToLower(kind): name}, kind, name)
			refused(t, map[string]string{"pod": e.podOf(kind, name)}, kind, name)
			if after := e.podTemplate(kind, name); !fixture.SameTemplate(before, after) {
				t.Errorf("%s template changed: image %s -> %s", kind, before.Spec.Containers[0].Image, after.Spec.Containers[0].Image)
			}
			e.assertNoWrites(mark)
		})
	}
}

// knativeService creates a Knative Service (Knative's own CRD is installed; no Knative
// controller runs, so it stays as written) and returns a controller reference to it.
func (e *env) knativeService(name string) metav1.OwnerReference {
	e.t.Helper()
	ctx := context.Background()
	manifest := writeFile(e.t, filepath.Join(e.dir, name+".yaml"), fmt.Sprintf(`apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: %s
  namespace: %s
spec:
  template:
    spec:
      containers:
        - image: registry.invalid/%s:v1
`, name, e.ns, name))
	if out, err := kube.Kubectl(ctx, "apply", "-f", manifest); err != nil {
		e.t.Fatalf("apply a Knative Service: %v: %s", err, out)
	}
	uid, err := kube.Kubectl(ctx, "get", "-n", e.ns, "services.serving.knative.dev", name, "-o", "jsonpath={.metadata.uid}")
	if err != nil || strings.TrimSpace(uid) == "" {
		e.t.Fatalf("uid of Knative Service %s: %v: %s", name, err, uid)
	}
	return metav1.OwnerReference{APIVersion: "serving.knative.dev/v1", Kind: "Service", Name: name,
		UID: types.UID(strings.TrimSpace(uid)), Controller: ptr(true)}
}

// podOf waits for a pod the StatefulSet or DaemonSet controls and returns its name.
func (e *env) podOf(kind, name string) string {
	e.t.Helper()
	ctx := context.Background()
	var obj metav1.Object
	var err error
	if kind == "StatefulSet" {
		obj, err = e.cs.AppsV1().StatefulSets(e.ns).Get(ctx, name, metav1.GetOptions{})
	} else {
		obj, err = e.cs.AppsV1().DaemonSets(e.ns).Get(ctx, name, metav1.GetOptions{})
	}
	if err != nil {
		e.t.Fatal(err)
	}
	var pod string
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, fixture.PollTimeout, true, func(ctx context.Context) (bool, error) {
		pods, err := e.cs.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, p := range pods.Items {
			if ref := metav1.GetControllerOf(&p); ref != nil && ref.UID == obj.GetUID() && p.DeletionTimestamp == nil {
				pod = p.Name
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		e.t.Fatalf("no pod of %s %s: %v", kind, name, err)
	}
	return pod
}

// assertNoWrites fails if the function's ServiceAccount wrote anything but Events in the
// test's namespace since mark (the audit log, as the API server recorded it).
func (e *env) assertNoWrites(mark cluster.AuditMark) {
	e.t.Helper()
	log, err := kube.AuditSince(context.Background(), mark)
	if err != nil {
		e.t.Fatal(err)
	}
	user := "system:serviceaccount:" + e.ns + ":alert-rollback"
	for _, ev := range log {
		switch ev.Verb {
		case "get", "list", "watch":
			continue
		}
		if ev.User.Username == user && ev.Resource() != "events" {
			e.t.Errorf("the function wrote: %s %s %s", ev.Verb, ev.Resource(), ev.ObjectRef.Name)
		}
	}
}
