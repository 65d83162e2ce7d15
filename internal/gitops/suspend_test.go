package gitops

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stesting "k8s.io/client-go/testing"
)

func TestSuspend(t *testing.T) {
	selfHealing := map[string]any{"prune": true, "selfHeal": true}
	tests := []struct {
		name    string
		objects []runtime.Object
		owner   Owner
		dryRun  bool
		// wantSpec is the owner's spec afterwards.
		wantSpec    map[string]any
		wantChanged bool
		wantChange  string
		wantResume  string
		wantPatch   bool
	}{
		{name: "Flux Kustomization: suspended, the rest of its spec kept",
			objects: []runtime.Object{obj(KustomizationResource, Kustomization, "flux-system", "apps",
				map[string]any{"interval": "1m", "path": "./shop", "prune": true}, nil)},
			owner:       Owner{Kind: Kustomization, Namespace: "flux-system", Name: "apps"},
			wantSpec:    map[string]any{"interval": "1m", "path": "./shop", "prune": true, "suspend": true},
			wantChanged: true, wantChange: "spec.suspend set to true", wantPatch: true,
			wantResume: "flux resume kustomization apps -n flux-system"},
		{name: "Flux Kustomization already suspended: nothing written",
			objects: []runtime.Object{obj(KustomizationResource, Kustomization, "flux-system", "apps",
				map[string]any{"interval": "1m", "suspend": true}, nil)},
			owner:      Owner{Kind: Kustomization, Namespace: "flux-system", Name: "apps"},
			wantSpec:   map[string]any{"interval": "1m", "suspend": true},
			wantChange: "already suspended (spec.suspend is true)",
			wantResume: "flux resume kustomization apps -n flux-system"},
		{name: "Flux HelmRelease",
			objects: []runtime.Object{obj(HelmReleaseResource, HelmRelease, "shop", "web",
				map[string]any{"interval": "5m", "chart": map[string]any{"spec": map[string]any{"chart": "web"}}}, nil)},
			owner:       Owner{Kind: HelmRelease, Namespace: "shop", Name: "web"},
			wantSpec:    map[string]any{"interval": "5m", "chart": map[string]any{"spec": map[string]any{"chart": "web"}}, "suspend": true},
			wantChanged: true, wantChange: "spec.suspend set to true", wantPatch: true,
			wantResume: "flux resume helmrelease web -n shop"},
		{name: "Argo CD self-heal off, automated sync and prune kept",
			objects:     []runtime.Object{app("argocd", "shop", selfHealing)},
			owner:       Owner{Kind: Application, Namespace: "argocd", Name: "shop"},
			wantSpec:    app("argocd", "shop", map[string]any{"prune": true, "selfHeal": false}).Object["spec"].(map[string]any),
			wantChanged: true, wantPatch: true,
			wantChange: "spec.syncPolicy.automated.selfHeal set to false (the rest of its sync policy kept)",
			wantResume: "set spec.syncPolicy.automated.selfHeal back to true on Application argocd/shop, or sync it from the Argo CD UI"},
		{name: "Argo CD automated without self-heal: nothing to do",
			objects:    []runtime.Object{app("argocd", "shop", map[string]any{"prune": true})},
			owner:      Owner{Kind: Application, Namespace: "argocd", Name: "shop"},
			wantSpec:   app("argocd", "shop", map[string]any{"prune": true}).Object["spec"].(map[string]any),
			wantChange: "self-heal already off: Argo CD does not revert changes made in the cluster"},
		{name: "Argo CD automated sync disabled (enabled: false): nothing to do",
			objects:    []runtime.Object{app("argocd", "shop", map[string]any{"enabled": false, "selfHeal": true})},
			owner:      Owner{Kind: Application, Namespace: "argocd", Name: "shop"},
			wantSpec:   app("argocd", "shop", map[string]any{"enabled": false, "selfHeal": true}).Object["spec"].(map[string]any),
			wantChange: "self-heal already off: Argo CD does not revert changes made in the cluster"},
		{name: "Argo CD manual sync: nothing to do",
			objects:    []runtime.Object{app("argocd", "shop", nil)},
			owner:      Owner{Kind: Application, Namespace: "argocd", Name: "shop"},
			wantSpec:   app("argocd", "shop", nil).Object["spec"].(map[string]any),
			wantChange: "self-heal already off: Argo CD does not revert changes made in the cluster"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(tt.objects...)
			got, err := New(c, nil, Suspend, "").Suspend(context.Background(), []Owner{tt.owner}, tt.dryRun)
			if err != nil {
				t.Fatalf("Suspend = %v", err)
			}
			if len(got) != 1 {
				t.Fatalf("Suspend = %+v; want one suspension", got)
			}
			s := got[0]
			if s.Changed != tt.wantChanged || s.Change != tt.wantChange || s.Resume != tt.wantResume {
				t.Errorf("Suspend = changed %v, %q, resume %q; want %v, %q, %q", s.Changed, s.Change, s.Resume, tt.wantChanged, tt.wantChange, tt.wantResume)
			}
			if s.Ref.Name != tt.owner.Name || s.Ref.Kind != tt.owner.Kind || s.Ref.UID == "" {
				t.Errorf("event reference %+v does not point at the owner", s.Ref)
			}
			after, err := c.Resource(tt.owner.resource()).Namespace(tt.owner.Namespace).Get(context.Background(), tt.owner.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantSpec, after.Object["spec"]); diff != "" {
				t.Errorf("spec after (-want +got):\n%s", diff)
			}
			var patches []string
			for _, a := range c.Actions() {
				if p, ok := a.(k8stesting.PatchAction); ok {
					patches = append(patches, string(p.GetPatch()))
					if !strings.Contains(string(p.GetPatch()), `"resourceVersion":"7"`) {
						t.Errorf("patch %s carries no resourceVersion precondition", p.GetPatch())
					}
				}
			}
			if (len(patches) == 1) != tt.wantPatch || len(patches) > 1 {
				t.Errorf("patches %v; want one: %v", patches, tt.wantPatch)
			}
		})
	}
}

func TestSuspendDryRun(t *testing.T) {
	c := newClient(obj(KustomizationResource, Kustomization, "flux-system", "apps", map[string]any{"interval": "1m"}, nil))
	_, err := New(c, nil, Suspend, "").Suspend(context.Background(), []Owner{{Kind: Kustomization, Namespace: "flux-system", Name: "apps"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range c.Actions() {
		if p, ok := a.(k8stesting.PatchActionImpl); ok {
			if diff := cmp.Diff([]string{metav1.DryRunAll}, p.PatchOptions.DryRun); diff != "" {
				t.Errorf("dry run patch options (-want +got):\n%s", diff)
			}
			return
		}
	}
	t.Error("no patch sent: a dry run still has the server check the change")
}

func TestSuspendErrors(t *testing.T) {
	kustomization := obj(KustomizationResource, Kustomization, "flux-system", "apps", map[string]any{"interval": "1m"}, nil)
	gr := schema.GroupResource{Group: "kustomize.toolkit.fluxcd.io", Resource: "kustomizations"}
	tests := []struct {
		name     string
		verb     string
		failures int
		err      error
		wantErr  string
	}{
		{name: "forbidden", verb: "patch", failures: 100, err: apierrors.NewForbidden(gr, "apps", errors.New("RBAC")),
			wantErr: "suspend Flux Kustomization flux-system/apps: kustomizations.kustomize.toolkit.fluxcd.io \"apps\" is forbidden"},
		{name: "missing", verb: "get", failures: 100, err: apierrors.NewNotFound(gr, "apps"), wantErr: "not found"},
		{name: "one conflict: read again and succeed", verb: "patch", failures: 1, err: apierrors.NewConflict(gr, "apps", errors.New("changed"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(kustomization.DeepCopy())
			n := 0
			c.PrependReactor(tt.verb, "kustomizations", func(k8stesting.Action) (bool, runtime.Object, error) {
				if n < tt.failures {
					n++
					return true, nil, tt.err
				}
				return false, nil, nil
			})
			got, err := New(c, nil, Suspend, "").Suspend(context.Background(), []Owner{{Kind: Kustomization, Namespace: "flux-system", Name: "apps"}}, false)
			if tt.wantErr == "" {
				if err != nil || len(got) != 1 || !got[0].Changed {
					t.Errorf("Suspend = %+v, %v; want it suspended after the conflict", got, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || len(got) != 0 {
				t.Errorf("Suspend = %+v, %v; want an error saying %q", got, err, tt.wantErr)
			}
		})
	}
}
