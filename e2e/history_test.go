package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sre-kit/alert-rollback/e2e/fixture"
	"github.com/sre-kit/alert-rollback/internal/outcome"
)

// TestPlantedHistory writes rollout history the workloads' controllers did not make, as
// anyone allowed to create ReplicaSets or ControllerRevisions in the namespace could, on the
// real control plane with its real controllers (which renumber, adopt and scale what they
// find), and shows that none of it steers an undo: each is refused (foreign-history), the
// workload is unchanged, and the planted image never runs.
func TestPlantedHistory(t *testing.T) {
	e := newEnv(t)
	f := e.startFunction("rollback", map[string]string{"ROLLBACK_COOLDOWN": "0s"})
	ctx := context.Background()
	const evil = "registry.invalid/evil/miner:latest"
	post := func(t *testing.T, labels map[string]string) outcome.Result {
		t.Helper()
		labels["alertname"], labels["severity"], labels["namespace"] = "Planted", "rollback", e.ns
		status, resp, err := f.Post(ctx, notification(alertWith(labels, time.Now())), e.token)
		if err != nil || status != http.StatusOK || len(resp.Results) != 1 {
			t.Fatalf("POST = %d %+v %v; want 200 and one result", status, resp, err)
		}
		return resp.Results[0]
	}

	t.Run("ReplicaSet at a free earlier number", func(t *testing.T) {
		e.brokenAfter("shop-api", 2) // revisions 1 and 2 run, 3 is Unschedulable
		rev2, err := fixture.ReplicaSetOfRevision(ctx, e.cs, e.ns, "shop-api", 2)
		if err != nil {
			t.Fatal(err)
		}
		// As revisionHistoryLimit pruning (or a person) would: revision 2 is gone.
		if err := e.cs.AppsV1().ReplicaSets(e.ns).Delete(ctx, rev2.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		// Someone fills the free number with an image of their choice, named, labelled and
		// owned as the controller would make it, later than revision 3's rollout (the
		// apiserver's creation times are whole seconds).
		rev3, err := fixture.ReplicaSetOfRevision(ctx, e.cs, e.ns, "shop-api", 3)
		if err != nil {
			t.Fatal(err)
		}
		waitPastSecond(t, rev3.CreationTimestamp.Time)
		planted := rev2.DeepCopy()
		planted.ObjectMeta = metav1.ObjectMeta{
			Name: "shop-api-5f8b9c7d6d", Labels: map[string]string{}, Annotations: map[string]string{"deployment.kubernetes.io/revision": "2"},
			OwnerReferences: rev2.OwnerReferences,
		}
		for k, v := range rev2.Labels {
			planted.Labels[k] = v
		}
		planted.Labels["pod-template-hash"] = "5f8b9c7d6d"
		planted.Spec.Selector.MatchLabels["pod-template-hash"] = "5f8b9c7d6d"
		planted.Spec.Template.Labels["pod-template-hash"] = "5f8b9c7d6d"
		planted.Spec.Template.Spec.Containers[0].Image = evil
		planted.Spec.Replicas = new(int32)
		planted.Status = appsv1.ReplicaSetStatus{}
		if _, err := e.cs.AppsV1().ReplicaSets(e.ns).Create(ctx, planted, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		before := e.deployment("shop-api")
		r := post(t, map[string]string{"deployment": "shop-api"})
		if r.Action != outcome.Refused || r.Reason != outcome.ReasonForeignHistory {
			t.Fatalf("result %s %s: %s; want refused foreign-history", r.Action, r.Reason, r.Message)
		}
		assertUnchanged(t, before, e.deployment("shop-api"))
	})

	t.Run("ReplicaSet at the number the function's own undo freed", func(t *testing.T) {
		e.brokenAfter("cart-api", 1) // revision 1 runs, 2 is Unschedulable
		if r := post(t, map[string]string{"deployment": "cart-api"}); r.Action != outcome.RolledBack || r.FromRevision != 2 || r.ToRevision != 1 {
			t.Fatalf("result %s %s %d->%d: %s; want rolled back from 2 to 1", r.Action, r.Reason, r.FromRevision, r.ToRevision, r.Message)
		}
		// The controller makes revision 1's ReplicaSet revision 3 and notes its old number.
		if err := fixture.WaitDeploymentRevision(ctx, e.cs, e.ns, "cart-api", 3); err != nil {
			t.Fatal(err)
		}
		current, err := fixture.ReplicaSetOfRevision(ctx, e.cs, e.ns, "cart-api", 3)
		if err != nil {
			t.Fatal(err)
		}
		if h := current.Annotations["deployment.kubernetes.io/revision-history"]; h != "1" {
			t.Fatalf("revision 3's revision-history = %q; want \"1\"", h)
		}
		// Revision 2 is marked bad: someone fills the free 1, the only target left.
		waitPastSecond(t, current.CreationTimestamp.Time)
		planted := plantedReplicaSet(current, "5d7c9b8f6b", 1, evil)
		if _, err := e.cs.AppsV1().ReplicaSets(e.ns).Create(ctx, planted, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		before := e.deployment("cart-api")
		r := post(t, map[string]string{"deployment": "cart-api"})
		if r.Action != outcome.Refused || r.Reason != outcome.ReasonForeignHistory {
			t.Fatalf("result %s %s: %s; want refused foreign-history", r.Action, r.Reason, r.Message)
		}
		after := e.deployment("cart-api")
		assertUnchanged(t, before, after)
		if a, b := before.Annotations["alert-rollback.dev/state"], after.Annotations["alert-rollback.dev/state"]; a != b {
			t.Errorf("state annotation %s -> %s; want no write", a, b)
		}
		t.Logf("%s %s: %s", r.Action, r.Reason, r.Message)
	})

	for _, kind := range []string{"StatefulSet", "DaemonSet"} {
		t.Run(kind+" revision planted above, renumbered past by the controller", func(t *testing.T) {
			name := strings.ToLower(kind) + "-planted"
			e.revisionRollout(kind, name, 2)
			crs, err := e.cs.AppsV1().ControllerRevisions(e.ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var current *appsv1.ControllerRevision
			for i := range crs.Items {
				if ref := metav1.GetControllerOf(&crs.Items[i]); ref != nil && ref.Name == name && crs.Items[i].Revision == 2 {
					current = &crs.Items[i]
				}
			}
			if current == nil {
				t.Fatalf("no revision 2 of %s", name)
			}
			waitPastSecond(t, current.CreationTimestamp.Time)
			planted := plantedRevision(t, current, evil, 3)
			if _, err := e.cs.AppsV1().ControllerRevisions(e.ns).Create(ctx, planted, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			// The controller, at its next sync (a change of the object's metadata is one),
			// makes the current revision the newest again: 2 becomes 4, and the planted 3 is
			// just below it, where undo looks.
			patch := []byte(`{"metadata":{"annotations":{"e2e/nudge":"1"}}}`)
			if kind == "StatefulSet" {
				_, err = e.cs.AppsV1().StatefulSets(e.ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
			} else {
				_, err = e.cs.AppsV1().DaemonSets(e.ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := fixture.WaitControllerRevision(ctx, e.cs, e.ns, name, 4); err != nil {
				t.Fatal(err)
			}
			image := func() string {
				if kind == "StatefulSet" {
					s, err := e.cs.AppsV1().StatefulSets(e.ns).Get(ctx, name, metav1.GetOptions{})
					if err != nil {
						t.Fatal(err)
					}
					return s.Spec.Template.Spec.Containers[0].Image
				}
				d, err := e.cs.AppsV1().DaemonSets(e.ns).Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				return d.Spec.Template.Spec.Containers[0].Image
			}
			before := image()
			r := post(t, map[string]string{strings.ToLower(kind): name})
			if r.Action != outcome.Refused || r.Reason != outcome.ReasonForeignHistory {
				t.Fatalf("result %s %s: %s; want refused foreign-history", r.Action, r.Reason, r.Message)
			}
			if after := image(); after != before {
				t.Fatalf("image %s after the refusal; want %s", after, before)
			}
			t.Logf("%s: %s %s: %s", kind, r.Action, r.Reason, r.Message)
		})
	}
}

// waitPastSecond waits until the clock is in a later second than t: the apiserver's creation
// times are whole seconds, and what is made next must be seen to come after.
func waitPastSecond(t *testing.T, at time.Time) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		return time.Now().Truncate(time.Second).After(at), nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// plantedRevision is a ControllerRevision of current's owner at number, restoring a template
// that runs image, named and labelled as the controller would name it.
func plantedRevision(t *testing.T, current *appsv1.ControllerRevision, image string, number int64) *appsv1.ControllerRevision {
	t.Helper()
	var data struct {
		Spec struct {
			Template corev1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(current.Data.Raw, &data); err != nil {
		t.Fatal(err)
	}
	data.Spec.Template.Spec.Containers[0].Image = image
	tmpl, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&data.Spec.Template)
	if err != nil {
		t.Fatal(err)
	}
	tmpl["$patch"] = "replace"
	raw, err := json.Marshal(map[string]any{"spec": map[string]any{"template": tmpl}})
	if err != nil {
		t.Fatal(err)
	}
	owner := metav1.GetControllerOf(current)
	hash := "6c4d8f9b7f"
	labels := map[string]string{}
	for k, v := range current.Labels {
		labels[k] = v
		if v == current.Name[len(owner.Name)+1:] {
			labels[k] = hash // the hash label, whichever the controller's
		}
	}
	return &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%s", owner.Name, hash), Labels: labels, OwnerReferences: current.OwnerReferences},
		Data:       runtime.RawExtension{Raw: raw},
		Revision:   number,
	}
}

// plantedReplicaSet is a ReplicaSet of like's Deployment claiming revision number and
// running image, named, labelled and owned as the controller would make it (hash is its
// pod-template-hash), scaled to zero.
func plantedReplicaSet(like *appsv1.ReplicaSet, hash string, number int, image string) *appsv1.ReplicaSet {
	rs := like.DeepCopy()
	owner := metav1.GetControllerOf(like).Name
	rs.ObjectMeta = metav1.ObjectMeta{
		Name: owner + "-" + hash, Labels: map[string]string{}, OwnerReferences: like.OwnerReferences,
		Annotations: map[string]string{"deployment.kubernetes.io/revision": fmt.Sprint(number)},
	}
	for k, v := range like.Labels {
		rs.Labels[k] = v
	}
	rs.Labels["pod-template-hash"] = hash
	rs.Spec.Selector.MatchLabels["pod-template-hash"] = hash
	rs.Spec.Template.Labels["pod-template-hash"] = hash
	rs.Spec.Template.Spec.Containers[0].Image = image
	rs.Spec.Replicas = new(int32)
	rs.Status = appsv1.ReplicaSetStatus{}
	return rs
}

// assertUnchanged fails unless the Deployment's template and revision are what they were.
func assertUnchanged(t *testing.T, before, after *appsv1.Deployment) {
	t.Helper()
	if !fixture.SameTemplate(before.Spec.Template, after.Spec.Template) ||
		before.Annotations["deployment.kubernetes.io/revision"] != after.Annotations["deployment.kubernetes.io/revision"] {
		t.Fatalf("Deployment changed: revision %s → %s, image %s → %s", before.Annotations["deployment.kubernetes.io/revision"],
			after.Annotations["deployment.kubernetes.io/revision"], before.Spec.Template.Spec.Containers[0].Image, after.Spec.Template.Spec.Containers[0].Image)
	}
}
