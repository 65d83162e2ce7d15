package undo

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/sre-kit/alert-rollback/internal/fixture"
	"github.com/sre-kit/alert-rollback/internal/kinds"
	"github.com/sre-kit/alert-rollback/internal/kube/clientset"
)

// rolloutCase edits a Rollout fixture (the Rollout, its ReplicaSets and what else the
// typed clientset holds) before the test.
type rolloutCase func(ro *unstructured.Unstructured, rss []*appsv1.ReplicaSet) []runtime.Object

// TestRollout: an Argo Rollout during a rollout (not fully promoted) is aborted as
// `kubectl argo rollouts abort` does, and after full promotion undone as `kubectl argo
// rollouts undo` does, with the guards every kind has. Each case checks the error, the
// writes (resource and subresource), what the Rollout (or its workloadRef Deployment) holds
// after, and that the answer's note says which of the two was done.
func TestRollout(t *testing.T) {
	const name = "web"
	images := []string{"app:v1", "app:v2"}
	withStatus := func(field string, v any) rolloutCase {
		return func(ro *unstructured.Unstructured, _ []*appsv1.ReplicaSet) []runtime.Object {
			_ = unstructured.SetNestedField(ro.Object, v, "status", field)
			return nil
		}
	}
	withState := func(s State) rolloutCase {
		return func(ro *unstructured.Unstructured, _ []*appsv1.ReplicaSet) []runtime.Object {
			b, _ := json.Marshal(s)
			a := ro.GetAnnotations()
			a[StateAnnotation] = string(b)
			ro.SetAnnotations(a)
			return nil
		}
	}
	// workloadRef moves the Rollout's template to a Deployment it names, as Argo's docs
	// have it: the Deployment scaled to zero, its selector matching the Rollout's ReplicaSets.
	workloadRef := func(ro *unstructured.Unstructured, _ []*appsv1.ReplicaSet) []runtime.Object {
		d, _ := fixture.Deployment(ns, name+"-app", images[len(images)-1])
		d.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}
		d.Spec.Template = fixture.Template(name, images[len(images)-1])
		d.Spec.Replicas = ptr.To[int32](0)
		d.Generation = 3
		unstructured.RemoveNestedField(ro.Object, "spec", "template")
		_ = unstructured.SetNestedMap(ro.Object, map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "name": d.Name}, "spec", "workloadRef")
		_ = unstructured.SetNestedField(ro.Object, "3", "status", "workloadObservedGeneration")
		return []runtime.Object{d}
	}
	tests := []struct {
		name        string
		stable      int // index of the stable image
		images      []string
		edit        []rolloutCase
		req         Request
		dryRun      bool
		wantErr     error
		wantFrom    int64
		wantTo      int64
		wantWrites  []string // "patch rollouts[/status]", "patch deployments"
		wantImage   string   // the Rollout's template (or its workloadRef Deployment's) after
		wantAbort   bool
		wantNote    string // in the answer's notes
		wantBad     []string
		wantRefKind string // the workload acted on, when not the one asked for
	}{
		{
			name: "during a rollout: aborted", stable: 0,
			wantFrom: 2, wantTo: 1, wantWrites: []string{"patch rollouts/status", "patch rollouts"},
			wantImage: "app:v2", wantAbort: true, wantNote: "aborted the rollout as `kubectl argo rollouts abort` does",
			wantBad: []string{fixture.Hash("app:v2")},
		},
		{
			name: "fully promoted: undone", stable: 1,
			wantFrom: 2, wantTo: 1, wantWrites: []string{"patch rollouts"},
			wantImage: "app:v1", wantNote: "undone as `kubectl argo rollouts undo` does: the Rollout's template is revision 1's",
			wantBad: []string{fixture.Hash("app:v2")},
		},
		{
			// Revision 2 never became stable: the abort goes to the stable revision 1,
			// which the history reads as the previous one.
			name: "during a rollout that replaced another: aborted to the stable revision", stable: 0,
			images:   []string{"app:v1", "app:v2", "app:v3"},
			wantFrom: 3, wantTo: 1, wantWrites: []string{"patch rollouts/status", "patch rollouts"},
			wantImage: "app:v3", wantAbort: true, wantNote: "the stable revision 1",
			wantBad: []string{fixture.Hash("app:v3")},
		},
		{
			name: "flip-flop: a revision rolled back from is not a target", stable: 2,
			images:   []string{"app:v1", "app:v2", "app:v3"},
			edit:     []rolloutCase{withState(State{Bad: []string{fixture.Hash("app:v2")}})},
			wantFrom: 3, wantTo: 1, wantWrites: []string{"patch rollouts"}, wantImage: "app:v1",
			wantNote: "revision 1's", wantBad: []string{fixture.Hash("app:v2"), fixture.Hash("app:v3")},
		},
		{
			name: "already aborted: the stable revision serves", stable: 0,
			edit:    []rolloutCase{withStatus("abort", true)},
			wantErr: ErrAlreadyAtTarget, wantFrom: 2, wantTo: 1, wantImage: "app:v2", wantAbort: true,
		},
		{
			// The controller, aborting, lists the canary's own revision in its
			// revision-history: one ReplicaSet holding one number twice is not foreign.
			name: "already aborted, the canary's revision-history naming its own revision", stable: 0,
			edit: []rolloutCase{withStatus("abort", true), func(_ *unstructured.Unstructured, rss []*appsv1.ReplicaSet) []runtime.Object {
				rss[1].Annotations["rollout.argoproj.io/revision-history"] = "2"
				return nil
			}},
			wantErr: ErrAlreadyAtTarget, wantFrom: 2, wantTo: 1, wantImage: "app:v2", wantAbort: true,
		},
		{
			name: "spec not observed by the controller yet: pending", stable: 1,
			edit:    []rolloutCase{withStatus("observedGeneration", "0")},
			wantErr: ErrRolloutPending, wantFrom: 2, wantTo: 1, wantImage: "app:v2",
		},
		{
			name: "same alert again: already handled", stable: 1,
			edit:    []rolloutCase{withState(State{Handled: []string{"fp1@1764118800"}})},
			wantErr: ErrAlreadyHandled, wantImage: "app:v2",
		},
		{
			name: "cooldown", stable: 1,
			edit:    []rolloutCase{withState(State{Last: &Record{At: now.Add(-time.Minute), From: 1, To: 0}})},
			wantErr: ErrCooldown, wantFrom: 2, wantTo: 1, wantImage: "app:v2",
		},
		{
			name: "paused by hand: refused", stable: 0,
			edit: []rolloutCase{func(ro *unstructured.Unstructured, _ []*appsv1.ReplicaSet) []runtime.Object {
				_ = unstructured.SetNestedField(ro.Object, true, "spec", "paused")
				return nil
			}},
			wantErr: ErrPaused, wantImage: "app:v2",
		},
		{
			name: "controlled by another object: refused", stable: 1,
			edit: []rolloutCase{func(ro *unstructured.Unstructured, _ []*appsv1.ReplicaSet) []runtime.Object {
				ro.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: "example.dev/v1", Kind: "App", Name: "web", UID: "uid-app", Controller: ptr.To(true)}})
				return nil
			}},
			wantErr: ErrControllerOwned, wantImage: "app:v2",
		},
		{
			name: "a ReplicaSet its controller did not name: foreign history", stable: 1,
			edit: []rolloutCase{func(_ *unstructured.Unstructured, rss []*appsv1.ReplicaSet) []runtime.Object {
				rss[0].Name = "web-other"
				return nil
			}},
			wantErr: ErrForeignHistory, wantImage: "app:v2",
		},
		{
			name: "dry run: the server is asked, nothing changes", stable: 0, dryRun: true,
			wantFrom: 2, wantTo: 1, wantWrites: []string{"patch rollouts/status", "patch rollouts"}, wantImage: "app:v2",
			wantNote: "aborted",
		},
		{
			name: "workloadRef, fully promoted: the Deployment's template undone", stable: 1,
			edit:     []rolloutCase{workloadRef},
			wantFrom: 2, wantTo: 1, wantWrites: []string{"patch deployments", "patch rollouts"}, wantImage: "app:v1",
			wantNote: "the template of Deployment web-app (the Rollout's workloadRef) is revision 1's", wantBad: []string{fixture.Hash("app:v2")},
		},
		{
			// The Deployment is what the undo would write: another controller's Deployment is
			// refused as it would be if the alert named it.
			name: "workloadRef Deployment controlled by another object: refused", stable: 1,
			edit: []rolloutCase{func(ro *unstructured.Unstructured, rss []*appsv1.ReplicaSet) []runtime.Object {
				objs := workloadRef(ro, rss)
				d := objs[0].(*appsv1.Deployment)
				d.OwnerReferences = []metav1.OwnerReference{{APIVersion: "example.dev/v1", Kind: "App", Name: "web", UID: "uid-app", Controller: ptr.To(true)}}
				return objs
			}},
			wantErr: ErrControllerOwned, wantImage: "app:v2",
		},
		{
			name: "workloadRef Deployment opted out: refused", stable: 1,
			edit: []rolloutCase{func(ro *unstructured.Unstructured, rss []*appsv1.ReplicaSet) []runtime.Object {
				objs := workloadRef(ro, rss)
				objs[0].(*appsv1.Deployment).Annotations = map[string]string{OptOutAnnotation: "true"}
				return objs
			}},
			wantErr: ErrOptOut, wantImage: "app:v2",
		},
		{
			name: "workloadRef Deployment named: its Rollout is undone", stable: 0,
			edit: []rolloutCase{workloadRef}, req: request(kinds.Deployment, "web-app"),
			wantFrom: 2, wantTo: 1, wantWrites: []string{"patch rollouts/status", "patch rollouts"}, wantImage: "app:v2",
			wantAbort: true, wantNote: "aborted", wantBad: []string{fixture.Hash("app:v2")}, wantRefKind: kinds.Rollout.Kind,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			imgs := tc.images
			if imgs == nil {
				imgs = images
			}
			ro, rss := fixture.Rollout(ns, name, tc.stable, imgs...)
			objects := fixture.Objects(rss...)
			for _, e := range tc.edit {
				objects = append(objects, e(ro, rss)...)
			}
			// The fixtures' ReplicaSets were edited after Objects took them: take them again.
			objects = append(slices.DeleteFunc(objects, func(o runtime.Object) bool { _, ok := o.(*appsv1.ReplicaSet); return ok }), fixture.Objects(rss...)...)
			client := fixture.Clientset(objects...)
			dyn := fixture.Dynamic(ro)
			u := New(clientset.WrapDynamic(client, dyn), Options{Cooldown: 10 * time.Minute, Now: func() time.Time { return now },
				DryRun: tc.dryRun, Backoff: wait.Backoff{Steps: 3, Duration: time.Millisecond}})
			req := tc.req
			if req.Ref.Name == "" {
				req = request(kinds.Rollout, name)
			}
			c, err := u.Undo(context.Background(), req)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Undo = %v; want %v", err, tc.wantErr)
			}
			if c.From != tc.wantFrom || c.To != tc.wantTo {
				t.Errorf("Undo went from %d to %d; want %d to %d", c.From, c.To, tc.wantFrom, tc.wantTo)
			}
			if got := writes(client, dyn); !cmp.Equal(got, tc.wantWrites, cmp.Comparer(func(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") })) {
				t.Errorf("writes = %q; want %q", got, tc.wantWrites)
			}
			if tc.wantNote != "" && !slices.ContainsFunc(c.Notes, func(n string) bool { return strings.Contains(n, tc.wantNote) }) {
				t.Errorf("notes %q; want one saying %q", c.Notes, tc.wantNote)
			}
			if tc.wantNote == "" && len(c.Notes) > 0 {
				t.Errorf("notes %q; want none (nothing was done)", c.Notes)
			}
			want := tc.wantRefKind
			if want == "" {
				want = req.Ref.Kind
			}
			if c.Ref.Name != "" && c.Ref.Kind != want {
				t.Errorf("acted on %v; want a %q", c.Ref, want)
			}

			got, err := dyn.Resource(fixture.Rollouts).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			image := templateImage(t, got.Object)
			if ref, ok, _ := unstructured.NestedString(got.Object, "spec", "workloadRef", "name"); ok {
				d, err := client.AppsV1().Deployments(ns).Get(context.Background(), ref, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				image = d.Spec.Template.Spec.Containers[0].Image
				if _, hashed := d.Spec.Template.Labels[fixture.RolloutHashLabel]; hashed {
					t.Errorf("the Deployment's template carries %s", fixture.RolloutHashLabel)
				}
			}
			if image != tc.wantImage {
				t.Errorf("template image %q; want %q", image, tc.wantImage)
			}
			if l, _, _ := unstructured.NestedStringMap(got.Object, "spec", "template", "metadata", "labels"); l[fixture.RolloutHashLabel] != "" {
				t.Errorf("the Rollout's template carries %s", fixture.RolloutHashLabel)
			}
			if abort, _, _ := unstructured.NestedBool(got.Object, "status", "abort"); abort != tc.wantAbort {
				t.Errorf("status.abort = %v; want %v", abort, tc.wantAbort)
			}
			var s State
			if raw := got.GetAnnotations()[StateAnnotation]; raw != "" {
				if err := json.Unmarshal([]byte(raw), &s); err != nil {
					t.Fatal(err)
				}
			}
			if tc.wantBad != nil && !cmp.Equal(s.Bad, tc.wantBad) {
				t.Errorf("state records bad %q; want %q", s.Bad, tc.wantBad)
			}
			if tc.wantBad != nil && (s.Last == nil || s.Last.From != tc.wantFrom || s.Last.To != tc.wantTo || !slices.Equal(s.Last.Notes, c.Notes)) {
				t.Errorf("state records the undo %+v; want %d -> %d with notes %q", s.Last, tc.wantFrom, tc.wantTo, c.Notes)
			}
		})
	}
}

// TestRolloutStateAfterConflict: the Argo Rollouts controller updates the Rollout as soon as
// it sees the abort, so the state annotation's write conflicts; it is made again on the
// Rollout as it is then, not lost, and the undo is not decided again.
func TestRolloutStateAfterConflict(t *testing.T) {
	ro, rss := fixture.Rollout(ns, "web", 0, "app:v1", "app:v2")
	client := fixture.Clientset(fixture.Objects(rss...)...)
	dyn := fixture.Dynamic(ro)
	// The controller's status write, between the abort and the state's write.
	controllerWrote := false
	dyn.PrependReactor("patch", "rollouts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "" || controllerWrote {
			return false, nil, nil
		}
		controllerWrote = true
		o, err := dyn.Tracker().Get(fixture.Rollouts, ns, "web")
		if err != nil {
			return true, nil, err
		}
		u := o.(*unstructured.Unstructured).DeepCopy()
		_ = unstructured.SetNestedField(u.Object, "Degraded", "status", "phase")
		u.SetResourceVersion("500")
		return false, nil, dyn.Tracker().Update(fixture.Rollouts, u, ns)
	})
	u := New(clientset.WrapDynamic(client, dyn), Options{Now: func() time.Time { return now }, Backoff: wait.Backoff{Steps: 3, Duration: time.Millisecond}})
	c, err := u.Undo(context.Background(), request(kinds.Rollout, "web"))
	if err != nil {
		t.Fatalf("Undo = %v", err)
	}
	got, _ := dyn.Resource(fixture.Rollouts).Namespace(ns).Get(context.Background(), "web", metav1.GetOptions{})
	var s State
	if err := json.Unmarshal([]byte(got.GetAnnotations()[StateAnnotation]), &s); err != nil || s.Last == nil || s.Last.From != c.From {
		t.Fatalf("state %q (%v); want the undo %d -> %d recorded", got.GetAnnotations()[StateAnnotation], err, c.From, c.To)
	}
	if phase, _, _ := unstructured.NestedString(got.Object, "status", "phase"); phase != "Degraded" {
		t.Errorf("status.phase %q: the controller's write was lost", phase)
	}
	if n := strings.Count(strings.Join(writes(client, dyn), " "), "rollouts/status"); n != 1 {
		t.Errorf("%d aborts; want 1", n)
	}
}

// writes lists the patches made, as "patch <resource>[/<subresource>]", in order.
func writes(c interface{ Actions() []k8stesting.Action }, dyn *dynamicfake.FakeDynamicClient) []string {
	var out []string
	for _, actions := range [][]k8stesting.Action{c.Actions(), dyn.Actions()} {
		for _, a := range actions {
			if a.GetVerb() != "patch" {
				continue
			}
			w := a.GetVerb() + " " + a.GetResource().Resource
			if s := a.GetSubresource(); s != "" {
				w += "/" + s
			}
			out = append(out, w)
		}
	}
	return out
}

func templateImage(t *testing.T, obj map[string]any) string {
	t.Helper()
	cs, _, _ := unstructured.NestedSlice(obj, "spec", "template", "spec", "containers")
	if len(cs) == 0 {
		return ""
	}
	image, _, _ := unstructured.NestedString(cs[0].(map[string]any), "image")
	return image
}
