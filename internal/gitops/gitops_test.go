package gitops

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestParseMode(t *testing.T) {
	tests := []struct {
		in      string
		want    Mode
		wantErr bool
	}{
		{in: "", want: Refuse},
		{in: "refuse", want: Refuse},
		{in: " suspend ", want: Suspend},
		{in: "ignore", want: Ignore},
		{in: "Suspend", wantErr: true},
		{in: "off", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseMode(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParseMode(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// obj builds an unstructured object from a Go literal of its content.
func obj(gvr schema.GroupVersionResource, kind, ns, name string, spec, status map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": gvr.GroupVersion().String(), "kind": kind,
		"metadata": map[string]any{"namespace": ns, "name": name, "uid": "uid-" + name, "resourceVersion": "7"},
	}}
	if spec != nil {
		u.Object["spec"] = spec
	}
	if status != nil {
		u.Object["status"] = status
	}
	return u
}

func app(ns, name string, automated map[string]any, manages ...string) *unstructured.Unstructured {
	var resources []any
	for _, m := range manages {
		wns, wname, _ := strings.Cut(m, "/")
		resources = append(resources, map[string]any{"group": "apps", "version": "v1", "kind": "Deployment", "namespace": wns, "name": wname})
	}
	spec := map[string]any{"project": "default", "destination": map[string]any{"server": "https://kubernetes.default.svc"}}
	if automated != nil {
		spec["syncPolicy"] = map[string]any{"automated": automated, "syncOptions": []any{"CreateNamespace=true"}}
	}
	return obj(ApplicationResource, Application, ns, name, spec, map[string]any{"resources": resources})
}

// child is the Application argocd/shop managing shop/web, as something else made it: set
// adds the owner references, labels or annotations that say what.
func child(set func(*unstructured.Unstructured)) *unstructured.Unstructured {
	a := app("argocd", "shop", map[string]any{"selfHeal": true}, "shop/web")
	set(a)
	return a
}

// appOfApps is the Application argocd/root managing the Application argocd/shop.
func appOfApps() *unstructured.Unstructured {
	root := app("argocd", "root", map[string]any{"selfHeal": true})
	root.Object["status"] = map[string]any{"resources": []any{map[string]any{
		"group": "argoproj.io", "version": "v1alpha1", "kind": "Application", "namespace": "argocd", "name": "shop"}}}
	return root
}

// kustomization is a Flux Kustomization whose inventory lists the Deployments manages
// ("namespace/name"), as kustomize-controller records them.
func kustomization(ns, name string, manages ...string) *unstructured.Unstructured {
	var entries []any
	for _, m := range manages {
		wns, wname, _ := strings.Cut(m, "/")
		entries = append(entries, map[string]any{"id": wns + "_" + wname + "_apps_Deployment", "v": "v1"})
	}
	return obj(KustomizationResource, Kustomization, ns, name, map[string]any{"interval": "10m", "path": "./shop"},
		map[string]any{"inventory": map[string]any{"entries": entries}})
}

func helmRelease(ns, name string) *unstructured.Unstructured {
	return obj(HelmReleaseResource, HelmRelease, ns, name, map[string]any{"interval": "5m"}, nil)
}

// all allows every namespace; only the ones named.
func all(string) bool { return true }

func only(namespaces ...string) func(string) bool {
	return func(ns string) bool { return slices.Contains(namespaces, ns) }
}

func newClient(objs ...runtime.Object) *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		ApplicationResource:   "ApplicationList",
		KustomizationResource: "KustomizationList",
		HelmReleaseResource:   "HelmReleaseList",
	}, objs...)
}

func deployment(labels, annotations map[string]string) Workload {
	return Workload{Group: "apps", Kind: "Deployment", Namespace: "shop", Name: "web", Labels: labels, Annotations: annotations}
}

func actions(c *dynamicfake.FakeDynamicClient) []string {
	var out []string
	for _, a := range c.Actions() {
		out = append(out, a.GetVerb()+" "+a.GetResource().Resource+" "+a.GetNamespace())
	}
	return out
}

func TestOwners(t *testing.T) {
	tests := []struct {
		name        string
		objects     []runtime.Object
		w           Workload
		want        []Owner
		wantActions []string
	}{
		{name: "nothing owns it", w: deployment(map[string]string{"app": "web"}, nil)},
		{name: "Argo CD annotation tracking, Application in Argo CD's namespace",
			objects:     []runtime.Object{app("argocd", "shop", nil, "shop/web")},
			w:           deployment(nil, map[string]string{ArgoCDTrackingID: "shop:apps/Deployment:shop/web"}),
			want:        []Owner{{Kind: Application, Namespace: "argocd", Name: "shop", Via: "annotation " + ArgoCDTrackingID}},
			wantActions: []string{"get applications argocd"}},
		{name: "Argo CD annotation tracking, apps in any namespace",
			objects:     []runtime.Object{app("team-a", "shop", nil, "shop/web")},
			w:           deployment(nil, map[string]string{ArgoCDTrackingID: "team-a_shop:apps/Deployment:shop/web"}),
			want:        []Owner{{Kind: Application, Namespace: "team-a", Name: "shop", Via: "annotation " + ArgoCDTrackingID}},
			wantActions: []string{"get applications team-a"}},
		{name: "Argo CD annotation tracking, the Application does not list the workload: unverified",
			objects: []runtime.Object{app("argocd", "shop", nil, "shop/api")},
			w:       deployment(nil, map[string]string{ArgoCDTrackingID: "shop:apps/Deployment:shop/web"}),
			want: []Owner{{Kind: Application, Namespace: "argocd", Name: "shop", Via: "annotation " + ArgoCDTrackingID,
				Unverified: "its status.resources does not list apps/Deployment shop/web"}},
			wantActions: []string{"get applications argocd"}},
		{name: "Argo CD annotation tracking, the Application is gone: missing",
			w:           deployment(nil, map[string]string{ArgoCDTrackingID: "shop:apps/Deployment:shop/web"}),
			want:        []Owner{{Kind: Application, Namespace: "argocd", Name: "shop", Via: "annotation " + ArgoCDTrackingID, Missing: true}},
			wantActions: []string{"get applications argocd"}},
		{name: "Argo CD tracking id copied from another object: not Argo's",
			w: deployment(nil, map[string]string{ArgoCDTrackingID: "shop:apps/Deployment:shop/other"})},
		{name: "Argo CD tracking id of another kind: not Argo's",
			w: deployment(nil, map[string]string{ArgoCDTrackingID: "shop:apps/StatefulSet:shop/web"})},
		{name: "malformed tracking id: not Argo's",
			w: deployment(nil, map[string]string{ArgoCDTrackingID: "shop"})},
		{name: "label tracking: the Application lists the workload",
			objects:     []runtime.Object{app("argocd", "shop", nil, "shop/web")},
			w:           deployment(map[string]string{InstanceLabel: "shop"}, nil),
			want:        []Owner{{Kind: Application, Namespace: "argocd", Name: "shop", Via: "label " + InstanceLabel + "=shop"}},
			wantActions: []string{"get applications argocd"}},
		{name: "instance label of a plain Helm chart: no such Application",
			w:           deployment(map[string]string{InstanceLabel: "shop", ManagedByLabel: "Helm"}, nil),
			wantActions: []string{"get applications argocd"}},
		{name: "instance label, the Application manages other things",
			objects:     []runtime.Object{app("argocd", "shop", nil, "shop/api")},
			w:           deployment(map[string]string{InstanceLabel: "shop"}, nil),
			wantActions: []string{"get applications argocd"}},
		{name: "both trackings name one Application: one owner",
			objects: []runtime.Object{app("argocd", "shop", nil, "shop/web")},
			w: deployment(map[string]string{InstanceLabel: "shop"},
				map[string]string{ArgoCDTrackingID: "shop:apps/Deployment:shop/web"}),
			want:        []Owner{{Kind: Application, Namespace: "argocd", Name: "shop", Via: "annotation " + ArgoCDTrackingID}},
			wantActions: []string{"get applications argocd"}},
		{name: "both trackings, the Application is gone: one owner, missing",
			w: deployment(map[string]string{InstanceLabel: "shop"},
				map[string]string{ArgoCDTrackingID: "shop:apps/Deployment:shop/web"}),
			want:        []Owner{{Kind: Application, Namespace: "argocd", Name: "shop", Via: "annotation " + ArgoCDTrackingID, Missing: true}},
			wantActions: []string{"get applications argocd"}},
		{name: "Application generated by an ApplicationSet: its parent named",
			objects: []runtime.Object{child(func(a *unstructured.Unstructured) {
				a.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "ApplicationSet", Name: "shops", UID: "set-uid"}})
			})},
			w: deployment(nil, map[string]string{ArgoCDTrackingID: "shop:apps/Deployment:shop/web"}),
			want: []Owner{{Kind: Application, Namespace: "argocd", Name: "shop", Via: "annotation " + ArgoCDTrackingID,
				Parent: "Argo CD ApplicationSet argocd/shops"}},
			wantActions: []string{"get applications argocd"}},
		{name: "Application owned by something else called ApplicationSet: no parent",
			objects: []runtime.Object{child(func(a *unstructured.Unstructured) {
				a.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: "example.com/v1", Kind: "ApplicationSet", Name: "shops", UID: "set-uid"}})
			})},
			w:           deployment(nil, map[string]string{ArgoCDTrackingID: "shop:apps/Deployment:shop/web"}),
			want:        []Owner{{Kind: Application, Namespace: "argocd", Name: "shop", Via: "annotation " + ArgoCDTrackingID}},
			wantActions: []string{"get applications argocd"}},
		{name: "app of apps, annotation tracking: its parent named",
			objects: []runtime.Object{child(func(a *unstructured.Unstructured) {
				a.SetAnnotations(map[string]string{ArgoCDTrackingID: "root:argoproj.io/Application:argocd/shop"})
			})},
			w: deployment(map[string]string{InstanceLabel: "shop"}, nil),
			want: []Owner{{Kind: Application, Namespace: "argocd", Name: "shop", Via: "label " + InstanceLabel + "=shop",
				Parent: "Argo CD Application argocd/root (app of apps, annotation " + ArgoCDTrackingID + ")"}},
			wantActions: []string{"get applications argocd"}},
		{name: "Application with a tracking id copied from another: no parent",
			objects: []runtime.Object{child(func(a *unstructured.Unstructured) {
				a.SetAnnotations(map[string]string{ArgoCDTrackingID: "root:argoproj.io/Application:argocd/other"})
			})},
			w:           deployment(map[string]string{InstanceLabel: "shop"}, nil),
			want:        []Owner{{Kind: Application, Namespace: "argocd", Name: "shop", Via: "label " + InstanceLabel + "=shop"}},
			wantActions: []string{"get applications argocd"}},
		{name: "app of apps, label tracking: the parent lists it",
			objects: []runtime.Object{appOfApps(), child(func(a *unstructured.Unstructured) {
				a.SetLabels(map[string]string{InstanceLabel: "root"})
			})},
			w: deployment(map[string]string{InstanceLabel: "shop"}, nil),
			want: []Owner{{Kind: Application, Namespace: "argocd", Name: "shop", Via: "label " + InstanceLabel + "=shop",
				Parent: "Argo CD Application argocd/root (app of apps, label " + InstanceLabel + "=root)"}},
			wantActions: []string{"get applications argocd", "get applications argocd"}},
		{name: "Application with a chart's instance label: no parent",
			objects: []runtime.Object{child(func(a *unstructured.Unstructured) {
				a.SetLabels(map[string]string{InstanceLabel: "root"})
			})},
			w:           deployment(map[string]string{InstanceLabel: "shop"}, nil),
			want:        []Owner{{Kind: Application, Namespace: "argocd", Name: "shop", Via: "label " + InstanceLabel + "=shop"}},
			wantActions: []string{"get applications argocd", "get applications argocd"}},
		{name: "Flux Kustomization",
			objects:     []runtime.Object{kustomization("flux-system", "apps", "shop/web")},
			w:           deployment(map[string]string{KustomizeName: "apps", KustomizeNS: "flux-system"}, nil),
			want:        []Owner{{Kind: Kustomization, Namespace: "flux-system", Name: "apps", Via: "label " + KustomizeName}},
			wantActions: []string{"get kustomizations flux-system"}},
		{name: "Flux Kustomization deleted, its workload left behind: missing",
			w:           deployment(map[string]string{KustomizeName: "apps", KustomizeNS: "flux-system"}, nil),
			want:        []Owner{{Kind: Kustomization, Namespace: "flux-system", Name: "apps", Via: "label " + KustomizeName, Missing: true}},
			wantActions: []string{"get kustomizations flux-system"}},
		{name: "Flux Kustomization whose inventory lists other objects: unverified",
			objects: []runtime.Object{kustomization("flux-system", "apps", "shop/api", "web/shop")},
			w:       deployment(map[string]string{KustomizeName: "apps", KustomizeNS: "flux-system"}, nil),
			want: []Owner{{Kind: Kustomization, Namespace: "flux-system", Name: "apps", Via: "label " + KustomizeName,
				Unverified: "its status.inventory does not list apps/Deployment shop/web"}},
			wantActions: []string{"get kustomizations flux-system"}},
		{name: "Flux Kustomization with no inventory yet: unverified",
			objects: []runtime.Object{obj(KustomizationResource, Kustomization, "flux-system", "apps", map[string]any{"interval": "10m"}, nil)},
			w:       deployment(map[string]string{KustomizeName: "apps", KustomizeNS: "flux-system"}, nil),
			want: []Owner{{Kind: Kustomization, Namespace: "flux-system", Name: "apps", Via: "label " + KustomizeName,
				Unverified: "its status.inventory does not list apps/Deployment shop/web"}},
			wantActions: []string{"get kustomizations flux-system"}},
		// Helm keeps what a release manages in a Secret, which the function never reads: a
		// HelmRelease is never confirmed, so it is not even read.
		{name: "Flux HelmRelease (Helm-managed too), in the workload's namespace: unverified, not read",
			objects: []runtime.Object{helmRelease("shop", "web")},
			w:       deployment(map[string]string{HelmName: "web", ManagedByLabel: "Helm"}, nil),
			want: []Owner{{Kind: HelmRelease, Namespace: "shop", Name: "web", Via: "label " + HelmName,
				Unverified: helmUnverifiable(Owner{Namespace: "shop", Name: "web"})}}},
		{name: "Flux HelmRelease gone: the same",
			w: deployment(map[string]string{HelmName: "web", HelmNS: "shop"}, nil),
			want: []Owner{{Kind: HelmRelease, Namespace: "shop", Name: "web", Via: "label " + HelmName,
				Unverified: helmUnverifiable(Owner{Namespace: "shop", Name: "web"})}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(tt.objects...)
			got, err := New(c, nil, Refuse, "", all).Owners(context.Background(), tt.w)
			if err != nil {
				t.Fatalf("Owners = %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Owners (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantActions, actions(c)); diff != "" {
				t.Errorf("actions (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOwnersArgoCDNamespaceSetting(t *testing.T) {
	c := newClient(app("gitops", "shop", nil, "shop/web"))
	got, err := New(c, nil, Refuse, "gitops", all).Owners(context.Background(), deployment(map[string]string{InstanceLabel: "shop"}, nil))
	if err != nil || len(got) != 1 || got[0].Namespace != "gitops" {
		t.Errorf("Owners = %+v, %v; want the Application in gitops", got, err)
	}
}

// discovery answers Serves as told.
type discovery struct {
	served bool
	err    error
}

func (d discovery) Serves(context.Context, schema.GroupVersionResource) (bool, error) {
	return d.served, d.err
}

// TestOwnersApplicationUnreadable: a label-tracked Application that cannot be read. The
// apiserver's 404 (no such Application, or no Argo CD at all) means the label is not Argo
// CD's. Its 403 leaves it unknown, which refuses (ErrUnknown, with the fix), unless
// discovery says there is no Argo CD (RBAC answers 403 for a type that does not exist too).
// Anything else is the read's own error, so that a 5xx or a timeout stays retryable.
func TestOwnersApplicationUnreadable(t *testing.T) {
	gr := schema.GroupResource{Group: "argoproj.io", Resource: "applications"}
	forbidden := apierrors.NewForbidden(gr, "shop", errors.New("RBAC"))
	argoCD := discovery{served: true}
	tests := []struct {
		name        string
		err         error
		discovery   Discovery
		wantErr     bool   // an error, with the API answer's reason
		wantReason  error  // that answer, when not err
		wantUnknown bool   // and wrapping ErrUnknown
		wantMsg     string // the error says
	}{
		{name: "no such Application: not managed", err: apierrors.NewNotFound(gr, "shop"), discovery: argoCD},
		{name: "Argo CD's CRD not installed: not managed", err: &apierrors.StatusError{ErrStatus: metav1.Status{
			Status: metav1.StatusFailure, Code: http.StatusNotFound, Reason: metav1.StatusReasonNotFound, Message: "the server could not find the requested resource"}}},
		{name: "forbidden, Argo CD installed: unknown, says how to fix it", err: forbidden, discovery: argoCD, wantErr: true, wantUnknown: true,
			wantMsg: "the function may not read Argo CD Application argocd/shop, which label app.kubernetes.io/instance=shop may point at"},
		{name: "forbidden, no discovery: unknown", err: forbidden, wantErr: true, wantUnknown: true, wantMsg: "apply deploy/cluster-wide/gitops.yaml"},
		{name: "forbidden, no Argo CD installed: not managed", err: forbidden, discovery: discovery{}},
		{name: "forbidden, discovery unavailable: discovery's error", err: forbidden, discovery: discovery{err: apierrors.NewServiceUnavailable("etcd")},
			wantErr: true, wantReason: apierrors.NewServiceUnavailable("etcd"), wantMsg: "whether Argo CD is installed is not known"},
		{name: "apiserver unavailable: its error", err: apierrors.NewServiceUnavailable("down"), discovery: argoCD, wantErr: true,
			wantMsg: "read Argo CD Application argocd/shop: down"},
		{name: "timeout: its error", err: apierrors.NewTimeoutError("slow", 1), discovery: argoCD, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, mode := range []Mode{Refuse, Suspend} {
				c := newClient()
				c.PrependReactor("get", "applications", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, tt.err })
				got, err := New(c, tt.discovery, mode, "", all).Owners(context.Background(), deployment(map[string]string{InstanceLabel: "shop"}, nil))
				if len(got) != 0 || (err != nil) != tt.wantErr {
					t.Fatalf("%s: Owners = %+v, %v; want no owner, error %v", mode, got, err, tt.wantErr)
				}
				if !tt.wantErr {
					continue
				}
				reason := tt.err
				if tt.wantReason != nil {
					reason = tt.wantReason
				}
				if errors.Is(err, ErrUnknown) != tt.wantUnknown || apierrors.ReasonForError(err) != apierrors.ReasonForError(reason) {
					t.Errorf("%s: Owners = %v; want ErrUnknown %v, wrapping %v", mode, err, tt.wantUnknown, reason)
				}
				if !strings.Contains(err.Error(), tt.wantMsg) {
					t.Errorf("%s: Owners = %v; want it to say %q", mode, err, tt.wantMsg)
				}
				if tt.wantUnknown && !strings.Contains(err.Error(), "apply deploy/cluster-wide/gitops.yaml") {
					t.Errorf("%s: %v does not say how to let the function read Applications", mode, err)
				}
			}
		})
	}
}

func TestCheck(t *testing.T) {
	flux := deployment(map[string]string{KustomizeName: "apps", KustomizeNS: "flux-system"}, nil)
	annotated := deployment(nil, map[string]string{ArgoCDTrackingID: "shop:apps/Deployment:shop/web"})
	generated := child(func(a *unstructured.Unstructured) {
		a.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "ApplicationSet", Name: "shops", UID: "set-uid"}})
	})
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: "kustomize.toolkit.fluxcd.io", Resource: "kustomizations"}, "apps", errors.New("RBAC"))
	tests := []struct {
		name    string
		mode    Mode
		objects []runtime.Object
		getErr  error  // the answer to every read of an owner, when set
		getName string // only of the object of this name, when set
		w       Workload
		// wantErr is the sentinel of the refusal or failure, and wantMsg what its message says.
		wantErr     error
		wantMsg     []string
		wantOwners  int
		wantActions int
	}{
		{name: "refuse names the owner and what to do", mode: Refuse, objects: []runtime.Object{kustomization("flux-system", "apps", "shop/web")}, w: flux,
			wantErr: ErrManaged, wantActions: 1,
			wantMsg: []string{"Flux Kustomization flux-system/apps (label kustomize.toolkit.fluxcd.io/name); revert the bad change in Git", "ROLLBACK_GITOPS=suspend"}},
		{name: "refuse, the owner unreadable: refused all the same, unverified", mode: Refuse, getErr: forbidden, w: flux,
			wantErr: ErrUnverified, wantActions: 1, wantMsg: []string{"Flux Kustomization flux-system/apps (label kustomize.toolkit.fluxcd.io/name): it could not be read"}},
		{name: "refuse, the owner does not list the workload: unverified", mode: Refuse, objects: []runtime.Object{kustomization("flux-system", "apps", "shop/api")}, w: flux,
			wantErr: ErrUnverified, wantActions: 1,
			wantMsg: []string{"Flux Kustomization flux-system/apps (label kustomize.toolkit.fluxcd.io/name): its status.inventory does not list apps/Deployment shop/web", "nothing was changed"}},
		{name: "suspend, the owner does not list the workload: unverified, not suspended", mode: Suspend, objects: []runtime.Object{kustomization("flux-system", "apps", "shop/api")}, w: flux,
			wantErr: ErrUnverified, wantActions: 1, wantMsg: []string{"its status.inventory does not list apps/Deployment shop/web"}},
		{name: "suspend, a HelmRelease: unverified, not read", mode: Suspend, objects: []runtime.Object{helmRelease("shop", "web")},
			w: deployment(map[string]string{HelmName: "web", ManagedByLabel: "Helm"}, nil), wantErr: ErrUnverified,
			wantMsg: []string{"Flux HelmRelease shop/web (label helm.toolkit.fluxcd.io/name): only Helm records which objects a release manages, in a Secret, and this function never reads Secrets", "flux suspend helmrelease web -n shop"}},
		{name: "suspend, a Kustomization and a HelmRelease: nothing suspended", mode: Suspend, objects: []runtime.Object{kustomization("flux-system", "apps", "shop/web"), helmRelease("shop", "web")},
			w:       deployment(map[string]string{KustomizeName: "apps", KustomizeNS: "flux-system", HelmName: "web"}, nil),
			wantErr: ErrUnverified, wantActions: 1, wantMsg: []string{"Flux HelmRelease shop/web"}},
		{name: "refuse, the owner deleted: missing, says what to do", mode: Refuse, w: flux,
			wantErr: ErrOwnerMissing, wantActions: 1,
			wantMsg: []string{"Flux Kustomization flux-system/apps (label kustomize.toolkit.fluxcd.io/name) not found: remove the stale labels kustomize.toolkit.fluxcd.io/name and kustomize.toolkit.fluxcd.io/namespace from the workload", "ROLLBACK_GITOPS=ignore"}},
		{name: "suspend, the Application deleted: missing, not suspended", mode: Suspend, w: annotated,
			wantErr: ErrOwnerMissing, wantActions: 1,
			wantMsg: []string{"Argo CD Application argocd/shop (annotation argocd.argoproj.io/tracking-id) not found: remove the stale annotation", "ROLLBACK_ARGOCD_NAMESPACE", "ROLLBACK_GITOPS=ignore"}},
		{name: "suspend, one of two owners deleted: missing", mode: Suspend, objects: []runtime.Object{kustomization("flux-system", "apps", "shop/web")},
			w: deployment(map[string]string{KustomizeName: "apps", KustomizeNS: "flux-system"}, map[string]string{ArgoCDTrackingID: "shop:apps/Deployment:shop/web"}), wantErr: ErrOwnerMissing, wantActions: 2,
			wantMsg: []string{"Argo CD Application argocd/shop (annotation argocd.argoproj.io/tracking-id) not found"}},
		{name: "suspend, the owner unreadable: the read's error", mode: Suspend, getErr: forbidden, w: flux, wantActions: 1,
			wantMsg: []string{"read Flux Kustomization flux-system/apps: kustomizations.kustomize.toolkit.fluxcd.io \"apps\" is forbidden"}},
		{name: "suspend, the Application generated by an ApplicationSet: refused before any write", mode: Suspend, objects: []runtime.Object{generated}, w: annotated,
			wantErr: ErrParentManaged, wantActions: 1,
			wantMsg: []string{"Argo CD Application argocd/shop (annotation argocd.argoproj.io/tracking-id) is itself reconciled by Argo CD ApplicationSet argocd/shops", "nothing was suspended", "the ApplicationSet's template"}},
		{name: "refuse, the Application generated by an ApplicationSet: says suspend would not last", mode: Refuse, objects: []runtime.Object{generated}, w: annotated,
			wantErr: ErrManaged, wantActions: 1,
			wantMsg: []string{"Argo CD Application argocd/shop (annotation argocd.argoproj.io/tracking-id) (itself reconciled by Argo CD ApplicationSet argocd/shops)", "ROLLBACK_GITOPS=suspend would not last here"}},
		{name: "suspend, app of apps: refused before any write", mode: Suspend,
			objects: []runtime.Object{child(func(a *unstructured.Unstructured) {
				a.SetAnnotations(map[string]string{ArgoCDTrackingID: "root:argoproj.io/Application:argocd/shop"})
			})},
			w: annotated, wantErr: ErrParentManaged, wantActions: 1,
			wantMsg: []string{"is itself reconciled by Argo CD Application argocd/root (app of apps, annotation argocd.argoproj.io/tracking-id)"}},
		{name: "suspend, the parent Application forbidden: unknown", mode: Suspend, getErr: forbidden, getName: "root",
			objects: []runtime.Object{child(func(a *unstructured.Unstructured) { a.SetLabels(map[string]string{InstanceLabel: "root"}) })},
			w:       annotated, wantErr: ErrUnknown, wantActions: 2, wantMsg: []string{"may not read Argo CD Application argocd/root"}},
		{name: "refuse, the parent Application forbidden: refused all the same", mode: Refuse, getErr: forbidden, getName: "root",
			objects: []runtime.Object{child(func(a *unstructured.Unstructured) { a.SetLabels(map[string]string{InstanceLabel: "root"}) })},
			w:       annotated, wantErr: ErrManaged, wantActions: 2, wantMsg: []string{"ROLLBACK_GITOPS=suspend to let this function pause it"}},
		{name: "refuse, nothing owns it", mode: Refuse, w: deployment(nil, nil)},
		{name: "suspend returns the owners", mode: Suspend, objects: []runtime.Object{kustomization("flux-system", "apps", "shop/web")}, w: flux, wantOwners: 1, wantActions: 1},
		{name: "ignore does not look", mode: Ignore, w: flux},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(tt.objects...)
			if tt.getErr != nil {
				c.PrependReactor("get", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
					if tt.getName != "" && a.(k8stesting.GetAction).GetName() != tt.getName {
						return false, nil, nil
					}
					return true, nil, tt.getErr
				})
			}
			owners, err := New(c, nil, tt.mode, "", all).Check(context.Background(), tt.w)
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Check = %v; want %v", err, tt.wantErr)
			}
			if len(tt.wantMsg) == 0 && err != nil {
				t.Fatalf("Check = %v; want no error", err)
			}
			for _, m := range tt.wantMsg {
				if err == nil || !strings.Contains(err.Error(), m) {
					t.Errorf("Check = %v; want it to say %q", err, m)
				}
			}
			if len(owners) != tt.wantOwners {
				t.Errorf("Check = %+v; want %d owners", owners, tt.wantOwners)
			}
			if n := len(c.Actions()); n != tt.wantActions {
				t.Errorf("Check made %d requests (%v); want %d", n, actions(c), tt.wantActions)
			}
		})
	}
}

func TestHelmNote(t *testing.T) {
	tests := []struct {
		name string
		w    Workload
		want string
	}{
		{name: "not Helm", w: deployment(map[string]string{InstanceLabel: "web"}, nil)},
		{name: "Helm release from its annotations",
			w:    deployment(map[string]string{ManagedByLabel: "Helm"}, map[string]string{HelmReleaseName: "web", HelmReleaseNS: "shop"}),
			want: "managed by Helm release shop/web: the next `helm upgrade` puts the chart's template back and supersedes this rollback"},
		{name: "Helm without release annotations",
			w:    deployment(map[string]string{ManagedByLabel: "Helm"}, nil),
			want: "managed by Helm: the next `helm upgrade` puts the chart's template back and supersedes this rollback"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := HelmNote(tt.w); got != tt.want {
				t.Errorf("HelmNote = %q; want %q", got, tt.want)
			}
		})
	}
}

// TestForgedMarkers: a tenant who may edit only its own Deployment shop/web labels and
// annotates it to name the platform's owners elsewhere (issue #17). Nothing is written in
// any mode; outside the allowed namespaces nothing is even read, so the answer is the same
// whether those owners exist or not; inside them, owners whose records do not list shop/web
// are not believed.
func TestForgedMarkers(t *testing.T) {
	forged := Workload{Group: "apps", Kind: "Deployment", Namespace: "shop", Name: "web",
		Labels:      map[string]string{KustomizeName: "platform", KustomizeNS: "flux-system", HelmName: "billing", HelmNS: "payments"},
		Annotations: map[string]string{ArgoCDTrackingID: "payments_billing:apps/Deployment:shop/web"}}
	platform := []runtime.Object{
		kustomization("flux-system", "platform", "flux-system/source-controller"),
		helmRelease("payments", "billing"),
		app("payments", "billing", map[string]any{"selfHeal": true}, "payments/billing"),
	}
	tests := []struct {
		name    string
		allowed func(string) bool
		exists  bool
		wantErr error
		// wantRequests are the reads made; there is never a write.
		wantRequests []string
	}{
		{name: "outside the allowed namespaces, the owners exist", allowed: only("shop"), exists: true, wantErr: ErrUnverified},
		{name: "outside the allowed namespaces, no such owners", allowed: only("shop"), wantErr: ErrUnverified},
		{name: "inside, the owners do not list the workload", allowed: all, exists: true, wantErr: ErrUnverified,
			wantRequests: []string{"get applications payments", "get kustomizations flux-system"}},
		{name: "inside, no such owners", allowed: all, wantErr: ErrOwnerMissing,
			wantRequests: []string{"get applications payments", "get kustomizations flux-system"}},
	}
	for _, mode := range []Mode{Refuse, Suspend} {
		answers := map[bool]string{}
		for _, tt := range tests {
			t.Run(string(mode)+": "+tt.name, func(t *testing.T) {
				var objs []runtime.Object
				if tt.exists {
					objs = platform
				}
				c := newClient(objs...)
				g := New(c, nil, mode, "", tt.allowed)
				owners, err := g.Check(context.Background(), forged)
				if !errors.Is(err, tt.wantErr) || len(owners) != 0 {
					t.Fatalf("Check = %+v, %v; want %v", owners, err, tt.wantErr)
				}
				if diff := cmp.Diff(tt.wantRequests, actions(c)); diff != "" {
					t.Errorf("requests of Check (-want +got):\n%s", diff)
				}
				// Suspend is the only writer: even handed the owners as named, it writes nothing.
				named, _ := New(newClient(), nil, mode, "", all).Owners(context.Background(), forged)
				if s, err := g.Suspend(context.Background(), forged, named, false); err == nil || len(s) != 0 {
					t.Errorf("Suspend(%+v) = %+v, %v; want refused", named, s, err)
				}
				for _, a := range c.Actions() {
					if a.GetVerb() != "get" || !tt.allowed(a.GetNamespace()) {
						t.Errorf("%s %s in %s: a write, or outside the allowed namespaces", a.GetVerb(), a.GetResource().Resource, a.GetNamespace())
					}
				}
				if tt.allowed("payments") {
					return
				}
				t.Logf("%s: %v", mode, err)
				answers[tt.exists] = err.Error()
				if len(answers) == 2 && answers[true] != answers[false] {
					t.Errorf("the answer tells whether the owners exist:\n exist: %s\nabsent: %s", answers[true], answers[false])
				}
			})
		}
	}
}

// TestOwnersOutsideAllowedNamespaces: an Application that an instance label may point at is
// not read outside the allowed namespaces. Whether it lists the workload is then unknown,
// which refuses (ErrUnknown), unless discovery says there is no Argo CD at all. The same
// holds for the parent of an Application, in suspend mode; in refuse mode the parent only
// adds to the message, so it is left out.
func TestOwnersOutsideAllowedNamespaces(t *testing.T) {
	labelled := deployment(map[string]string{InstanceLabel: "shop"}, nil)
	labelledOutside := deployment(map[string]string{InstanceLabel: "payments_billing"}, nil)
	childOutsideParent := app("team-a", "shop", nil, "shop/web")
	childOutsideParent.SetLabels(map[string]string{InstanceLabel: "payments_root"})
	annotatedTeamA := deployment(nil, map[string]string{ArgoCDTrackingID: "team-a_shop:apps/Deployment:shop/web"})
	annotatedArgo := deployment(nil, map[string]string{ArgoCDTrackingID: "shop:apps/Deployment:shop/web"})
	tests := []struct {
		name      string
		mode      Mode
		objects   []runtime.Object
		w         Workload
		discovery Discovery
		wantErr   error
		wantMsg   string
		wantOwner bool
		// wantRequests are the reads made: in allowed namespaces, or of Applications in Argo
		// CD's own namespace.
		wantRequests []string
	}{
		{name: "label tracking, outside and not Argo CD's namespace, Argo CD installed: unknown, not read", mode: Refuse, w: labelledOutside,
			objects: []runtime.Object{app("payments", "billing", nil, "shop/web")}, discovery: discovery{served: true}, wantErr: ErrUnknown,
			wantMsg: "Argo CD Application payments/billing, which label app.kubernetes.io/instance=payments_billing may point at, is in a namespace this function may not act in, so it is not read; list payments in ROLLBACK_NAMESPACES"},
		{name: "label tracking, outside, no discovery: unknown, not read", mode: Suspend, w: labelledOutside, wantErr: ErrUnknown},
		{name: "label tracking, outside, no Argo CD: a chart's label", mode: Suspend, w: labelledOutside, discovery: discovery{}},
		{name: "label tracking, outside, discovery unavailable: its error", mode: Refuse, w: labelledOutside,
			discovery: discovery{err: apierrors.NewServiceUnavailable("etcd")}, wantMsg: "whether Argo CD is installed is not known"},
		{name: "label tracking, Argo CD's namespace lists it, refuse: managed, read there", mode: Refuse, w: labelled,
			objects: []runtime.Object{app("argocd", "shop", nil, "shop/web")}, wantErr: ErrManaged,
			wantRequests: []string{"get applications argocd"}},
		{name: "label tracking, Argo CD's namespace lists it, suspend: not suspended outside", mode: Suspend, w: labelled,
			objects: []runtime.Object{app("argocd", "shop", nil, "shop/web")}, wantErr: ErrUnverified,
			wantMsg:      "namespace argocd is not one this function may act in, so it cannot be suspended",
			wantRequests: []string{"get applications argocd"}},
		{name: "label tracking, no such Application in Argo CD's namespace: a chart's label", mode: Suspend, w: labelled,
			wantRequests: []string{"get applications argocd"}},
		{name: "annotation, Argo CD's namespace, missing: unverified, not owner-missing", mode: Refuse, w: annotatedArgo,
			wantErr: ErrUnverified, wantRequests: []string{"get applications argocd"}},
		{name: "annotation, Argo CD's namespace, not listing: unverified, the same answer", mode: Refuse, w: annotatedArgo,
			objects: []runtime.Object{app("argocd", "shop", nil, "shop/other")}, wantErr: ErrUnverified,
			wantRequests: []string{"get applications argocd"}},
		{name: "suspend, the parent may be outside: unknown", mode: Suspend, w: annotatedTeamA, objects: []runtime.Object{childOutsideParent},
			wantErr: ErrUnknown, wantMsg: "Argo CD Application payments/root, which label app.kubernetes.io/instance=payments_root may point at",
			wantRequests: []string{"get applications team-a"}},
		{name: "refuse, the parent may be outside: managed, the parent left out", mode: Refuse, w: annotatedTeamA, objects: []runtime.Object{childOutsideParent},
			wantErr: ErrManaged, wantRequests: []string{"get applications team-a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(tt.objects...)
			_, err := New(c, tt.discovery, tt.mode, "", only("shop", "team-a")).Check(context.Background(), tt.w)
			switch {
			case tt.wantErr == nil && tt.wantMsg == "" && err != nil:
				t.Fatalf("Check = %v; want no owner", err)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Fatalf("Check = %v; want %v", err, tt.wantErr)
			case tt.wantMsg != "" && (err == nil || !strings.Contains(err.Error(), tt.wantMsg)):
				t.Fatalf("Check = %v; want it to say %q", err, tt.wantMsg)
			}
			if diff := cmp.Diff(tt.wantRequests, actions(c)); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
		})
	}
}
