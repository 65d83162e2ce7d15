package function

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sre-kit/alert-rollback/alert"
	"github.com/sre-kit/alert-rollback/budget"
	"github.com/sre-kit/alert-rollback/gitops"
	"github.com/sre-kit/alert-rollback/internal/fixture"
	"github.com/sre-kit/alert-rollback/internal/kube/clientset"
	"github.com/sre-kit/alert-rollback/outcome"
	"github.com/sre-kit/alert-rollback/target"
	"github.com/sre-kit/alert-rollback/undo"
)

// gated starts the function with the given fakes and settings on top of the defaults (the
// budget on, GitOps refused), and returns a way to send it a notification about
// Deployments by name.
func gated(t *testing.T, kube *fake.Clientset, dyn *dynamicfake.FakeDynamicClient, env map[string]string) func(names ...string) (int, outcome.Response) {
	t.Helper()
	_, send := startGated(t, clients{kube: clientset.Wrap(kube), dynamic: dyn}, env)
	return send
}

// startGated is gated with the clients given (the function's namespace set), returning the
// function too.
func startGated(t *testing.T, c clients, env map[string]string) (*Function, func(names ...string) (int, outcome.Response)) {
	t.Helper()
	cfg := map[string]string{"ROLLBACK_AUTH_TOKEN": testToken}
	for k, v := range env {
		cfg[k] = v
	}
	c.namespace = ownNamespace
	f := New()
	f.newClient = func(config) (clients, error) { return c, nil }
	f.newLogger = zap.NewNop().Sugar
	f.cgroupRoot = fstest.MapFS{}
	if err := f.Start(context.Background(), cfg); err != nil {
		t.Fatalf("Start() = %v", err)
	}
	t.Cleanup(func() { _ = f.Stop(context.Background()) })
	return f, func(names ...string) (int, outcome.Response) {
		t.Helper()
		var alerts []alert.Alert
		for _, n := range names {
			alerts = append(alerts, firing("deployment", n))
		}
		rec := httptest.NewRecorder()
		f.Handle(rec, post(notification(alerts...)))
		var resp outcome.Response
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatalf("answer %s: %v", rec.Body, err)
		}
		return rec.Code, resp
	}
}

// broken returns Deployments at v2 with a v1 to go back to, labelled as given.
func broken(labels map[string]string, names ...string) []runtime.Object {
	var objs []runtime.Object
	for _, n := range names {
		d, rss := fixture.Deployment(ownNamespace, n, "shop/"+n+":v1", "shop/"+n+":v2")
		for k, v := range labels {
			if d.Labels == nil {
				d.Labels = map[string]string{}
			}
			d.Labels[k] = v
		}
		objs = append(objs, fixture.Objects(rss...)...)
		objs = append(objs, d)
	}
	return objs
}

func unitsSpent(t *testing.T, c *fake.Clientset) int {
	t.Helper()
	n, err := budget.New(c.CoordinationV1().Leases(ownNamespace), ownNamespace, budget.Spec{Units: 1000, Window: 1 << 62}, budget.Options{}).Spent(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func results(resp outcome.Response) []string {
	var out []string
	for _, r := range resp.Results {
		out = append(out, r.Name+" "+string(r.Action)+" "+string(r.Reason))
	}
	return out
}

// TestBudgetGate: with the default settings an undo spends one unit of the budget, with
// two more round trips (read the Lease, write it); when the budget is spent the next undo is
// refused with the count and the time it frees up; an undo the apiserver rejects gives its
// unit back; one whose fate is unknown keeps it; a dry run spends nothing.
func TestBudgetGate(t *testing.T) {
	t.Run("default: one unit per undo", func(t *testing.T) {
		kube := fixture.Clientset(broken(nil, "web")...)
		send := gated(t, kube, newDynamic(), nil)
		if _, resp := send("web"); !cmp.Equal(results(resp), []string{"web rolled-back rolled-back"}) {
			t.Fatalf("results %v", results(resp))
		}
		want := []string{"get deployments", "list replicasets", "get leases", "create leases", "patch deployments"}
		if diff := cmp.Diff(want, actions(kube)); diff != "" {
			t.Errorf("API actions (-want +got):\n%s", diff)
		}
		if n := unitsSpent(t, kube); n != 1 {
			t.Errorf("%d units spent; want 1", n)
		}
	})
	t.Run("a skipped re-send asks nothing of the budget", func(t *testing.T) {
		kube := fixture.Clientset(broken(nil, "web")...)
		send := gated(t, kube, newDynamic(), nil)
		send("web")
		kube.ClearActions()
		if _, resp := send("web"); !cmp.Equal(results(resp), []string{"web skipped already-handled"}) {
			t.Fatalf("re-send: results %v", results(resp))
		}
		// This process saw the occurrence settle: its copy is answered from memory, with no
		// API call at all, let alone the budget's.
		if diff := cmp.Diff([]string{}, actions(kube)); diff != "" {
			t.Errorf("API actions of the re-send (-want +got):\n%s", diff)
		}
		if n := unitsSpent(t, kube); n != 1 {
			t.Errorf("%d units spent; want 1", n)
		}
	})
	t.Run("spent: refused, says how many and until when", func(t *testing.T) {
		kube := fixture.Clientset(broken(nil, "web", "api", "cart")...)
		send := gated(t, kube, newDynamic(), map[string]string{"ROLLBACK_BUDGET": "2/1h"})
		for _, n := range []string{"web", "api"} {
			if _, resp := send(n); len(resp.Results) != 1 || resp.Results[0].Action != outcome.RolledBack {
				t.Fatalf("%s: results %v", n, results(resp))
			}
		}
		kube.ClearActions()
		code, resp := send("cart")
		if code != http.StatusOK || !cmp.Equal(results(resp), []string{"cart refused budget-exhausted"}) {
			t.Fatalf("answer %d %v; want 200, refused budget-exhausted", code, results(resp))
		}
		if msg := resp.Results[0].Message; !strings.Contains(msg, "2 of 2 rollbacks spent in the last 1h0m0s; the next is allowed after ") {
			t.Errorf("message %q does not say the count and the time", msg)
		}
		if w := writes(kube); len(w) != 0 {
			t.Errorf("a refusal wrote %v", w)
		}
		if img := deploymentImage(t, kube, ownNamespace, "cart"); img != "shop/cart:v2" {
			t.Errorf("cart at %s; want untouched v2", img)
		}
	})
	tests := []struct {
		name      string
		env       map[string]string
		patchErr  error
		wantUnits int
		wantWrite []string
	}{
		{name: "rejected by the apiserver: the unit is given back", patchErr: apierrors.NewInvalid(schema.GroupKind{Group: "apps", Kind: "Deployment"}, "web", nil),
			wantUnits: 0, wantWrite: []string{"create leases", "patch deployments", "update leases"}},
		{name: "timed out, may have landed: the unit is kept", patchErr: apierrors.NewServerTimeout(schema.GroupResource{Group: "apps", Resource: "deployments"}, "patch", 1),
			wantUnits: 1, wantWrite: []string{"create leases", "patch deployments"}},
		{name: "dry run: nothing spent", env: map[string]string{"ROLLBACK_DRY_RUN": "true"},
			wantUnits: 0, wantWrite: []string{"patch deployments"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kube := fixture.Clientset(broken(nil, "web")...)
			if tt.patchErr != nil {
				kube.PrependReactor("patch", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, tt.patchErr
				})
			}
			env := map[string]string{"ROLLBACK_API_TIMEOUT": "1s"}
			for k, v := range tt.env {
				env[k] = v
			}
			send := gated(t, kube, newDynamic(), env)
			send("web")
			if diff := cmp.Diff(tt.wantWrite, writes(kube)); diff != "" {
				t.Errorf("writes (-want +got):\n%s", diff)
			}
			if n := unitsSpent(t, kube); n != tt.wantUnits {
				t.Errorf("%d units spent; want %d", n, tt.wantUnits)
			}
		})
	}
}

// kustomization is a Flux Kustomization as the fake dynamic client holds it.
func kustomization(suspended bool) *unstructured.Unstructured {
	spec := map[string]any{"interval": "10m", "path": "./shop", "prune": true}
	if suspended {
		spec["suspend"] = true
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
		"metadata": map[string]any{"namespace": "flux-system", "name": "apps", "uid": "ks-uid", "resourceVersion": "3"},
		"spec":     spec,
	}}
}

// helmRelease is a Flux HelmRelease beside the workload, as the fake dynamic client holds it.
func helmRelease() *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
		"metadata": map[string]any{"namespace": ownNamespace, "name": "web", "uid": "hr-uid", "resourceVersion": "4"},
		"spec":     map[string]any{"interval": "5m"},
	}}
}

// generatedApplication is the Application argocd/shop, made by an ApplicationSet, with
// self-heal on and the workload web among its resources.
func generatedApplication() *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
		"metadata": map[string]any{"namespace": "argocd", "name": "shop", "uid": "app-uid", "resourceVersion": "5",
			"ownerReferences": []any{map[string]any{"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet", "name": "shops", "uid": "set-uid"}}},
		"spec": map[string]any{"syncPolicy": map[string]any{"automated": map[string]any{"selfHeal": true}}},
		"status": map[string]any{"resources": []any{map[string]any{
			"group": "apps", "version": "v1", "kind": "Deployment", "namespace": ownNamespace, "name": "web"}}},
	}}
}

var fluxLabels = map[string]string{gitops.KustomizeName: "apps", gitops.KustomizeNS: "flux-system"}

// TestGitOpsGate: a workload Flux owns is refused by default (before the budget: nothing
// spent), rolled back after suspending its Kustomization with ROLLBACK_GITOPS=suspend (the
// state annotation, the result and the Events say so), and rolled back untouched with
// ignore. An owner that cannot be suspended fails the undo and gives the unit back.
func TestGitOpsGate(t *testing.T) {
	tests := []struct {
		name        string
		mode        string
		labels      map[string]string
		ownerGone   bool // the Kustomization was deleted, leaving the workload behind
		suspendErr  error
		readErr     error  // the answer to every read of an Application
		noArgoCD    bool   // discovery says the API server does not serve Applications
		generated   bool   // an ApplicationSet made the Application argocd/shop, which lists the workload
		wantCode    int    // the HTTP status, when set
		suspendOn   string // the resource whose patch fails with suspendErr; kustomizations if empty
		want        string
		wantSpec    map[string]any
		wantImage   string
		wantUnits   int
		wantNote    string
		wantDynamic []string
	}{
		{name: "refuse (default)", labels: fluxLabels, want: "web refused gitops-managed",
			wantSpec: kustomization(false).Object["spec"].(map[string]any), wantImage: "shop/web:v2",
			wantDynamic: []string{"get kustomizations"}},
		{name: "refuse, the Kustomization deleted: owner missing, nothing spent", labels: fluxLabels, ownerGone: true,
			want: "web refused gitops-owner-missing", wantImage: "shop/web:v2", wantDynamic: []string{"get kustomizations"}},
		{name: "suspend", mode: "suspend", labels: fluxLabels, want: "web rolled-back rolled-back",
			wantSpec: kustomization(true).Object["spec"].(map[string]any), wantImage: "shop/web:v1", wantUnits: 1,
			wantNote:    "suspended Flux Kustomization flux-system/apps: spec.suspend set to true (resume once Git is fixed: flux resume kustomization apps -n flux-system)",
			wantDynamic: []string{"get kustomizations", "get kustomizations", "patch kustomizations"}},
		{name: "suspend, the Kustomization deleted: owner missing, nothing written or spent", mode: "suspend", labels: fluxLabels, ownerGone: true,
			want: "web refused gitops-owner-missing", wantImage: "shop/web:v2", wantDynamic: []string{"get kustomizations"}},
		{name: "suspend refused by RBAC: failed, nothing spent", mode: "suspend", labels: fluxLabels,
			suspendErr: apierrors.NewForbidden(schema.GroupResource{Group: "kustomize.toolkit.fluxcd.io", Resource: "kustomizations"}, "apps", errors.New("RBAC")),
			want:       "web failed forbidden", wantSpec: kustomization(false).Object["spec"].(map[string]any), wantImage: "shop/web:v2",
			wantDynamic: []string{"get kustomizations", "get kustomizations", "patch kustomizations"}},
		{name: "suspend: the second owner refuses; the first stays suspended and is named", mode: "suspend",
			labels:     map[string]string{gitops.KustomizeName: "apps", gitops.KustomizeNS: "flux-system", gitops.HelmName: "web", gitops.HelmNS: ownNamespace},
			suspendErr: apierrors.NewForbidden(schema.GroupResource{Group: "helm.toolkit.fluxcd.io", Resource: "helmreleases"}, "web", errors.New("RBAC")),
			suspendOn:  "helmreleases",
			want:       "web failed forbidden", wantSpec: kustomization(true).Object["spec"].(map[string]any), wantImage: "shop/web:v2",
			wantNote:    "suspended Flux Kustomization flux-system/apps: spec.suspend set to true (resume once Git is fixed: flux resume kustomization apps -n flux-system)",
			wantDynamic: []string{"get kustomizations", "get helmreleases", "get kustomizations", "patch kustomizations", "get helmreleases", "patch helmreleases"}},
		{name: "label tracking, Applications forbidden (no gitops.yaml): refused gitops-unknown, nothing spent",
			labels: map[string]string{gitops.InstanceLabel: "shop"}, readErr: apierrors.NewForbidden(schema.GroupResource{Group: "argoproj.io", Resource: "applications"}, "shop", errors.New("RBAC")),
			want: "web refused gitops-unknown", wantCode: http.StatusOK, wantSpec: kustomization(false).Object["spec"].(map[string]any), wantImage: "shop/web:v2",
			wantDynamic: []string{"get applications"}},
		{name: "label tracking, Applications forbidden, no Argo CD installed: a chart's label, rolled back",
			labels: map[string]string{gitops.InstanceLabel: "shop"}, readErr: apierrors.NewForbidden(schema.GroupResource{Group: "argoproj.io", Resource: "applications"}, "shop", errors.New("RBAC")),
			noArgoCD: true, want: "web rolled-back rolled-back", wantSpec: kustomization(false).Object["spec"].(map[string]any), wantImage: "shop/web:v1", wantUnits: 1,
			wantDynamic: []string{"get applications"}},
		{name: "label tracking, apiserver unavailable: failed, retryable",
			labels: map[string]string{gitops.InstanceLabel: "shop"}, readErr: apierrors.NewServiceUnavailable("etcd"),
			want: "web failed api-unavailable", wantCode: http.StatusServiceUnavailable, wantSpec: kustomization(false).Object["spec"].(map[string]any), wantImage: "shop/web:v2",
			wantDynamic: []string{"get applications"}},
		{name: "label tracking, no Argo CD: a chart's label, rolled back", labels: map[string]string{gitops.InstanceLabel: "shop"},
			want: "web rolled-back rolled-back", wantSpec: kustomization(false).Object["spec"].(map[string]any), wantImage: "shop/web:v1", wantUnits: 1,
			wantDynamic: []string{"get applications"}},
		{name: "suspend, the Application generated by an ApplicationSet: refused, nothing written or spent", mode: "suspend",
			labels: map[string]string{gitops.InstanceLabel: "shop"}, generated: true,
			want: "web refused gitops-parent-managed", wantSpec: kustomization(false).Object["spec"].(map[string]any), wantImage: "shop/web:v2",
			wantDynamic: []string{"get applications"}},
		{name: "ignore", mode: "ignore", labels: fluxLabels, want: "web rolled-back rolled-back",
			wantSpec: kustomization(false).Object["spec"].(map[string]any), wantImage: "shop/web:v1", wantUnits: 1},
		{name: "Helm: rolled back, with a note", labels: map[string]string{gitops.ManagedByLabel: "Helm"}, want: "web rolled-back rolled-back",
			wantSpec: kustomization(false).Object["spec"].(map[string]any), wantImage: "shop/web:v1", wantUnits: 1,
			wantNote: "managed by Helm: the next `helm upgrade` puts the chart's template back and supersedes this rollback"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kube := fixture.Clientset(broken(tt.labels, "web")...)
			dyn := newDynamic(kustomization(false), helmRelease())
			if tt.ownerGone {
				dyn = newDynamic()
			}
			if tt.generated {
				dyn = newDynamic(kustomization(false), generatedApplication())
			}
			if tt.suspendErr != nil {
				on := tt.suspendOn
				if on == "" {
					on = "kustomizations"
				}
				dyn.PrependReactor("patch", on, func(k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, tt.suspendErr
				})
			}
			if tt.readErr != nil {
				dyn.PrependReactor("get", "applications", func(k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, tt.readErr
				})
			}
			_, send := startGated(t, clients{kube: clientset.Wrap(kube), dynamic: dyn, discovery: served(!tt.noArgoCD)},
				map[string]string{"ROLLBACK_GITOPS": tt.mode})
			code, resp := send("web")
			if tt.wantCode != 0 && code != tt.wantCode {
				t.Errorf("answer %d; want %d", code, tt.wantCode)
			}
			if got := results(resp); !cmp.Equal(got, []string{tt.want}) {
				t.Fatalf("results %v; want %s (%s)", got, tt.want, resp.Results[0].Message)
			}
			r := resp.Results[0]
			owner := "Flux Kustomization flux-system/apps"
			if tt.labels[gitops.InstanceLabel] != "" {
				owner = "Argo CD Application argocd/shop"
			}
			if r.Action == outcome.Refused && !strings.Contains(r.Message, owner) {
				t.Errorf("refusal %q does not name %s", r.Message, owner)
			}
			var dynActions []string
			for _, a := range dyn.Actions() {
				dynActions = append(dynActions, a.GetVerb()+" "+a.GetResource().Resource)
			}
			if diff := cmp.Diff(tt.wantDynamic, dynActions); diff != "" {
				t.Errorf("Argo CD / Flux actions (-want +got):\n%s", diff)
			}
			if !tt.ownerGone {
				ks, err := dyn.Resource(gitops.KustomizationResource).Namespace("flux-system").Get(context.Background(), "apps", metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tt.wantSpec, ks.Object["spec"]); diff != "" {
					t.Errorf("Kustomization spec (-want +got):\n%s", diff)
				}
			}
			if img := deploymentImage(t, kube, ownNamespace, "web"); img != tt.wantImage {
				t.Errorf("web at %s; want %s", img, tt.wantImage)
			}
			if n := unitsSpent(t, kube); n != tt.wantUnits {
				t.Errorf("%d budget units spent; want %d", n, tt.wantUnits)
			}
			if tt.wantNote == "" {
				return
			}
			if !cmp.Equal(r.Notes, []string{tt.wantNote}) || !strings.HasSuffix(r.Message, ": "+tt.wantNote) && !strings.HasSuffix(r.Message, "; "+tt.wantNote) {
				t.Errorf("result notes %q, message %q; want the note %q", r.Notes, r.Message, tt.wantNote)
			}
			if r.Action != outcome.RolledBack {
				return // no undo, so no state written
			}
			d, err := kube.AppsV1().Deployments(ownNamespace).Get(context.Background(), "web", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var state undo.State
			if err := json.Unmarshal([]byte(d.Annotations[undo.StateAnnotation]), &state); err != nil || state.Last == nil {
				t.Fatalf("state annotation %q: %v", d.Annotations[undo.StateAnnotation], err)
			}
			if !cmp.Equal(state.Last.Notes, []string{tt.wantNote}) {
				t.Errorf("state records notes %q; want %q", state.Last.Notes, tt.wantNote)
			}
		})
	}
}

// served is a discovery that serves every resource type, or none.
type served bool

func (s served) Serves(context.Context, schema.GroupVersionResource) (bool, error) {
	return bool(s), nil
}

// recordedEvents keeps the Events the function records: on the workload, and on the objects
// changed for its undo.
type recordedEvents struct {
	mu             sync.Mutex
	workload       []string
	related        []string
	relatedObjects []string
}

func (e *recordedEvents) Record(_ types.UID, r outcome.Result) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.workload = append(e.workload, r.String())
}

func (e *recordedEvents) RecordRelated(ref corev1.ObjectReference, r outcome.Result) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.related = append(e.related, r.String())
	e.relatedObjects = append(e.relatedObjects, ref.Kind+" "+ref.Namespace+"/"+ref.Name)
}

func (e *recordedEvents) Shutdown() {}

// TestGitOpsSuspendedThenNoUndo: the owner is suspended, then the undo does not happen: the
// apiserver refuses the workload's write (an admission webhook, say), or the write conflicts
// and the next attempt is refused. No state annotation can say what was suspended, so the
// result and the Events on the workload and on the owner must: the owner stays suspended,
// and someone has to resume it. When the next attempt succeeds, the state records it.
func TestGitOpsSuspendedThenNoUndo(t *testing.T) {
	const said = "suspended Flux Kustomization flux-system/apps: spec.suspend set to true"
	const resume = "flux resume kustomization apps -n flux-system"
	deployments := schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	tests := []struct {
		name string
		// patch answers the workload's n-th write (from 0); handled false lets it through.
		patch func(kube *fake.Clientset, a k8stesting.Action, n int) (handled bool, err error)
		// noWorkloadEvent: a copy of what another replica did makes no Event on the workload.
		noWorkloadEvent bool
		want            string
		wantCode        int
		wantUnits       int
		wantSaid        string // the message says this after the error
	}{
		{name: "the write refused", want: "web failed api-error", wantCode: http.StatusUnprocessableEntity,
			wantSaid: "; not rolled back, but done beforehand and left so: " + said,
			patch: func(*fake.Clientset, k8stesting.Action, int) (bool, error) {
				return true, apierrors.NewInvalid(schema.GroupKind{Group: "apps", Kind: "Deployment"}, "web", nil)
			}},
		{name: "the write conflicts, and meanwhile a person opted the workload out", want: "web refused opted-out", wantCode: http.StatusOK,
			wantSaid: "; not rolled back, but done beforehand and left so: " + said,
			patch: func(kube *fake.Clientset, _ k8stesting.Action, _ int) (bool, error) {
				obj, err := kube.Tracker().Get(deployments, ownNamespace, "web")
				if err != nil {
					return true, err
				}
				d := obj.(*appsv1.Deployment).DeepCopy()
				d.Annotations[undo.OptOutAnnotation] = "true"
				if err := kube.Tracker().Update(deployments, d, ownNamespace); err != nil {
					return true, err
				}
				return true, apierrors.NewConflict(schema.GroupResource{Group: "apps", Resource: "deployments"}, "web", errors.New("changed"))
			}},
		{name: "the write conflicts once, then lands", want: "web rolled-back rolled-back", wantCode: http.StatusOK, wantUnits: 1,
			wantSaid: "; " + said,
			patch: func(_ *fake.Clientset, _ k8stesting.Action, n int) (bool, error) {
				if n > 0 {
					return false, nil
				}
				return true, apierrors.NewConflict(schema.GroupResource{Group: "apps", Resource: "deployments"}, "web", errors.New("changed"))
			}},
		// As if another replica had made this very undo just before: its patch lands (made
		// here with this one's), and this one's conflicts.
		{name: "the write conflicts: another replica's undo won", want: "web skipped already-handled", wantCode: http.StatusOK,
			noWorkloadEvent: true, wantSaid: "; " + said,
			patch: func(kube *fake.Clientset, a k8stesting.Action, n int) (bool, error) {
				if n > 0 {
					return false, nil
				}
				if _, _, err := k8stesting.ObjectReaction(kube.Tracker())(a); err != nil {
					return true, err
				}
				return true, apierrors.NewConflict(schema.GroupResource{Group: "apps", Resource: "deployments"}, "web", errors.New("changed"))
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kube := fixture.Clientset(broken(fluxLabels, "web")...)
			n := 0
			kube.PrependReactor("patch", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
				handled, err := tt.patch(kube, a, n)
				n++
				return handled, nil, err
			})
			dyn := newDynamic(kustomization(false))
			f, send := startGated(t, clients{kube: clientset.Wrap(kube), dynamic: dyn, discovery: served(true)}, map[string]string{"ROLLBACK_GITOPS": "suspend"})
			ev := &recordedEvents{}
			f.state.Load().events = ev
			code, resp := send("web")
			if got := results(resp); code != tt.wantCode || !cmp.Equal(got, []string{tt.want}) {
				t.Fatalf("answer %d %v; want %d, %s", code, got, tt.wantCode, tt.want)
			}
			if msg := resp.Results[0].Message; !strings.Contains(msg, tt.wantSaid) || !strings.Contains(msg, resume) {
				t.Errorf("message %q does not say %q and how to resume", msg, tt.wantSaid)
			}
			ks, err := dyn.Resource(gitops.KustomizationResource).Namespace("flux-system").Get(context.Background(), "apps", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if suspended, _, _ := unstructured.NestedBool(ks.Object, "spec", "suspend"); !suspended {
				t.Errorf("Kustomization spec %v; want it suspended, as the message says", ks.Object["spec"])
			}
			if n := unitsSpent(t, kube); n != tt.wantUnits {
				t.Errorf("%d budget units spent; want %d", n, tt.wantUnits)
			}
			if tt.noWorkloadEvent && len(ev.workload) != 0 {
				t.Errorf("Events on the workload %q; want none", ev.workload)
			}
			if !tt.noWorkloadEvent && (len(ev.workload) != 1 || !strings.Contains(ev.workload[0], said)) {
				t.Errorf("Events on the workload %q; want one naming what was suspended", ev.workload)
			}
			if !cmp.Equal(ev.relatedObjects, []string{"Kustomization flux-system/apps"}) || !strings.Contains(ev.related[0], resume) {
				t.Errorf("Events on %v: %q; want one on the Kustomization saying how to resume", ev.relatedObjects, ev.related)
			}
			if resp.Results[0].Action != outcome.RolledBack {
				return
			}
			d, err := kube.AppsV1().Deployments(ownNamespace).Get(context.Background(), "web", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if state := d.Annotations[undo.StateAnnotation]; !strings.Contains(state, said) {
				t.Errorf("state annotation %s does not record %q", state, said)
			}
		})
	}
}

// TestBudgetTwoReplicasOneUndo: two replicas admit an undo for the same alerts about the
// same workload (an HA pair's copies). Each spends a unit of its own; when the one that loses
// the race gives its unit back, the winner's stays: the undo that landed is paid for. With
// units named after the alerts, shared by both, the loser gave back the winner's unit, and
// e2e/guards' storm made one undo more than the budget.
func TestBudgetTwoReplicasOneUndo(t *testing.T) {
	kube := fixture.Clientset()
	replica := func() gate {
		return gate{budget: budget.New(clientset.Wrap(kube).Leases(ownNamespace), ownNamespace, budget.Spec{Units: 5, Window: time.Hour}, budget.Options{}),
			log: zap.NewNop().Sugar()}
	}
	s := undo.Subject{Ref: target.Ref{Kind: target.Deployment, Namespace: ownNamespace, Name: "web"}}
	if _, err := replica().Admit(t.Context(), s, false); err != nil { // the winner
		t.Fatal(err)
	}
	loser, err := replica().Admit(t.Context(), s, false)
	if err != nil {
		t.Fatal(err)
	}
	if n := unitsSpent(t, kube); n != 2 {
		t.Fatalf("%d units spent by two admissions; want 2, one each", n)
	}
	loser.Release(t.Context()) // its write conflicted: the other replica's landed
	if n := unitsSpent(t, kube); n != 1 {
		t.Fatalf("%d units spent after the loser gave its own back; want 1, the winner's", n)
	}
}
