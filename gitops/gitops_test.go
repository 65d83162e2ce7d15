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
			w:    deployment(nil, map[string]string{ArgoCDTrackingID: "shop:apps/Deployment:shop/web"}),
			want: []Owner{{Kind: Application, Namespace: "argocd", Name: "shop", Via: "annotation " + ArgoCDTrackingID}}},
		{name: "Argo CD annotation tracking, apps in any namespace",
			w:    deployment(nil, map[string]string{ArgoCDTrackingID: "team-a_shop:apps/Deployment:shop/web"}),
			want: []Owner{{Kind: Application, Namespace: "team-a", Name: "shop", Via: "annotation " + ArgoCDTrackingID}}},
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
		{name: "Flux Kustomization",
			w:    deployment(map[string]string{KustomizeName: "apps", KustomizeNS: "flux-system"}, nil),
			want: []Owner{{Kind: Kustomization, Namespace: "flux-system", Name: "apps", Via: "label " + KustomizeName}}},
		{name: "Flux HelmRelease (Helm-managed too)",
			w:    deployment(map[string]string{HelmName: "web", HelmNS: "shop", ManagedByLabel: "Helm"}, nil),
			want: []Owner{{Kind: HelmRelease, Namespace: "shop", Name: "web", Via: "label " + HelmName}}},
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
	tests := []struct {
		name       string
		mode       Mode
		w          Workload
		wantOwners int
		// wantRefusal is in the refusal's message ("" means no refusal).
		wantRefusal string
	}{
		{name: "refuse names the owner and what to do", mode: Refuse, w: flux,
			wantRefusal: "Flux Kustomization flux-system/apps (label kustomize.toolkit.fluxcd.io/name); revert the bad change in Git"},
		{name: "refuse, nothing owns it", mode: Refuse, w: deployment(nil, nil)},
		{name: "suspend returns the owners", mode: Suspend, w: flux, wantOwners: 1},
		{name: "ignore does not look", mode: Ignore, w: flux},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient()
			owners, err := New(c, tt.mode, "").Check(context.Background(), tt.w)
			if tt.wantRefusal != "" {
				var m *ManagedError
				if !errors.As(err, &m) || !errors.Is(err, ErrManaged) || !strings.Contains(err.Error(), tt.wantRefusal) {
					t.Fatalf("Check = %v; want a refusal saying %q", err, tt.wantRefusal)
				}
				if !strings.Contains(err.Error(), "ROLLBACK_GITOPS=suspend") {
					t.Errorf("refusal %q does not say how to allow it", err)
				}
				return
			}
			if err != nil || len(owners) != tt.wantOwners {
				t.Errorf("Check = %+v, %v; want %d owners", owners, err, tt.wantOwners)
			}
			if len(c.Actions()) != 0 {
				t.Errorf("Check made requests: %v", actions(c))
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
