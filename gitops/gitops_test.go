package gitops

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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

func kustomization(ns, name string) *unstructured.Unstructured {
	return obj(KustomizationResource, Kustomization, ns, name, map[string]any{"interval": "10m", "path": "./shop"}, nil)
}

func helmRelease(ns, name string) *unstructured.Unstructured {
	return obj(HelmReleaseResource, HelmRelease, ns, name, map[string]any{"interval": "5m"}, nil)
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
			objects:     []runtime.Object{app("argocd", "shop", nil)},
			w:           deployment(nil, map[string]string{ArgoCDTrackingID: "shop:apps/Deployment:shop/web"}),
			want:        []Owner{{Kind: Application, Namespace: "argocd", Name: "shop", Via: "annotation " + ArgoCDTrackingID}},
			wantActions: []string{"get applications argocd"}},
		{name: "Argo CD annotation tracking, apps in any namespace",
			objects:     []runtime.Object{app("team-a", "shop", nil)},
			w:           deployment(nil, map[string]string{ArgoCDTrackingID: "team-a_shop:apps/Deployment:shop/web"}),
			want:        []Owner{{Kind: Application, Namespace: "team-a", Name: "shop", Via: "annotation " + ArgoCDTrackingID}},
			wantActions: []string{"get applications team-a"}},
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
		{name: "Flux Kustomization",
			objects:     []runtime.Object{kustomization("flux-system", "apps")},
			w:           deployment(map[string]string{KustomizeName: "apps", KustomizeNS: "flux-system"}, nil),
			want:        []Owner{{Kind: Kustomization, Namespace: "flux-system", Name: "apps", Via: "label " + KustomizeName}},
			wantActions: []string{"get kustomizations flux-system"}},
		{name: "Flux Kustomization deleted, its workload left behind: missing",
			w:           deployment(map[string]string{KustomizeName: "apps", KustomizeNS: "flux-system"}, nil),
			want:        []Owner{{Kind: Kustomization, Namespace: "flux-system", Name: "apps", Via: "label " + KustomizeName, Missing: true}},
			wantActions: []string{"get kustomizations flux-system"}},
		{name: "Flux HelmRelease (Helm-managed too), in the workload's namespace",
			objects:     []runtime.Object{helmRelease("shop", "web")},
			w:           deployment(map[string]string{HelmName: "web", ManagedByLabel: "Helm"}, nil),
			want:        []Owner{{Kind: HelmRelease, Namespace: "shop", Name: "web", Via: "label " + HelmName}},
			wantActions: []string{"get helmreleases shop"}},
		{name: "Flux HelmRelease gone: missing",
			w:           deployment(map[string]string{HelmName: "web", HelmNS: "shop"}, nil),
			want:        []Owner{{Kind: HelmRelease, Namespace: "shop", Name: "web", Via: "label " + HelmName, Missing: true}},
			wantActions: []string{"get helmreleases shop"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(tt.objects...)
			got, err := New(c, Refuse, "").Owners(context.Background(), tt.w)
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
	got, err := New(c, Refuse, "gitops").Owners(context.Background(), deployment(map[string]string{InstanceLabel: "shop"}, nil))
	if err != nil || len(got) != 1 || got[0].Namespace != "gitops" {
		t.Errorf("Owners = %+v, %v; want the Application in gitops", got, err)
	}
}

func TestOwnersApplicationUnreadable(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		wantErr bool
	}{
		{name: "forbidden: not counted", err: apierrors.NewForbidden(schema.GroupResource{Group: "argoproj.io", Resource: "applications"}, "shop", errors.New("RBAC"))},
		{name: "apiserver unavailable: an error", err: apierrors.NewServiceUnavailable("down"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient()
			c.PrependReactor("get", "applications", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, tt.err })
			got, err := New(c, Refuse, "").Owners(context.Background(), deployment(map[string]string{InstanceLabel: "shop"}, nil))
			if (err != nil) != tt.wantErr || len(got) != 0 {
				t.Errorf("Owners = %+v, %v; want no owner, error %v", got, err, tt.wantErr)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	flux := deployment(map[string]string{KustomizeName: "apps", KustomizeNS: "flux-system"}, nil)
	annotated := deployment(nil, map[string]string{ArgoCDTrackingID: "shop:apps/Deployment:shop/web"})
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: "kustomize.toolkit.fluxcd.io", Resource: "kustomizations"}, "apps", errors.New("RBAC"))
	tests := []struct {
		name    string
		mode    Mode
		objects []runtime.Object
		getErr  error // the answer to every read of an owner, when set
		w       Workload
		// wantErr is the sentinel of the refusal or failure, and wantMsg what its message says.
		wantErr     error
		wantMsg     []string
		wantOwners  int
		wantActions int
	}{
		{name: "refuse names the owner and what to do", mode: Refuse, objects: []runtime.Object{kustomization("flux-system", "apps")}, w: flux,
			wantErr: ErrManaged, wantActions: 1,
			wantMsg: []string{"Flux Kustomization flux-system/apps (label kustomize.toolkit.fluxcd.io/name); revert the bad change in Git", "ROLLBACK_GITOPS=suspend"}},
		{name: "refuse, the owner unreadable: refused all the same", mode: Refuse, getErr: forbidden, w: flux,
			wantErr: ErrManaged, wantActions: 1, wantMsg: []string{"Flux Kustomization flux-system/apps"}},
		{name: "refuse, the owner deleted: missing, says what to do", mode: Refuse, w: flux,
			wantErr: ErrOwnerMissing, wantActions: 1,
			wantMsg: []string{"Flux Kustomization flux-system/apps (label kustomize.toolkit.fluxcd.io/name) not found: remove the stale labels kustomize.toolkit.fluxcd.io/name and kustomize.toolkit.fluxcd.io/namespace from the workload", "ROLLBACK_GITOPS=ignore"}},
		{name: "suspend, the Application deleted: missing, not suspended", mode: Suspend, w: annotated,
			wantErr: ErrOwnerMissing, wantActions: 1,
			wantMsg: []string{"Argo CD Application argocd/shop (annotation argocd.argoproj.io/tracking-id) not found: remove the stale annotation", "ROLLBACK_ARGOCD_NAMESPACE", "ROLLBACK_GITOPS=ignore"}},
		{name: "suspend, one of two owners deleted: missing", mode: Suspend, objects: []runtime.Object{kustomization("flux-system", "apps")},
			w: deployment(map[string]string{KustomizeName: "apps", KustomizeNS: "flux-system", HelmName: "web"}, nil), wantErr: ErrOwnerMissing, wantActions: 2,
			wantMsg: []string{"Flux HelmRelease shop/web (label helm.toolkit.fluxcd.io/name) not found"}},
		{name: "suspend, the owner unreadable: the read's error", mode: Suspend, getErr: forbidden, w: flux, wantActions: 1,
			wantMsg: []string{"read Flux Kustomization flux-system/apps: kustomizations.kustomize.toolkit.fluxcd.io \"apps\" is forbidden"}},
		{name: "refuse, nothing owns it", mode: Refuse, w: deployment(nil, nil)},
		{name: "suspend returns the owners", mode: Suspend, objects: []runtime.Object{kustomization("flux-system", "apps")}, w: flux, wantOwners: 1, wantActions: 1},
		{name: "ignore does not look", mode: Ignore, w: flux},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(tt.objects...)
			if tt.getErr != nil {
				c.PrependReactor("get", "*", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, tt.getErr })
			}
			owners, err := New(c, tt.mode, "").Check(context.Background(), tt.w)
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
