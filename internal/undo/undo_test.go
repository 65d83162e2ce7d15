package undo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sre-kit/alert-rollback/internal/fixture"
	"github.com/sre-kit/alert-rollback/internal/kinds"
	"github.com/sre-kit/alert-rollback/internal/kube/clientset"
)

const ns = "shop"

var now = time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)

func deployment(images ...string) (*appsv1.Deployment, []runtime.Object) {
	d, rss := fixture.Deployment(ns, "web-front-end", images...)
	return d, append(fixture.Objects(rss...), d)
}

// withState returns d carrying the state annotation s.
func withState(d *appsv1.Deployment, s State) *appsv1.Deployment {
	b, _ := json.Marshal(s)
	d.Annotations[StateAnnotation] = string(b)
	return d
}

func request(kind schema.GroupKind, name string, ids ...string) Request {
	if len(ids) == 0 {
		ids = []string{"fp1@1764118800"}
	}
	return Request{Ref: kinds.RefOf(kind, ns, name), AlertIDs: ids, Alert: "KubePodUnschedulable"}
}

// The API actions of the common paths.
var (
	readDeployment = []string{"get deployments", "list replicasets"}
	undoDeployment = []string{"get deployments", "list replicasets", "patch deployments"}
)

// undoer acts through c, and a dynamic client holding no Knative object (a Deployment that a
// Knative Revision controls then leads nowhere).
func undoer(c kubernetes.Interface, dryRun bool) *Undoer {
	return New(clientset.WrapDynamic(c, fixture.Dynamic()), Options{Cooldown: 10 * time.Minute, Now: func() time.Time { return now }, DryRun: dryRun,
		Backoff: wait.Backoff{Steps: 3, Duration: time.Millisecond}})
}

func image(t *testing.T, c kubernetes.Interface, kind schema.GroupKind, name string) string {
	t.Helper()
	ctx := context.Background()
	var err error
	var got string
	switch kind {
	case kinds.Deployment:
		var d *appsv1.Deployment
		if d, err = c.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
			got = d.Spec.Template.Spec.Containers[0].Image
		}
	case kinds.StatefulSet:
		var s *appsv1.StatefulSet
		if s, err = c.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
			got = s.Spec.Template.Spec.Containers[0].Image
		}
	case kinds.DaemonSet:
		var d *appsv1.DaemonSet
		if d, err = c.AppsV1().DaemonSets(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
			got = d.Spec.Template.Spec.Containers[0].Image
		}
	}
	if err != nil {
		t.Fatalf("get %s %s: %v", kind.Kind, name, err)
	}
	return got
}

func TestUndo(t *testing.T) {
	stsObj, crs := fixture.StatefulSet(ns, "db", "db:v1", "db:v2", "db:v3")
	dsObj, dcrs := fixture.DaemonSet(ns, "agent", "agent:v1", "agent:v2")

	tests := []struct {
		name      string
		objects   func() []runtime.Object
		req       Request
		dryRun    bool
		reactors  func(*fake.Clientset)
		wantErr   error // nil: rolled back
		wantFrom  int64
		wantTo    int64
		wantImage string
		// wantActions are the API actions, "verb resource", in order: they pin the round
		// trips of each path.
		wantActions []string
	}{
		{
			name:     "previous revision",
			objects:  func() []runtime.Object { _, o := deployment("app:v1", "app:v2"); return o },
			req:      request(kinds.Deployment, "web-front-end"),
			wantFrom: 2, wantTo: 1, wantImage: "app:v1",
			wantActions: undoDeployment,
		},
		{
			name: "five revisions go back one",
			objects: func() []runtime.Object {
				_, o := deployment("app:v1", "app:v2", "app:v3", "app:v4", "app:v5")
				return o
			},
			req:      request(kinds.Deployment, "web-front-end"),
			wantFrom: 5, wantTo: 4, wantImage: "app:v4",
			wantActions: undoDeployment,
		},
		{
			name: "no previous revision (no ReplicaSet yet)",
			objects: func() []runtime.Object {
				d, _ := deployment()
				d.Spec.Template = fixture.Template("web-front-end", "app:v1")
				return []runtime.Object{d}
			},
			req:         request(kinds.Deployment, "web-front-end"),
			wantErr:     ErrNoPreviousRevision,
			wantImage:   "app:v1",
			wantActions: readDeployment,
		},
		{
			name:        "one revision",
			objects:     func() []runtime.Object { _, o := deployment("app:v1"); return o },
			req:         request(kinds.Deployment, "web-front-end"),
			wantErr:     ErrNoPreviousRevision,
			wantImage:   "app:v1",
			wantActions: readDeployment,
		},
		{
			name: "paused",
			objects: func() []runtime.Object {
				d, o := deployment("app:v1", "app:v2")
				d.Spec.Paused = true
				return o
			},
			req:         request(kinds.Deployment, "web-front-end"),
			wantErr:     ErrPaused,
			wantImage:   "app:v2",
			wantActions: readDeployment,
		},
		{
			name: "already at target",
			objects: func() []runtime.Object {
				d, o := deployment("app:v1", "app:v2")
				d.Spec.Template = fixture.Template("web-front-end", "app:v1")
				return o
			},
			req:         request(kinds.Deployment, "web-front-end"),
			wantErr:     ErrAlreadyAtTarget,
			wantImage:   "app:v1",
			wantActions: append(readDeployment, "get deployments"),
		},
		{
			name: "controller behind: current template has no revision yet",
			objects: func() []runtime.Object {
				d, o := deployment("app:v1", "app:v2")
				d.Spec.Template = fixture.Template("web-front-end", "app:v3")
				return o
			},
			req:         request(kinds.Deployment, "web-front-end"),
			wantErr:     ErrRolloutPending,
			wantImage:   "app:v3",
			wantActions: append(readDeployment, "get deployments"),
		},
		{
			name:        "not found",
			objects:     func() []runtime.Object { return nil },
			req:         request(kinds.Deployment, "web-front-end"),
			wantErr:     ErrNotFound,
			wantActions: []string{"get deployments"},
		},
		{
			name: "no flip-flop: a revision rolled back from is never the target",
			objects: func() []runtime.Object {
				// v1 good, v2 bad (rolled back from, so v1 came back as revision 3), then
				// v4 deployed and bad: the target skips v2 and goes to v1.
				d, o := deployment("app:v2", "app:v1", "app:v4")
				withState(d, State{Bad: []string{fixture.Hash("app:v2")}, Last: &Record{At: now.Add(-time.Hour)}})
				return o
			},
			req:      request(kinds.Deployment, "web-front-end"),
			wantFrom: 3, wantTo: 2, wantImage: "app:v1",
			wantActions: undoDeployment,
		},
		{
			name: "every earlier revision is bad: refused",
			objects: func() []runtime.Object {
				d, o := deployment("app:v1", "app:v2")
				withState(d, State{Bad: []string{fixture.Hash("app:v1")}})
				return o
			},
			req:         request(kinds.Deployment, "web-front-end"),
			wantErr:     ErrNoGoodRevision,
			wantImage:   "app:v2",
			wantActions: readDeployment,
		},
		{
			name: "the same alert again changes nothing",
			objects: func() []runtime.Object {
				d, o := deployment("app:v2", "app:v1")
				withState(d, State{Handled: []string{"fp1@1764118800"}, Last: &Record{At: now.Add(-time.Hour), From: 2, To: 1}})
				return o
			},
			req:         request(kinds.Deployment, "web-front-end", "fp1@1764118800"),
			wantErr:     ErrAlreadyHandled,
			wantImage:   "app:v1",
			wantActions: readDeployment,
		},
		{
			name:    "stale: the alert's pod is of an older revision",
			objects: func() []runtime.Object { _, o := deployment("app:v1", "app:v2"); return o },
			req: func() Request {
				r := request(kinds.Deployment, "web-front-end")
				r.Revisions = []string{fixture.Hash("app:v1")}
				return r
			}(),
			wantErr:     ErrStale,
			wantImage:   "app:v2",
			wantActions: readDeployment,
		},
		{
			name:    "an alert about the current revision is not stale",
			objects: func() []runtime.Object { _, o := deployment("app:v1", "app:v2"); return o },
			req: func() Request {
				r := request(kinds.Deployment, "web-front-end")
				r.Revisions = []string{fixture.Hash("app:v2")}
				return r
			}(),
			wantFrom: 2, wantTo: 1, wantImage: "app:v1",
			wantActions: undoDeployment,
		},
		{
			name: "cooldown",
			objects: func() []runtime.Object {
				d, o := deployment("app:v1", "app:v2", "app:v3")
				withState(d, State{Last: &Record{At: now.Add(-time.Minute)}})
				return o
			},
			req:         request(kinds.Deployment, "web-front-end", "other@1"),
			wantErr:     ErrCooldown,
			wantImage:   "app:v3",
			wantActions: readDeployment,
		},
		{
			name: "after the cooldown",
			objects: func() []runtime.Object {
				d, o := deployment("app:v1", "app:v2", "app:v3")
				withState(d, State{Last: &Record{At: now.Add(-11 * time.Minute)}})
				return o
			},
			req:      request(kinds.Deployment, "web-front-end", "other@1"),
			wantFrom: 3, wantTo: 2, wantImage: "app:v2",
			wantActions: undoDeployment,
		},
		{
			name: "opt-out",
			objects: func() []runtime.Object {
				d, o := deployment("app:v1", "app:v2")
				d.Annotations[OptOutAnnotation] = "true"
				return o
			},
			req:         request(kinds.Deployment, "web-front-end"),
			wantErr:     ErrOptOut,
			wantImage:   "app:v2",
			wantActions: readDeployment,
		},
		{
			name: "unreadable state is refused, not ignored",
			objects: func() []runtime.Object {
				d, o := deployment("app:v1", "app:v2")
				d.Annotations[StateAnnotation] = "{"
				return o
			},
			req:         request(kinds.Deployment, "web-front-end"),
			wantErr:     ErrBadState,
			wantImage:   "app:v2",
			wantActions: readDeployment,
		},
		{
			name:     "dry run",
			objects:  func() []runtime.Object { _, o := deployment("app:v1", "app:v2"); return o },
			req:      request(kinds.Deployment, "web-front-end"),
			dryRun:   true,
			wantFrom: 2, wantTo: 1,
			wantActions: undoDeployment,
		},
		{
			name:    "conflicts exhausted",
			objects: func() []runtime.Object { _, o := deployment("app:v1", "app:v2"); return o },
			req:     request(kinds.Deployment, "web-front-end"),
			reactors: func(c *fake.Clientset) {
				c.PrependReactor("patch", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "apps", Resource: "deployments"}, "web-front-end", errors.New("modified"))
				})
			},
			wantErr:     errConflictForTest,
			wantImage:   "app:v2",
			wantActions: slices.Concat(undoDeployment, undoDeployment, undoDeployment),
		},
		{
			name:    "forbidden is a failure no retry fixes",
			objects: func() []runtime.Object { _, o := deployment("app:v1", "app:v2"); return o },
			req:     request(kinds.Deployment, "web-front-end"),
			reactors: func(c *fake.Clientset) {
				c.PrependReactor("patch", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "deployments"}, "web-front-end", errors.New("rbac"))
				})
			},
			wantErr:     errForbiddenForTest,
			wantImage:   "app:v2",
			wantActions: undoDeployment,
		},
		{
			name: "history newer than the Deployment read: read both again",
			objects: func() []runtime.Object {
				// After another replica's undo of this very alert: v1 is back as revision 3.
				d, rss := fixture.Deployment(ns, "web-front-end", "app:v1", "app:v2")
				rss[0].Annotations["deployment.kubernetes.io/revision"] = "3"
				d.Annotations["deployment.kubernetes.io/revision"] = "3"
				d.Spec.Template = fixture.Template("web-front-end", "app:v1")
				d.ResourceVersion = "101"
				withState(d, State{Bad: []string{fixture.Hash("app:v2")}, Handled: []string{"fp1@1764118800"}, Last: &Record{At: now, From: 2, To: 1}})
				return append(fixture.Objects(rss...), d)
			},
			req: func() Request {
				r := request(kinds.Deployment, "web-front-end", "fp1@1764118800")
				r.Revisions = []string{fixture.Hash("app:v2")}
				return r
			}(),
			reactors: func(c *fake.Clientset) {
				// The first read of the Deployment is from just before that undo.
				before, _ := fixture.Deployment(ns, "web-front-end", "app:v1", "app:v2")
				first := true
				c.PrependReactor("get", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) {
					if first {
						first = false
						return true, before, nil
					}
					return false, nil, nil
				})
			},
			wantErr:     ErrAlreadyHandled,
			wantImage:   "app:v1",
			wantActions: slices.Concat(readDeployment, []string{"get deployments"}, readDeployment),
		},
		{
			name:     "statefulset",
			objects:  func() []runtime.Object { return append(fixture.Objects(crs...), stsObj.DeepCopy()) },
			req:      request(kinds.StatefulSet, "db"),
			wantFrom: 3, wantTo: 2, wantImage: "db:v2",
			wantActions: []string{"get statefulsets", "list controllerrevisions", "patch statefulsets"},
		},
		{
			name:     "daemonset",
			objects:  func() []runtime.Object { return append(fixture.Objects(dcrs...), dsObj.DeepCopy()) },
			req:      request(kinds.DaemonSet, "agent"),
			wantFrom: 2, wantTo: 1, wantImage: "agent:v1",
			wantActions: []string{"get daemonsets", "list controllerrevisions", "patch daemonsets"},
		},
		{
			name: "daemonset: stale pod revision",
			objects: func() []runtime.Object {
				return append(fixture.Objects(dcrs...), dsObj.DeepCopy())
			},
			req: func() Request {
				r := request(kinds.DaemonSet, "agent")
				r.Revisions = []string{dcrs[0].Name}
				return r
			}(),
			wantErr:     ErrStale,
			wantImage:   "agent:v2",
			wantActions: []string{"get daemonsets", "list controllerrevisions"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := fixture.Clientset(tc.objects()...)
			if tc.reactors != nil {
				tc.reactors(client)
			}
			c, err := undoer(client, tc.dryRun).Undo(context.Background(), tc.req)
			switch {
			case tc.wantErr == errConflictForTest:
				if !apierrors.IsConflict(err) {
					t.Fatalf("Undo() = %v; want a conflict", err)
				}
			case tc.wantErr == errForbiddenForTest:
				if !apierrors.IsForbidden(err) {
					t.Fatalf("Undo() = %v; want forbidden", err)
				}
			case !errors.Is(err, tc.wantErr):
				t.Fatalf("Undo() = %v; want %v", err, tc.wantErr)
			}
			if tc.wantErr == nil && (c.From != tc.wantFrom || c.To != tc.wantTo) {
				t.Errorf("Undo() from %d to %d; want from %d to %d", c.From, c.To, tc.wantFrom, tc.wantTo)
			}
			var got []string
			for _, a := range client.Actions() {
				got = append(got, a.GetVerb()+" "+a.GetResource().Resource)
			}
			// Reads may run in parallel (the ReplicaSet list beside the Deployment's read, once
			// its selector is known), so actions are compared as a multiset.
			if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(tc.wantActions))) {
				t.Errorf("API actions = %q; want %q", got, tc.wantActions)
			}
			if tc.wantImage != "" {
				if got := image(t, client, tc.req.Ref.GroupKind(), tc.req.Ref.Name); got != tc.wantImage {
					t.Errorf("image after Undo() = %q; want %q", got, tc.wantImage)
				}
			}
			if tc.dryRun {
				assertDryRunPatches(t, client)
			}
			changes, err := fixture.Changes(tc.objects(), client.Actions())
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range changes {
				// What the patch changes, decoded from its bytes: the template (to the
				// revision's image) and the state annotation alone, under the
				// resourceVersion read.
				if diff := cmp.Diff([]string{"metadata.annotations", "spec.template"}, c.Fields); diff != "" {
					t.Errorf("patch of %s changed (-want +got):\n%s", c.Key, diff)
				}
				if diff := cmp.Diff([]string{StateAnnotation}, c.Annotations); diff != "" {
					t.Errorf("patch of %s changed annotations (-want +got):\n%s", c.Key, diff)
				}
				if c.Precondition == "" || c.Precondition != c.Read {
					t.Errorf("patch of %s requires resourceVersion %q; want the one read, %q", c.Key, c.Precondition, c.Read)
				}
				if tc.wantErr == nil && !tc.dryRun && c.Image != tc.wantImage {
					t.Errorf("patch of %s sets image %q; want %q", c.Key, c.Image, tc.wantImage)
				}
			}
		})
	}
}

var (
	errConflictForTest  = errors.New("conflict")
	errForbiddenForTest = errors.New("forbidden")
)

func assertDryRunPatches(t *testing.T, c *fake.Clientset) {
	t.Helper()
	n := 0
	for _, a := range c.Actions() {
		if p, ok := a.(k8stesting.PatchActionImpl); ok {
			n++
			opts := p.PatchOptions
			if len(opts.DryRun) != 1 || opts.DryRun[0] != metav1.DryRunAll {
				t.Errorf("patch options = %+v; want dryRun All", opts)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d patches; want 1 (dry run)", n)
	}
}

// TestUndoWritesStateWithTheUndo checks the one patch carries the precondition, kubectl's
// annotations and the new state: the bad revision, the alert, the record.
func TestUndoWritesStateWithTheUndo(t *testing.T) {
	d, rss := fixture.Deployment(ns, "web-front-end", "app:v1", "app:v2")
	d.Annotations["kubernetes.io/change-cause"] = "deploy v2"
	d.Annotations["team"] = "payments"
	rss[0].Annotations["kubernetes.io/change-cause"] = "deploy v1"
	// A stale copy of the state, as the controller copied it onto the ReplicaSet.
	rss[0].Annotations[StateAnnotation] = `{"handled":["old@1"]}`
	client := fixture.Clientset(append(fixture.Objects(rss...), d)...)

	if _, err := undoer(client, false).Undo(context.Background(), request(kinds.Deployment, "web-front-end")); err != nil {
		t.Fatalf("Undo() = %v", err)
	}
	var patch []map[string]any
	for _, a := range client.Actions() {
		if p, ok := a.(k8stesting.PatchAction); ok {
			if err := json.Unmarshal(p.GetPatch(), &patch); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(patch) == 0 || patch[0]["path"] != "/metadata/resourceVersion" || patch[0]["value"] != d.ResourceVersion {
		t.Errorf("patch = %v; want it to start with the resourceVersion precondition %q", patch, d.ResourceVersion)
	}
	got, _ := client.AppsV1().Deployments(ns).Get(context.Background(), "web-front-end", metav1.GetOptions{})
	if got.Annotations["kubernetes.io/change-cause"] != "deploy v1" {
		t.Errorf("change-cause = %q; want the ReplicaSet's, as kubectl does", got.Annotations["kubernetes.io/change-cause"])
	}
	if _, ok := got.Annotations["team"]; ok {
		t.Errorf("annotation team kept; kubectl replaces the annotations with the ReplicaSet's")
	}
	if got.Annotations["deployment.kubernetes.io/revision"] != "2" {
		t.Errorf("revision annotation = %q; want the Deployment's own", got.Annotations["deployment.kubernetes.io/revision"])
	}
	s, err := readState(got.Annotations)
	if err != nil {
		t.Fatal(err)
	}
	want := State{Bad: []string{fixture.Hash("app:v2")}, Handled: []string{"fp1@1764118800"},
		Last: &Record{At: now, Alert: "KubePodUnschedulable", From: 2, To: 1},
		// The undo awaits verification: the revision rolled back to, when, for which alert.
		Pending: &Verification{At: now, Revision: fixture.Hash("app:v1"), Number: 1, From: 2, Alerts: []string{"fp1"}}}
	if gotJSON, wantJSON := mustJSON(s), mustJSON(want); gotJSON != wantJSON {
		t.Errorf("state = %s; want %s", gotJSON, wantJSON)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestRevisionPatchHasThePrecondition: a StatefulSet's or DaemonSet's undo carries the
// resourceVersion it read and the new state, beside the ControllerRevision's own patch.
func TestRevisionPatchHasThePrecondition(t *testing.T) {
	sts, crs := fixture.StatefulSet(ns, "db", "db:v1", "db:v2")
	ds, dcrs := fixture.DaemonSet(ns, "agent", "agent:v1", "agent:v2")
	tests := []struct {
		name    string
		objects []runtime.Object
		req     Request
	}{
		{"statefulset", append(fixture.Objects(crs...), sts), request(kinds.StatefulSet, "db")},
		{"daemonset", append(fixture.Objects(dcrs...), ds), request(kinds.DaemonSet, "agent")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := fixture.Clientset(tc.objects...)
			if _, err := undoer(client, false).Undo(context.Background(), tc.req); err != nil {
				t.Fatalf("Undo() = %v", err)
			}
			var patch struct {
				Metadata struct {
					ResourceVersion string            `json:"resourceVersion"`
					Annotations     map[string]string `json:"annotations"`
				} `json:"metadata"`
				Spec struct {
					Template map[string]any `json:"template"`
				} `json:"spec"`
			}
			n := 0
			for _, a := range client.Actions() {
				if p, ok := a.(k8stesting.PatchActionImpl); ok {
					n++
					if err := json.Unmarshal(p.GetPatch(), &patch); err != nil {
						t.Fatal(err)
					}
				}
			}
			if n != 1 || patch.Metadata.ResourceVersion != "100" || patch.Metadata.Annotations[StateAnnotation] == "" ||
				patch.Spec.Template["$patch"] != "replace" {
				t.Errorf("%d patches, last %+v; want one with resourceVersion 100, the state, and the revision's template", n, patch)
			}
		})
	}
}

// TestMaxAge: a rollout older than MaxAge is not undone, whatever the kind; 0 turns the
// guard off.
func TestMaxAge(t *testing.T) {
	weeksAgo := metav1.NewTime(now.Add(-21 * 24 * time.Hour))
	minutesAgo := metav1.NewTime(now.Add(-10 * time.Minute))
	deploymentAt := func(created metav1.Time) []runtime.Object {
		d, rss := fixture.Deployment(ns, "web-front-end", "app:v1", "app:v2")
		rss[0].CreationTimestamp = metav1.NewTime(created.Add(-time.Hour)) // revision 1 came first
		rss[1].CreationTimestamp = created
		return append(fixture.Objects(rss...), d)
	}
	statefulSetAt := func(created metav1.Time) []runtime.Object {
		s, crs := fixture.StatefulSet(ns, "db", "db:v1", "db:v2")
		crs[0].CreationTimestamp = metav1.NewTime(created.Add(-time.Hour))
		crs[1].CreationTimestamp = created
		return append(fixture.Objects(crs...), s)
	}
	daemonSetAt := func(created metav1.Time) []runtime.Object {
		d, crs := fixture.DaemonSet(ns, "agent", "agent:v1", "agent:v2")
		crs[0].CreationTimestamp = metav1.NewTime(created.Add(-time.Hour))
		crs[1].CreationTimestamp = created
		return append(fixture.Objects(crs...), d)
	}
	tests := []struct {
		name    string
		objects []runtime.Object
		req     Request
		maxAge  time.Duration
		wantErr error
	}{
		{"recent rollout", deploymentAt(minutesAgo), request(kinds.Deployment, "web-front-end"), time.Hour, nil},
		{"three weeks old", deploymentAt(weeksAgo), request(kinds.Deployment, "web-front-end"), time.Hour, ErrTooOld},
		{"three weeks old, guard off", deploymentAt(weeksAgo), request(kinds.Deployment, "web-front-end"), 0, nil},
		{"statefulset three weeks old", statefulSetAt(weeksAgo), request(kinds.StatefulSet, "db"), time.Hour, ErrTooOld},
		{"statefulset recent", statefulSetAt(minutesAgo), request(kinds.StatefulSet, "db"), time.Hour, nil},
		{"daemonset three weeks old", daemonSetAt(weeksAgo), request(kinds.DaemonSet, "agent"), time.Hour, ErrTooOld},
		{"daemonset recent", daemonSetAt(minutesAgo), request(kinds.DaemonSet, "agent"), time.Hour, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := fixture.Clientset(tc.objects...)
			u := New(clientset.Wrap(client), Options{MaxAge: tc.maxAge, Now: func() time.Time { return now }})
			_, err := u.Undo(context.Background(), tc.req)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Undo() = %v; want %v", err, tc.wantErr)
			}
			if patched := len(writesOf(client)) > 0; patched != (tc.wantErr == nil) {
				t.Errorf("patched = %v; want %v", patched, tc.wantErr == nil)
			}
		})
	}
}

func writesOf(c *fake.Clientset) []k8stesting.Action {
	var out []k8stesting.Action
	for _, a := range c.Actions() {
		if a.GetVerb() == "patch" {
			out = append(out, a)
		}
	}
	return out
}

// TestUndoTimeouts: a call that times out on the client's side (client-go returns a
// url.Error wrapping the context's error) is a failure, never reported as done.
func TestUndoTimeouts(t *testing.T) {
	tests := []struct {
		name, verb, resource string
		err                  error
	}{
		{"write times out", "patch", "deployments", context.DeadlineExceeded},
		{"write cancelled", "patch", "deployments", context.Canceled},
		{"read times out", "get", "deployments", context.DeadlineExceeded},
		{"history read times out", "list", "replicasets", context.DeadlineExceeded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, objs := deployment("app:v1", "app:v2")
			client := fixture.Clientset(objs...)
			client.PrependReactor(tc.verb, tc.resource, func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, &url.Error{Op: tc.verb, URL: "https://127.0.0.1/" + tc.resource, Err: tc.err}
			})
			_, err := undoer(client, false).Undo(context.Background(), request(kinds.Deployment, "web-front-end"))
			if !errors.Is(err, tc.err) {
				t.Errorf("Undo() = %v; want it to fail with %v", err, tc.err)
			}
		})
	}
}

// TestPredatesRollout: alerts that all started before the current revision was rolled out
// (less StartSkew) are not about it; one that started later is enough to act.
func TestPredatesRollout(t *testing.T) {
	rollout := now.Add(-10 * time.Minute)
	deploymentAt := func(created time.Time) []runtime.Object {
		d, rss := fixture.Deployment(ns, "web-front-end", "app:v1", "app:v2")
		rss[0].CreationTimestamp = metav1.NewTime(created.Add(-time.Hour))
		rss[1].CreationTimestamp = metav1.NewTime(created)
		return append(fixture.Objects(rss...), d)
	}
	// rolledBackTo is a Deployment rolled back from v2 (revision 2) to v1, whose ReplicaSet
	// was made two hours ago as revision 1 and is revision 3 now.
	rolledBackTo := func() []runtime.Object {
		d, rss := fixture.Deployment(ns, "web-front-end", "app:v2", "app:v1")
		rss[1].CreationTimestamp = metav1.NewTime(now.Add(-2 * time.Hour))
		rss[1].Annotations["deployment.kubernetes.io/revision"] = "3"
		rss[1].Annotations["deployment.kubernetes.io/revision-history"] = "1"
		rss[0].CreationTimestamp = metav1.NewTime(now.Add(-time.Hour))
		rss[0].Annotations["deployment.kubernetes.io/revision"] = "2"
		d.Annotations["deployment.kubernetes.io/revision"] = "3"
		return append(fixture.Objects(rss...), d)
	}
	statefulSetAt := func(current, previous time.Time) []runtime.Object {
		s, crs := fixture.StatefulSet(ns, "db", "db:v1", "db:v2")
		crs[0].CreationTimestamp = metav1.NewTime(previous)
		crs[1].CreationTimestamp = metav1.NewTime(current)
		return append(fixture.Objects(crs...), s)
	}
	daemonSetAt := func(created time.Time) []runtime.Object {
		d, crs := fixture.DaemonSet(ns, "agent", "agent:v1", "agent:v2")
		crs[0].CreationTimestamp = metav1.NewTime(created.Add(-time.Hour))
		crs[1].CreationTimestamp = metav1.NewTime(created)
		return append(fixture.Objects(crs...), d)
	}
	started := func(req Request, at ...time.Time) Request {
		req.Started = at
		req.AlertIDs = nil
		for i := range at {
			req.AlertIDs = append(req.AlertIDs, fmt.Sprintf("fp%d@%d", i, at[i].Unix()))
		}
		return req
	}
	web, db, agent := request(kinds.Deployment, "web-front-end"), request(kinds.StatefulSet, "db"), request(kinds.DaemonSet, "agent")
	tests := []struct {
		name    string
		objects []runtime.Object
		req     Request
		wantErr error
	}{
		{"started before the rollout", deploymentAt(rollout), started(web, rollout.Add(-time.Hour)), ErrPredatesRollout},
		{"started just past the skew", deploymentAt(rollout), started(web, rollout.Add(-StartSkew-time.Second)), ErrPredatesRollout},
		{"started within the skew", deploymentAt(rollout), started(web, rollout.Add(-StartSkew)), nil},
		{"started after the rollout", deploymentAt(rollout), started(web, rollout.Add(time.Minute)), nil},
		{"every alert before", deploymentAt(rollout), started(web, rollout.Add(-time.Hour), rollout.Add(-2*time.Hour)), ErrPredatesRollout},
		{"one alert of several after", deploymentAt(rollout), started(web, rollout.Add(-time.Hour), rollout.Add(time.Minute), rollout.Add(-2*time.Hour)), nil},
		{"start unknown", deploymentAt(rollout), started(web, time.Time{}), nil},
		// Its ReplicaSet's creation time is that of its first rollout, hours before.
		{"revision rolled back to", rolledBackTo(), started(web, now.Add(-3*time.Hour)), nil},
		{"statefulset started before", statefulSetAt(rollout, rollout.Add(-time.Hour)), started(db, rollout.Add(-time.Hour)), ErrPredatesRollout},
		{"statefulset started after", statefulSetAt(rollout, rollout.Add(-time.Hour)), started(db, rollout.Add(time.Minute)), nil},
		// A ControllerRevision older than another entry was made current again: its time says
		// nothing of the rollout (the undo is then refused for its history, not this guard).
		{"statefulset revision rolled back to", statefulSetAt(rollout.Add(-time.Hour), rollout), started(db, rollout.Add(-2*time.Hour)), ErrForeignHistory},
		{"daemonset started before", daemonSetAt(rollout), started(agent, rollout.Add(-time.Hour)), ErrPredatesRollout},
		{"daemonset started after", daemonSetAt(rollout), started(agent, rollout.Add(time.Minute)), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := fixture.Clientset(tc.objects...)
			u := New(clientset.Wrap(client), Options{Now: func() time.Time { return now }})
			_, err := u.Undo(context.Background(), tc.req)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Undo() = %v; want %v", err, tc.wantErr)
			}
			if patched := len(writesOf(client)) > 0; patched != (tc.wantErr == nil) {
				t.Errorf("patched = %v; want %v", patched, tc.wantErr == nil)
			}
		})
	}
}
