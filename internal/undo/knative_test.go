package undo

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sre-kit/alert-rollback/internal/fixture"
	"github.com/sre-kit/alert-rollback/internal/kinds"
	"github.com/sre-kit/alert-rollback/internal/kube/clientset"
)

// knativeWorld is a Knative Service "web" at its last image, with its Configuration, its
// Revisions and the Deployment of its current Revision, as Knative Serving leaves them.
type knativeWorld struct {
	svc, cfg *unstructured.Unstructured
	revs     []*unstructured.Unstructured
	// deployment is the current Revision's Deployment's name.
	deployment string
	typed      []runtime.Object
}

func newKnativeWorld(images ...string) *knativeWorld {
	svc, cfg, revs := fixture.KnativeService(ns, "web", images...)
	d, rss := fixture.KnativeDeployment(revs[len(revs)-1], images[len(images)-1])
	return &knativeWorld{svc: svc, cfg: cfg, revs: revs, deployment: d.Name, typed: append(fixture.Objects(rss...), d)}
}

func (k *knativeWorld) dynamic() *dynamicfake.FakeDynamicClient {
	objs := []runtime.Object{k.svc, k.cfg}
	for _, r := range k.revs {
		objs = append(objs, r)
	}
	return fixture.Dynamic(objs...)
}

// templateID is the ID the history gives the template of revision rev.
func templateID(t *testing.T, w *knativeWorld, rev int) string {
	t.Helper()
	k, _ := kinds.For(kinds.KnativeService)
	wl, err := k.Load(context.Background(), kinds.NewEnv(clientset.WrapDynamic(fixture.Clientset(), w.dynamic())), ns, "web", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range wl.History {
		if r.Number == int64(rev) {
			return r.ID
		}
	}
	t.Fatalf("revision %d not in the history", rev)
	return ""
}

// TestKnativeService: a Knative Service is rolled back by setting spec.template to the
// previous good revision's template (previous by configurationGeneration, good meaning Ready
// and not recorded bad), reached from its Revision's Deployment (as a pod's alert leads) or
// named; the guards hold, and nothing is written when they refuse.
func TestKnativeService(t *testing.T) {
	deploymentReq := func(w *knativeWorld) Request { return request(kinds.Deployment, w.deployment) }
	serviceReq := func(*knativeWorld) Request { return request(kinds.KnativeService, "web") }
	tests := []struct {
		name   string
		images []string
		edit   func(t *testing.T, w *knativeWorld)
		req    func(*knativeWorld) Request
		dryRun bool
		// forbid makes the API refuse reads of this resource (the function lacks the rights).
		forbid    string
		wantErr   error
		wantIn    string // in the error
		wantImage string // the Service's image afterwards
		wantFrom  int64
		wantTo    int64
	}{
		{
			name: "from the current Revision's Deployment: back to revision 1", images: []string{"app:v1", "app:v2"},
			req: deploymentReq, wantImage: "app:v1", wantFrom: 2, wantTo: 1,
		},
		{
			name: "named: back to revision 1", images: []string{"app:v1", "app:v2"},
			req: serviceReq, wantImage: "app:v1", wantFrom: 2, wantTo: 1,
		},
		{
			name: "dry run: the patch is sent with dryRun=All", images: []string{"app:v1", "app:v2"},
			req: serviceReq, dryRun: true, wantImage: "app:v2", wantFrom: 2, wantTo: 1,
		},
		{
			name: "an earlier revision that is not Ready is skipped", images: []string{"app:v1", "app:v2", "app:v3"},
			edit: func(t *testing.T, w *knativeWorld) { setReady(t, w.revs[1], false) },
			req:  serviceReq, wantImage: "app:v1", wantFrom: 3, wantTo: 1,
		},
		{
			name: "the only earlier revision is not Ready", images: []string{"app:v1", "app:v2"},
			edit: func(t *testing.T, w *knativeWorld) { setReady(t, w.revs[0], false) },
			req:  serviceReq, wantErr: ErrNoPreviousRevision, wantImage: "app:v2",
		},
		{
			name: "traffic pinned to a named revision: refused, saying what to do", images: []string{"app:v1", "app:v2"},
			edit: func(t *testing.T, w *knativeWorld) {
				setTraffic(t, w.svc, map[string]any{"revisionName": "web-00001", "latestRevision": false, "percent": int64(100)},
					map[string]any{"latestRevision": true, "percent": int64(0), "tag": "next"})
			},
			req: deploymentReq, wantErr: ErrTrafficPinned, wantIn: "latestRevision: true", wantImage: "app:v2",
		},
		{
			name: "traffic split with a share on the latest revision: rolled back", images: []string{"app:v1", "app:v2"},
			edit: func(t *testing.T, w *knativeWorld) {
				setTraffic(t, w.svc, map[string]any{"revisionName": "web-00001", "latestRevision": false, "percent": int64(90)},
					map[string]any{"latestRevision": true, "percent": int64(10)})
			},
			req: serviceReq, wantImage: "app:v1", wantFrom: 2, wantTo: 1,
		},
		{
			name: "bring-your-own revision names: the old name is not reused", images: []string{"app:v1", "app:v2"},
			edit: func(t *testing.T, w *knativeWorld) {
				w.revs[0].SetName("web-blue")
				w.revs[1].SetName("web-green")
				if err := unstructured.SetNestedField(w.svc.Object, "web-green", "spec", "template", "metadata", "name"); err != nil {
					t.Fatal(err)
				}
			},
			req: serviceReq, wantImage: "app:v1", wantFrom: 2, wantTo: 1,
		},
		{
			name: "after an undo, the revision rolled back from is not gone back to (flip-flop)", images: []string{"app:v1", "app:v2", "app:v1"},
			edit: func(t *testing.T, w *knativeWorld) {
				setState(t, w.svc, State{Bad: []string{templateID(t, w, 2)}})
			},
			req: serviceReq, wantErr: ErrNoGoodRevision, wantImage: "app:v1",
		},
		{
			name: "one undo per alert", images: []string{"app:v1", "app:v2"},
			edit: func(t *testing.T, w *knativeWorld) { setState(t, w.svc, State{Handled: []string{"fp1@1764118800"}}) },
			req:  deploymentReq, wantErr: ErrAlreadyHandled, wantImage: "app:v2",
		},
		{
			name: "cooldown", images: []string{"app:v1", "app:v2"},
			edit: func(t *testing.T, w *knativeWorld) {
				setState(t, w.svc, State{Last: &Record{At: now.Add(-time.Minute), From: 1, To: 0}})
			},
			req: serviceReq, wantErr: ErrCooldown, wantImage: "app:v2",
		},
		{
			name: "opted out", images: []string{"app:v1", "app:v2"},
			edit: func(t *testing.T, w *knativeWorld) { w.svc.SetAnnotations(map[string]string{OptOutAnnotation: "true"}) },
			req:  deploymentReq, wantErr: ErrOptOut, wantImage: "app:v2",
		},
		{
			name: "the template changed and Knative has not made its revision yet", images: []string{"app:v1", "app:v2"},
			edit: func(t *testing.T, w *knativeWorld) { setImage(t, w.svc, "app:v3") },
			req:  serviceReq, wantErr: ErrRolloutPending, wantImage: "app:v3",
		},
		{
			name: "an alert about an earlier revision is stale", images: []string{"app:v1", "app:v2"},
			req: func(w *knativeWorld) Request {
				r := serviceReq(w)
				r.Revisions = []string{templateID(t, w, 1)}
				return r
			},
			wantErr: ErrStale, wantImage: "app:v2",
		},
		{
			name: "two revisions claiming one generation", images: []string{"app:v1", "app:v2"},
			edit: func(t *testing.T, w *knativeWorld) {
				w.revs = append(w.revs, fixture.KnativeRevision(w.cfg, 2, "web-planted", fixture.KnativeSpec("evil:v1"), true))
			},
			req: serviceReq, wantErr: ErrForeignHistory, wantImage: "app:v2",
		},
		{
			name: "revisions of another Service are no history", images: []string{"app:v1", "app:v2"},
			edit: func(t *testing.T, w *knativeWorld) {
				other := w.revs[0].DeepCopy()
				other.SetName("web-other")
				labels := other.GetLabels()
				labels["serving.knative.dev/serviceUID"], labels["serving.knative.dev/configurationGeneration"] = "uid-another", "1"
				other.SetLabels(labels)
				w.revs = []*unstructured.Unstructured{other, w.revs[1]}
			},
			req: serviceReq, wantErr: ErrNoPreviousRevision, wantImage: "app:v2",
		},
		{
			name: "a Configuration no Service controls: the Deployment is refused", images: []string{"app:v1", "app:v2"},
			edit: func(t *testing.T, w *knativeWorld) { w.cfg.SetOwnerReferences(nil) },
			req:  deploymentReq, wantErr: ErrControllerOwned, wantIn: "roll back that owner instead", wantImage: "app:v2",
		},
		{
			name: "the function may not read Revisions: the Deployment is refused", images: []string{"app:v1", "app:v2"},
			forbid: "revisions", req: deploymentReq, wantErr: ErrControllerOwned, wantIn: "forbidden", wantImage: "app:v2",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newKnativeWorld(tc.images...)
			if tc.edit != nil {
				tc.edit(t, w)
			}
			req := tc.req(w)
			typed, dyn := fixture.Clientset(w.typed...), w.dynamic()
			if tc.forbid != "" {
				dyn.PrependReactor("*", tc.forbid, func(a k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, apierrors.NewForbidden(fixture.KnativeRevisions.GroupResource(), "", errors.New("no rights"))
				})
			}
			u := New(clientset.WrapDynamic(typed, dyn), Options{Cooldown: 10 * time.Minute, Now: func() time.Time { return now },
				DryRun: tc.dryRun, Backoff: wait.Backoff{Steps: 3, Duration: time.Millisecond}})
			c, err := u.Undo(context.Background(), req)
			if !errors.Is(err, tc.wantErr) || err != nil && !strings.Contains(err.Error(), tc.wantIn) {
				t.Fatalf("Undo() = %v; want %v (saying %q)", err, tc.wantErr, tc.wantIn)
			}
			if w := writesOf(typed); len(w) > 0 {
				t.Errorf("wrote through the typed client (a Deployment Knative owns): %v", w)
			}
			patches := knativePatches(dyn)
			if tc.wantErr != nil {
				if len(patches) > 0 {
					t.Fatalf("refused, but patched: %v", patches)
				}
			} else {
				if c.Ref != kinds.RefOf(kinds.KnativeService, ns, "web") || c.From != tc.wantFrom || c.To != tc.wantTo {
					t.Errorf("Change = %s %d -> %d; want Service shop/web %d -> %d", c.Ref, c.From, c.To, tc.wantFrom, tc.wantTo)
				}
				checkKnativePatch(t, patches, tc.dryRun)
			}
			svc, err := dyn.Resource(fixture.KnativeServices).Namespace(ns).Get(context.Background(), "web", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			// The fake applies a dry run's patch too: its options are what checkKnativePatch checks.
			if got := fixture.KnativeImage(svc); !tc.dryRun && got != tc.wantImage {
				t.Errorf("image = %s; want %s", got, tc.wantImage)
			}
			if name, found, _ := unstructured.NestedString(svc.Object, "spec", "template", "metadata", "name"); tc.wantErr == nil && found {
				t.Errorf("the restored template names its revision %q: Knative cannot make a revision of a name used before", name)
			}
		})
	}
}

// knativePatches are the patches sent to Knative Services.
func knativePatches(dyn *dynamicfake.FakeDynamicClient) []k8stesting.PatchActionImpl {
	var out []k8stesting.PatchActionImpl
	for _, a := range dyn.Actions() {
		if p, ok := a.(k8stesting.PatchActionImpl); ok {
			out = append(out, p)
		}
	}
	return out
}

// checkKnativePatch: one JSON patch, carrying the resourceVersion read as its precondition,
// the template and the state annotation, sent with dryRun=All when dry.
func checkKnativePatch(t *testing.T, patches []k8stesting.PatchActionImpl, dryRun bool) {
	t.Helper()
	if len(patches) != 1 {
		t.Fatalf("%d patches; want 1", len(patches))
	}
	var ops []struct {
		Op, Path string
		Value    json.RawMessage
	}
	if err := json.Unmarshal(patches[0].GetPatch(), &ops); err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, op := range ops {
		paths = append(paths, op.Path)
		if op.Path == "/metadata/resourceVersion" && string(op.Value) != `"100"` {
			t.Errorf("precondition %s; want the resourceVersion read, 100", op.Value)
		}
	}
	if diff := cmp.Diff([]string{"/metadata/resourceVersion", "/spec/template", "/metadata/annotations"}, paths); diff != "" {
		t.Errorf("patch paths (-want +got):\n%s", diff)
	}
	if got := patches[0].PatchOptions.DryRun; dryRun != (len(got) == 1 && got[0] == metav1.DryRunAll) {
		t.Errorf("dryRun = %v; want dry %v", got, dryRun)
	}
}

func setReady(t *testing.T, rev *unstructured.Unstructured, ready bool) {
	t.Helper()
	status := "False"
	if ready {
		status = "True"
	}
	if err := unstructured.SetNestedSlice(rev.Object, []any{map[string]any{"type": "Ready", "status": status}}, "status", "conditions"); err != nil {
		t.Fatal(err)
	}
}

func setTraffic(t *testing.T, svc *unstructured.Unstructured, targets ...any) {
	t.Helper()
	if err := unstructured.SetNestedSlice(svc.Object, targets, "spec", "traffic"); err != nil {
		t.Fatal(err)
	}
}

func setImage(t *testing.T, svc *unstructured.Unstructured, image string) {
	t.Helper()
	if err := unstructured.SetNestedField(svc.Object, fixture.KnativeSpec(image), "spec", "template", "spec"); err != nil {
		t.Fatal(err)
	}
}

func setState(t *testing.T, svc *unstructured.Unstructured, s State) {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	a := svc.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	a[StateAnnotation] = string(b)
	svc.SetAnnotations(a)
}
