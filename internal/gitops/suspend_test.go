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

// web is the workload the suspensions are for, and inventory a Kustomization's status listing
// it, as kustomize-controller writes it.
var (
	web       = deployment(nil, nil)
	inventory = map[string]any{"inventory": map[string]any{"entries": []any{map[string]any{"id": "shop_web_apps_Deployment", "v": "v1"}}}}
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
				map[string]any{"interval": "1m", "path": "./shop", "prune": true}, inventory)},
			owner:       Owner{Kind: Kustomization, Namespace: "flux-system", Name: "apps"},
			wantSpec:    map[string]any{"interval": "1m", "path": "./shop", "prune": true, "suspend": true},
			wantChanged: true, wantChange: "spec.suspend set to true", wantPatch: true,
			wantResume: "flux resume kustomization apps -n flux-system"},
		{name: "Flux Kustomization already suspended: nothing written",
			objects: []runtime.Object{obj(KustomizationResource, Kustomization, "flux-system", "apps",
				map[string]any{"interval": "1m", "suspend": true}, inventory)},
			owner:      Owner{Kind: Kustomization, Namespace: "flux-system", Name: "apps"},
			wantSpec:   map[string]any{"interval": "1m", "suspend": true},
			wantChange: "already suspended (spec.suspend is true)",
			wantResume: "flux resume kustomization apps -n flux-system"},
		{name: "Argo CD self-heal off, automated sync and prune kept",
			objects:     []runtime.Object{app("argocd", "shop", selfHealing, "shop/web")},
			owner:       Owner{Kind: Application, Namespace: "argocd", Name: "shop"},
			wantSpec:    app("argocd", "shop", map[string]any{"prune": true, "selfHeal": false}).Object["spec"].(map[string]any),
			wantChanged: true, wantPatch: true,
			wantChange: "spec.syncPolicy.automated.selfHeal set to false (the rest of its sync policy kept)",
			wantResume: "set spec.syncPolicy.automated.selfHeal back to true on Application argocd/shop, or sync it from the Argo CD UI"},
		{name: "Argo CD automated without self-heal: nothing to do",
			objects:    []runtime.Object{app("argocd", "shop", map[string]any{"prune": true}, "shop/web")},
			owner:      Owner{Kind: Application, Namespace: "argocd", Name: "shop"},
			wantSpec:   app("argocd", "shop", map[string]any{"prune": true}).Object["spec"].(map[string]any),
			wantChange: "self-heal already off: Argo CD does not revert changes made in the cluster"},
		{name: "Argo CD automated sync disabled (enabled: false): nothing to do",
			objects:    []runtime.Object{app("argocd", "shop", map[string]any{"enabled": false, "selfHeal": true}, "shop/web")},
			owner:      Owner{Kind: Application, Namespace: "argocd", Name: "shop"},
			wantSpec:   app("argocd", "shop", map[string]any{"enabled": false, "selfHeal": true}).Object["spec"].(map[string]any),
			wantChange: "self-heal already off: Argo CD does not revert changes made in the cluster"},
		{name: "Argo CD manual sync: nothing to do",
			objects:    []runtime.Object{app("argocd", "shop", nil, "shop/web")},
			owner:      Owner{Kind: Application, Namespace: "argocd", Name: "shop"},
			wantSpec:   app("argocd", "shop", nil).Object["spec"].(map[string]any),
			wantChange: "self-heal already off: Argo CD does not revert changes made in the cluster"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(tt.objects...)
			got, err := New(c, nil, Suspend, "", all).Suspend(context.Background(), web, []Owner{tt.owner}, tt.dryRun)
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
	c := newClient(obj(KustomizationResource, Kustomization, "flux-system", "apps", map[string]any{"interval": "1m"}, inventory))
	_, err := New(c, nil, Suspend, "", all).Suspend(context.Background(), web, []Owner{{Kind: Kustomization, Namespace: "flux-system", Name: "apps"}}, true)
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
	kustomization := obj(KustomizationResource, Kustomization, "flux-system", "apps", map[string]any{"interval": "1m"}, inventory)
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
			got, err := New(c, nil, Suspend, "", all).Suspend(context.Background(), web, []Owner{{Kind: Kustomization, Namespace: "flux-system", Name: "apps"}}, false)
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

// TestSuspendOnlyWhatListsTheWorkload: Suspend writes to an owner only in a namespace the
// guard may act in, and only when the owner, as read just before the write, lists the
// workload; a HelmRelease never. Whatever Check said before: the write is where it counts.
func TestSuspendOnlyWhatListsTheWorkload(t *testing.T) {
	selfHealing := map[string]any{"selfHeal": true}
	tests := []struct {
		name    string
		objects []runtime.Object
		owner   Owner
		allowed func(string) bool
		wantMsg string
		// wantRequests are the requests made: none outside the allowed namespaces.
		wantRequests []string
	}{
		{name: "a Kustomization outside the allowed namespaces: not even read",
			objects: []runtime.Object{obj(KustomizationResource, Kustomization, "flux-system", "platform", map[string]any{"interval": "1m"}, inventory)},
			owner:   Owner{Kind: Kustomization, Namespace: "flux-system", Name: "platform"}, allowed: only("shop"),
			wantMsg: "namespace flux-system is not one this function may act in, so it was not read"},
		{name: "an Application outside the allowed namespaces: not even read",
			objects: []runtime.Object{app("payments", "billing", selfHealing, "shop/web")},
			owner:   Owner{Kind: Application, Namespace: "payments", Name: "billing"}, allowed: only("shop"),
			wantMsg: "namespace payments is not one this function may act in"},
		{name: "a HelmRelease: never, not even read",
			objects: []runtime.Object{obj(HelmReleaseResource, HelmRelease, "shop", "web", map[string]any{"interval": "5m"}, nil)},
			owner:   Owner{Kind: HelmRelease, Namespace: "shop", Name: "web"}, allowed: all,
			wantMsg: "this function never reads Secrets"},
		{name: "a Kustomization whose inventory does not list the workload",
			objects: []runtime.Object{obj(KustomizationResource, Kustomization, "flux-system", "platform", map[string]any{"interval": "1m"},
				map[string]any{"inventory": map[string]any{"entries": []any{map[string]any{"id": "flux-system_platform-api_apps_Deployment"}}}})},
			owner: Owner{Kind: Kustomization, Namespace: "flux-system", Name: "platform"}, allowed: all,
			wantMsg: "its status.inventory does not list apps/Deployment shop/web", wantRequests: []string{"get kustomizations flux-system"}},
		{name: "an Application whose resources do not list the workload",
			objects: []runtime.Object{app("payments", "billing", selfHealing, "payments/billing")},
			owner:   Owner{Kind: Application, Namespace: "payments", Name: "billing"}, allowed: all,
			wantMsg: "its status.resources does not list apps/Deployment shop/web", wantRequests: []string{"get applications payments"}},
		{name: "an Application listing a workload of that name in another namespace",
			objects: []runtime.Object{app("payments", "billing", selfHealing, "payments/web")},
			owner:   Owner{Kind: Application, Namespace: "payments", Name: "billing"}, allowed: all,
			wantMsg: "its status.resources does not list apps/Deployment shop/web", wantRequests: []string{"get applications payments"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(tt.objects...)
			for _, dryRun := range []bool{false, true} {
				c.ClearActions()
				got, err := New(c, nil, Suspend, "", tt.allowed).Suspend(context.Background(), web, []Owner{tt.owner}, dryRun)
				if !errors.Is(err, ErrUnverified) || !strings.Contains(err.Error(), tt.wantMsg) || len(got) != 0 {
					t.Errorf("Suspend(dry run %v) = %+v, %v; want ErrUnverified saying %q", dryRun, got, err, tt.wantMsg)
				}
				if diff := cmp.Diff(tt.wantRequests, actions(c)); diff != "" {
					t.Errorf("requests (-want +got):\n%s", diff)
				}
			}
		})
	}
}
