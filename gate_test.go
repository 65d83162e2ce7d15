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
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
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

	"github.com/sre-kit/alert-rollback/internal/alert"
	"github.com/sre-kit/alert-rollback/internal/budget"
	"github.com/sre-kit/alert-rollback/internal/fixture"
	"github.com/sre-kit/alert-rollback/internal/gitops"
	"github.com/sre-kit/alert-rollback/internal/kinds"
	"github.com/sre-kit/alert-rollback/internal/kube/clientset"
	"github.com/sre-kit/alert-rollback/internal/outcome"
	"github.com/sre-kit/alert-rollback/internal/undo"
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
	f.memoryLimit = noMemoryLimit
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
		if n := fixture.UnitsSpent(t, kube, ownNamespace); n != 1 {
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
		if n := fixture.UnitsSpent(t, kube, ownNamespace); n != 1 {
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
			if n := fixture.UnitsSpent(t, kube, ownNamespace); n != tt.wantUnits {
				t.Errorf("%d units spent; want %d", n, tt.wantUnits)
			}
		})
	}
}

// kustomization is the Flux Kustomization flux-system/apps as the fake dynamic client holds
// it, its inventory listing the workload web.
func kustomization(suspended bool) *unstructured.Unstructured {
	k := kustomizationListing(ownNamespace + "_web_apps_Deployment")
	if suspended {
		k.Object["spec"].(map[string]any)["suspend"] = true
	}
	return k
}

// kustomizationListing is the Kustomization flux-system/apps with these inventory ids.
func kustomizationListing(ids ...string) *unstructured.Unstructured {
	var entries []any
	for _, id := range ids {
		entries = append(entries, map[string]any{"id": id, "v": "v1"})
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
		"metadata": map[string]any{"namespace": "flux-system", "name": "apps", "uid": "ks-uid", "resourceVersion": "3"},
		"spec":     map[string]any{"interval": "10m", "path": "./shop", "prune": true},
		"status":   map[string]any{"inventory": map[string]any{"entries": entries}},
	}}
}

// gitopsNamespaces lets the function act where the owners of the tests below live.
const gitopsNamespaces = ownNamespace + ",flux-system,argocd"

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
	a := application()
	a.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "ApplicationSet", Name: "shops", UID: "set-uid"}})
	return a
}

// application is the Application argocd/shop, with self-heal on and the workload web among
// its resources.
func application() *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
		"metadata": map[string]any{"namespace": "argocd", "name": "shop", "uid": "app-uid", "resourceVersion": "5"},
		"spec":     map[string]any{"syncPolicy": map[string]any{"automated": map[string]any{"selfHeal": true}}},
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
		annotations map[string]string
		namespaces  string // ROLLBACK_NAMESPACES, when not gitopsNamespaces
		ownerGone   bool   // the Kustomization was deleted, leaving the workload behind
		unlisted    bool   // the Kustomization's inventory does not list the workload
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
			labels: fluxLabels, annotations: map[string]string{gitops.ArgoCDTrackingID: "shop:apps/Deployment:" + ownNamespace + "/web"},
			suspendErr: apierrors.NewForbidden(schema.GroupResource{Group: "kustomize.toolkit.fluxcd.io", Resource: "kustomizations"}, "apps", errors.New("RBAC")),
			want:       "web failed forbidden", wantSpec: kustomization(false).Object["spec"].(map[string]any), wantImage: "shop/web:v2",
			wantNote: "suspended Argo CD Application argocd/shop: spec.syncPolicy.automated.selfHeal set to false (the rest of its sync policy kept) " +
				"(resume once Git is fixed: set spec.syncPolicy.automated.selfHeal back to true on Application argocd/shop, or sync it from the Argo CD UI)",
			wantDynamic: []string{"get applications", "get kustomizations", "get applications", "patch applications", "get kustomizations", "patch kustomizations"}},
		// Labels name owners; only the owner's own records say it manages the workload, and
		// only owners in ROLLBACK_NAMESPACES are looked at, let alone suspended.
		{name: "suspend, the Kustomization outside ROLLBACK_NAMESPACES: refused, not even read", mode: "suspend", labels: fluxLabels, namespaces: ownNamespace,
			want: "web refused gitops-unverified", wantSpec: kustomization(false).Object["spec"].(map[string]any), wantImage: "shop/web:v2"},
		{name: "refuse, the Kustomization outside ROLLBACK_NAMESPACES: refused, not even read", labels: fluxLabels, namespaces: ownNamespace,
			want: "web refused gitops-unverified", wantSpec: kustomization(false).Object["spec"].(map[string]any), wantImage: "shop/web:v2"},
		{name: "suspend, the Kustomization's inventory does not list the workload: refused, nothing written or spent", mode: "suspend", labels: fluxLabels, unlisted: true,
			want: "web refused gitops-unverified", wantSpec: kustomizationListing().Object["spec"].(map[string]any), wantImage: "shop/web:v2",
			wantDynamic: []string{"get kustomizations"}},
		{name: "suspend, a HelmRelease: refused, not even read", mode: "suspend",
			labels: map[string]string{gitops.HelmName: "web", gitops.HelmNS: ownNamespace, gitops.ManagedByLabel: "Helm"},
			want:   "web refused gitops-unverified", wantSpec: kustomization(false).Object["spec"].(map[string]any), wantImage: "shop/web:v2"},
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
			objs := broken(tt.labels, "web")
			for k, v := range tt.annotations {
				objs[len(objs)-1].(*appsv1.Deployment).Annotations[k] = v
			}
			kube := fixture.Clientset(objs...)
			dyn := newDynamic(kustomization(false), helmRelease())
			switch {
			case tt.annotations != nil:
				dyn = newDynamic(kustomization(false), application())
			case tt.ownerGone:
				dyn = newDynamic()
			case tt.unlisted:
				dyn = newDynamic(kustomizationListing(ownNamespace+"_api_apps_Deployment", "web_"+ownNamespace+"_apps_Deployment"))
			case tt.generated:
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
			namespaces := gitopsNamespaces
			if tt.namespaces != "" {
				namespaces = tt.namespaces
			}
			_, send := startGated(t, clients{kube: clientset.Wrap(kube), dynamic: dyn, discovery: served(!tt.noArgoCD)},
				map[string]string{"ROLLBACK_GITOPS": tt.mode, "ROLLBACK_NAMESPACES": namespaces})
			code, resp := send("web")
			if tt.wantCode != 0 && code != tt.wantCode {
				t.Errorf("answer %d; want %d", code, tt.wantCode)
			}
			if got := results(resp); !cmp.Equal(got, []string{tt.want}) {
				t.Fatalf("results %v; want %s (%s)", got, tt.want, resp.Results[0].Message)
			}
			r := resp.Results[0]
			owner := "Flux Kustomization flux-system/apps"
			switch {
			case tt.labels[gitops.InstanceLabel] != "":
				owner = "Argo CD Application argocd/shop"
			case tt.labels[gitops.HelmName] != "":
				owner = "Flux HelmRelease " + ownNamespace + "/web"
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
			if n := fixture.UnitsSpent(t, kube, ownNamespace); n != tt.wantUnits {
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

func (e *recordedEvents) Record(_ kinds.Ref, _ types.UID, r outcome.Result) {
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
			f, send := startGated(t, clients{kube: clientset.Wrap(kube), dynamic: dyn, discovery: served(true)},
				map[string]string{"ROLLBACK_GITOPS": "suspend", "ROLLBACK_NAMESPACES": gitopsNamespaces})
			ev := &recordedEvents{}
			f.state.Load().pipeline.Events = ev
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
			if n := fixture.UnitsSpent(t, kube, ownNamespace); n != tt.wantUnits {
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

// budgetLease is the budget's Lease as kservice.yaml ships it, already there.
func budgetLease() *coordinationv1.Lease {
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: budget.LeaseName, Namespace: ownNamespace}}
}

// leaseRequests counts the requests made about the budget's Lease.
func leaseRequests(c *fake.Clientset) int {
	n := 0
	for _, a := range c.Actions() {
		if a.GetResource().Resource == "leases" {
			n++
		}
	}
	return n
}

// TestBudgetLeaseRequestsBounded: one level of retries. The budget retries its own write
// of the Lease after a conflict (10 attempts, a read and a write each), and the undo retries
// after a conflict of the workload's write; neither runs inside the other. A Lease that
// conflicts on every write costs one Take's attempts and ends the undo (a conflict, which a
// re-send may get past); a workload that conflicts on every write costs one Take and one
// Return, however many times the undo tries again. (When the budget's conflict was the
// undo's too, the first cost 100 requests per workload per delivery, the second 20.)
func TestBudgetLeaseRequestsBounded(t *testing.T) {
	conflict := func(resource string) k8stesting.ReactionFunc {
		return func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: resource}, "x", errors.New("changed"))
		}
	}
	tests := []struct {
		name                      string
		leaseConflicts, conflicts bool
		wantLease                 int // at most
		wantUnits                 int
	}{
		{name: "the Lease conflicts on every write", leaseConflicts: true, wantLease: 20},
		{name: "the workload conflicts on every write", conflicts: true, wantLease: 4},
		{name: "both conflict on every write", leaseConflicts: true, conflicts: true, wantLease: 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kube := fixture.Clientset(append(broken(nil, "web"), budgetLease())...)
			if tt.leaseConflicts {
				kube.PrependReactor("update", "leases", conflict("leases"))
			}
			if tt.conflicts {
				kube.PrependReactor("patch", "deployments", conflict("deployments"))
			}
			send := gated(t, kube, newDynamic(), nil)
			code, resp := send("web")
			if got := results(resp); code != http.StatusServiceUnavailable || !cmp.Equal(got, []string{"web failed conflict"}) {
				t.Errorf("answer %d %v; want 503, web failed conflict (a re-send may get past it)", code, got)
			}
			t.Logf("%d requests about the Lease", leaseRequests(kube))
			if n := leaseRequests(kube); n > tt.wantLease {
				t.Errorf("%d requests about the Lease for one workload in one delivery; want at most %d", n, tt.wantLease)
			}
			if n := fixture.UnitsSpent(t, kube, ownNamespace); n != tt.wantUnits {
				t.Errorf("%d units spent; want %d", n, tt.wantUnits)
			}
		})
	}
}

// TestCooldownKeptOnTheLease: the cooldown holds even when the workload's own record of it
// is gone. A tenant who rolls forward again and deletes the state annotation after each
// undo is refused "cooldown" from the budget's Lease, which only the function writes, and
// spends no unit: another team's undo still gets one.
func TestCooldownKeptOnTheLease(t *testing.T) {
	kube := fixture.Clientset(broken(nil, "web", "api")...)
	f, _ := startGated(t, clients{kube: clientset.Wrap(kube), dynamic: newDynamic()}, map[string]string{"ROLLBACK_BUDGET": "2/1h"})
	began := time.Now()
	send := func(name string, n int) string {
		t.Helper()
		a := firing("deployment", name)
		a.StartsAt = began.Add(time.Duration(n) * time.Second).UTC() // a new occurrence each time
		rec := httptest.NewRecorder()
		f.Handle(rec, post(notification(a)))
		var resp outcome.Response
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatalf("answer %s: %v", rec.Body, err)
		}
		return strings.Join(results(resp), "; ")
	}
	bad, err := kube.AppsV1().Deployments(ownNamespace).Get(t.Context(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := send("web", 0); got != "web rolled-back rolled-back" {
		t.Fatalf("first alert: %s; want rolled back", got)
	}
	for n := 1; n <= 3; n++ {
		// The tenant rolls the bad template out again and deletes the record of the undo.
		d, err := kube.AppsV1().Deployments(ownNamespace).Get(t.Context(), "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		d.Spec.Template = bad.Spec.Template
		delete(d.Annotations, undo.StateAnnotation)
		// The apiserver counts each change of the spec (the undo's, this one); the fake
		// does not.
		d.Generation += 2
		if _, err := kube.AppsV1().Deployments(ownNamespace).Update(t.Context(), d, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if got := send("web", n); got != "web refused cooldown" {
			t.Errorf("alert %d after the state annotation was deleted: %s; want web refused cooldown", n, got)
		}
	}
	if got := send("api", 10); got != "api rolled-back rolled-back" {
		t.Errorf("another team's alert: %s; want rolled back, the budget has a unit left", got)
	}
	if n := fixture.UnitsSpent(t, kube, ownNamespace); n != 2 {
		t.Errorf("%d units spent; want 2, one per workload undone", n)
	}
}

// TestCooldownAfterAWriteThatMayHaveLanded: a write that timed out may have landed, so its
// unit is kept; when it did not land, the notification sent again finds the workload as it
// was (same object, same generation) and is not refused "cooldown" by that unit: it takes a
// unit of its own and rolls back. A workload the undo did change is refused.
func TestCooldownAfterAWriteThatMayHaveLanded(t *testing.T) {
	kube := fixture.Clientset(broken(nil, "web")...)
	timeouts := 1
	kube.PrependReactor("patch", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) {
		if timeouts == 0 {
			return false, nil, nil
		}
		timeouts--
		return true, nil, apierrors.NewServerTimeout(schema.GroupResource{Group: "apps", Resource: "deployments"}, "patch", 2)
	})
	send := gated(t, kube, newDynamic(), nil)
	if code, resp := send("web"); code != http.StatusServiceUnavailable || !cmp.Equal(results(resp), []string{"web failed timeout"}) {
		t.Fatalf("answer %d %v; want 503, web failed timeout", code, results(resp))
	}
	if n := fixture.UnitsSpent(t, kube, ownNamespace); n != 1 {
		t.Fatalf("%d units after a write that may have landed; want 1, kept", n)
	}
	if code, resp := send("web"); code != http.StatusOK || !cmp.Equal(results(resp), []string{"web rolled-back rolled-back"}) {
		t.Fatalf("the notification sent again: %d %v; want web rolled back", code, results(resp))
	}
	if n := fixture.UnitsSpent(t, kube, ownNamespace); n != 2 {
		t.Errorf("%d units; want 2 (the one kept for the write that may have landed, and the undo's)", n)
	}
}
