package guards

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/sre-kit/alert-rollback/e2e/fixture"
	"github.com/sre-kit/alert-rollback/internal/gitops"
	ikube "github.com/sre-kit/alert-rollback/internal/kube"
)

// gitopsWorld is Argo CD's and Flux's objects on the real apiserver, through their own CRDs,
// owning real Deployments in namespace shop.
type gitopsWorld struct {
	admin dynamic.Interface
	// fn acts as the function's ServiceAccount with kservice.yaml's Role and
	// deploy/cluster-wide/gitops.yaml; disco reads discovery as that ServiceAccount.
	fn    dynamic.Interface
	disco gitops.Discovery
	// ns holds the workloads and the HelmRelease; argo the Application, flux the
	// Kustomization (each test has its own three).
	ns, argo, flux string
}

// The owner objects, as their users write them. Each is created through the real schema, so
// a field the CRD does not know is refused.
const (
	argoApplication = `
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: shop, namespace: ARGO}
spec:
  project: default
  source: {repoURL: "https://git.example.com/shop.git", path: deploy, targetRevision: main}
  destination: {server: "https://kubernetes.default.svc", namespace: SHOP}
  syncPolicy:
    automated: {prune: true, selfHeal: true}
    syncOptions: [CreateNamespace=true]
    retry: {limit: 3}
status:
  resources:
  - {group: apps, version: v1, kind: Deployment, namespace: SHOP, name: labelled}
`
	fluxKustomization = `
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: apps, namespace: FLUX}
spec:
  interval: 10m
  path: ./shop
  prune: true
  sourceRef: {kind: GitRepository, name: flux-system}
`
	fluxHelmRelease = `
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: web, namespace: SHOP}
spec:
  interval: 5m
  chart:
    spec:
      chart: web
      version: "1.2.x"
      sourceRef: {kind: HelmRepository, name: charts, namespace: FLUX}
`
)

func newGitopsWorld(t *testing.T, ns string) *gitopsWorld {
	t.Helper()
	ctx := context.Background()
	applyCRDs(t, kube)
	install(t, kube, ns)
	applyClusterWide(t, kube, "deploy/cluster-wide/gitops.yaml", ns)
	argo, flux := ns+"-argocd", ns+"-flux"
	for _, n := range []string{argo, flux} {
		if err := kube.CreateNamespace(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	admin, err := dynamic.NewForConfig(kube.Config)
	if err != nil {
		t.Fatal(err)
	}
	_, fn := clientsOf(t, kube, ns)
	w := &gitopsWorld{admin: admin, fn: fn, disco: discoveryOf(t, ns), ns: ns, argo: argo, flux: flux}
	r := strings.NewReplacer("SHOP", ns, "ARGO", argo, "FLUX", flux)
	for _, doc := range []string{argoApplication, fluxKustomization, fluxHelmRelease} {
		w.create(t, r.Replace(doc))
	}
	return w
}

// discoveryOf reads the API server's discovery as the function's ServiceAccount of ns.
func discoveryOf(t *testing.T, ns string) gitops.Discovery {
	t.Helper()
	cfg, err := kube.ConfigFor(context.Background(), ns, "alert-rollback")
	if err != nil {
		t.Fatal(err)
	}
	d, err := ikube.NewDiscovery(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (w *gitopsWorld) create(t *testing.T, doc string) {
	t.Helper()
	var u unstructured.Unstructured
	if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
		t.Fatal(err)
	}
	gvr := resourceOf(u.GetKind())
	_, err := w.admin.Resource(gvr).Namespace(u.GetNamespace()).Create(context.Background(), &u,
		metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict})
	if err != nil {
		t.Fatalf("create %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
}

func resourceOf(kind string) schema.GroupVersionResource {
	switch kind {
	case gitops.Application:
		return gitops.ApplicationResource
	case gitops.Kustomization:
		return gitops.KustomizationResource
	}
	return gitops.HelmReleaseResource
}

// spec reads an owner's spec as the apiserver stores it, as YAML for the test's log.
func (w *gitopsWorld) spec(t *testing.T, kind, ns, name string) map[string]any {
	t.Helper()
	u, err := w.admin.Resource(resourceOf(kind)).Namespace(ns).Get(context.Background(), name, get)
	if err != nil {
		t.Fatal(err)
	}
	spec, _, _ := unstructured.NestedMap(u.Object, "spec")
	return spec
}

// deployment creates a real Deployment with the labels and annotations the tool that
// applied it would have set, and returns it as the guard sees it.
func (w *gitopsWorld) deployment(t *testing.T, name string, labels, annotations map[string]string) gitops.Workload {
	t.Helper()
	d := fixture.Deployment(w.ns, name, fixture.Container("registry.example/"+name+":v1", "10m"))
	d.Labels, d.Annotations = labels, annotations
	got, err := kube.Clientset.AppsV1().Deployments(w.ns).Create(context.Background(), d, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return workloadOf(got)
}

func workloadOf(d *appsv1.Deployment) gitops.Workload {
	return gitops.Workload{Group: "apps", Kind: "Deployment", Namespace: d.Namespace, Name: d.Name, Labels: d.Labels, Annotations: d.Annotations}
}

// TestGitOpsOwnersOnRealCRDs: each way Argo CD and Flux mark what they apply is recognised,
// with the function's own permissions, and nothing else is.
func TestGitOpsOwnersOnRealCRDs(t *testing.T) {
	w := newGitopsWorld(t, "gitops-owners")
	ns := w.ns
	tests := []struct {
		name        string
		labels      map[string]string
		annotations map[string]string
		want        []string
		wantErr     error // the refusal, when not ErrManaged
	}{
		{name: "annotated", annotations: map[string]string{gitops.ArgoCDTrackingID: "shop:apps/Deployment:" + ns + "/annotated"},
			want: []string{"Argo CD Application " + w.argo + "/shop"}},
		{name: "labelled", labels: map[string]string{gitops.InstanceLabel: "shop"},
			want: []string{"Argo CD Application " + w.argo + "/shop"}},
		// A Helm chart's instance label that happens to name the Application, which does not
		// list this Deployment: not Argo CD's.
		{name: "chart", labels: map[string]string{gitops.InstanceLabel: "shop", gitops.ManagedByLabel: "Helm"}},
		{name: "kustomized", labels: map[string]string{gitops.KustomizeName: "apps", gitops.KustomizeNS: w.flux},
			want: []string{"Flux Kustomization " + w.flux + "/apps"}},
		{name: "released", labels: map[string]string{gitops.HelmName: "web", gitops.HelmNS: ns, gitops.ManagedByLabel: "Helm"},
			want: []string{"Flux HelmRelease " + ns + "/web"}},
		{name: "plain"},
		// Labels of a Kustomization deleted with its workloads left behind: refused, as an
		// owner that does not exist.
		{name: "orphaned", labels: map[string]string{gitops.KustomizeName: "gone", gitops.KustomizeNS: w.flux}, wantErr: gitops.ErrOwnerMissing},
	}
	g := gitops.New(w.fn, w.disco, gitops.Refuse, w.argo)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wl := w.deployment(t, tt.name, tt.labels, tt.annotations)
			_, err := g.Check(context.Background(), wl)
			var m *gitops.ManagedError
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Check = %v; want %v", err, tt.wantErr)
				}
				t.Logf("refused: %v", err)
				return
			}
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Check = %v; want no owner", err)
				}
				return
			}
			if !errors.As(err, &m) {
				t.Fatalf("Check = %v; want refused", err)
			}
			var got []string
			for _, o := range m.Owners {
				got = append(got, o.String())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("owners (-want +got):\n%s", diff)
			}
			t.Logf("refused: %v", err)
		})
	}
}

// TestGitOpsWithoutItsRBAC: without deploy/cluster-wide/gitops.yaml the function may not
// read Applications. RBAC answers 403 whether or not the resource type exists, so discovery
// tells the two apart: with Argo CD's CRD installed, a label-tracked workload is refused
// as unknown (the message says to apply gitops.yaml); for a type the apiserver does not serve
// discovery says so (then such a label counts as a Helm chart's).
func TestGitOpsWithoutItsRBAC(t *testing.T) {
	ctx := context.Background()
	ns := "gitops-norbac"
	applyCRDs(t, kube)
	install(t, kube, ns)
	_, fn := clientsOf(t, kube, ns)
	disco := discoveryOf(t, ns)
	// Argo CD's ApplicationSet CRD is not installed here.
	applicationSets := schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applicationsets"}
	for _, gvr := range []schema.GroupVersionResource{gitops.ApplicationResource, applicationSets} {
		_, err := fn.Resource(gvr).Namespace("argocd").Get(ctx, "shop", get)
		if !apierrors.IsForbidden(err) {
			t.Errorf("get %s without gitops.yaml = %v; want 403", gvr.Resource, err)
		}
	}
	for gvr, want := range map[schema.GroupVersionResource]bool{gitops.ApplicationResource: true, applicationSets: false} {
		if got, err := disco.Serves(ctx, gvr); err != nil || got != want {
			t.Errorf("Serves(%s) = %v, %v; want %v", gvr.Resource, got, err, want)
		}
	}
	w := &gitopsWorld{ns: ns}
	wl := w.deployment(t, "labelled", map[string]string{gitops.InstanceLabel: "shop"}, nil)
	for _, mode := range []gitops.Mode{gitops.Refuse, gitops.Suspend} {
		_, err := gitops.New(fn, disco, mode, "").Check(ctx, wl)
		if !errors.Is(err, gitops.ErrUnknown) || !strings.Contains(err.Error(), "apply deploy/cluster-wide/gitops.yaml") {
			t.Errorf("%s: Check = %v; want unknown, saying to apply gitops.yaml", mode, err)
		}
		t.Logf("%s: refused: %v", mode, err)
	}
}

// TestGitOpsAppOfAppsOnRealCRDs: an Application that a parent Application tracks (app of
// apps, annotation tracking on the real object) is not suspended: the parent would turn
// self-heal back on. Refused before any write; the Application keeps its spec.
func TestGitOpsAppOfAppsOnRealCRDs(t *testing.T) {
	w := newGitopsWorld(t, "gitops-parent")
	ctx := context.Background()
	child := `
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: child
  namespace: ARGO
  annotations: {argocd.argoproj.io/tracking-id: "root:argoproj.io/Application:ARGO/child"}
spec:
  project: default
  source: {repoURL: "https://git.example.com/shop.git", path: deploy, targetRevision: main}
  destination: {server: "https://kubernetes.default.svc", namespace: SHOP}
  syncPolicy:
    automated: {prune: true, selfHeal: true}
`
	w.create(t, strings.NewReplacer("SHOP", w.ns, "ARGO", w.argo).Replace(child))
	before := w.spec(t, gitops.Application, w.argo, "child")
	wl := w.deployment(t, "child-web", nil, map[string]string{gitops.ArgoCDTrackingID: "child:apps/Deployment:" + w.ns + "/child-web"})
	owners, err := gitops.New(w.fn, w.disco, gitops.Suspend, w.argo).Check(ctx, wl)
	want := "is itself reconciled by Argo CD Application " + w.argo + "/root (app of apps"
	if !errors.Is(err, gitops.ErrParentManaged) || !strings.Contains(err.Error(), want) || len(owners) != 0 {
		t.Fatalf("Check = %+v, %v; want refused, saying %q", owners, err, want)
	}
	t.Logf("refused: %v", err)
	if diff := cmp.Diff(before, w.spec(t, gitops.Application, w.argo, "child")); diff != "" {
		t.Errorf("the Application changed (-before +after):\n%s", diff)
	}
}

// TestGitOpsAppsInAnyNamespace: a tracking id naming the Application as <namespace>_<name>
// (Argo CD's apps in any namespace) finds it there, whatever ROLLBACK_ARGOCD_NAMESPACE says,
// and the Application found is the real one: a dry-run suspend reaches it through its schema.
func TestGitOpsAppsInAnyNamespace(t *testing.T) {
	w := newGitopsWorld(t, "gitops-anywhere")
	ctx := context.Background()
	wl := w.deployment(t, "anywhere", nil, map[string]string{gitops.ArgoCDTrackingID: w.argo + "_shop:apps/Deployment:" + w.ns + "/anywhere"})
	g := gitops.New(w.fn, w.disco, gitops.Suspend, "") // Argo CD's default namespace, argocd, holds nothing here
	owners, err := g.Check(ctx, wl)
	want := []gitops.Owner{{Kind: gitops.Application, Namespace: w.argo, Name: "shop", Via: "annotation " + gitops.ArgoCDTrackingID}}
	if err != nil || !cmp.Equal(owners, want) {
		t.Fatalf("Check = %+v, %v; want %+v", owners, err, want)
	}
	before := w.spec(t, gitops.Application, w.argo, "shop")
	s, err := g.Suspend(ctx, owners, true)
	if err != nil || len(s) != 1 || !s[0].Changed || s[0].Ref.UID == "" {
		t.Fatalf("dry-run Suspend = %+v, %v; want the real Application, changed", s, err)
	}
	if diff := cmp.Diff(before, w.spec(t, gitops.Application, w.argo, "shop")); diff != "" {
		t.Errorf("a dry run changed the Application (-before +after):\n%s", diff)
	}
}

// TestGitOpsSuspendOnRealCRDs: suspend through the real schemas, with the function's own
// permissions. Flux's objects get spec.suspend: true and keep the rest; Argo CD's Application
// loses self-heal only. A dry run is checked by the server and changes nothing; a second
// suspend finds nothing to do.
func TestGitOpsSuspendOnRealCRDs(t *testing.T) {
	w := newGitopsWorld(t, "gitops-suspend")
	ctx := context.Background()
	owners := []gitops.Owner{
		{Kind: gitops.Application, Namespace: w.argo, Name: "shop"},
		{Kind: gitops.Kustomization, Namespace: w.flux, Name: "apps"},
		{Kind: gitops.HelmRelease, Namespace: w.ns, Name: "web"},
	}
	before := map[string]map[string]any{}
	for _, o := range owners {
		before[o.Kind] = w.spec(t, o.Kind, o.Namespace, o.Name)
		b, _ := yaml.Marshal(before[o.Kind])
		t.Logf("%s spec before:\n%s", o, b)
	}
	g := gitops.New(w.fn, w.disco, gitops.Suspend, w.argo)

	dry, err := g.Suspend(ctx, owners, true)
	if err != nil || len(dry) != 3 {
		t.Fatalf("dry-run Suspend = %+v, %v", dry, err)
	}
	for _, o := range owners {
		if diff := cmp.Diff(before[o.Kind], w.spec(t, o.Kind, o.Namespace, o.Name)); diff != "" {
			t.Errorf("%s changed by a dry run (-before +after):\n%s", o, diff)
		}
	}

	done, err := g.Suspend(ctx, owners, false)
	if err != nil {
		t.Fatalf("Suspend = %v", err)
	}
	for _, s := range done {
		if !s.Changed || s.Ref.UID == "" {
			t.Errorf("%s: changed %v, event reference %+v; want changed, with the object's UID", s.Owner, s.Changed, s.Ref)
		}
		t.Logf("suspended: %s", s)
	}
	for _, o := range owners {
		want := before[o.Kind]
		switch o.Kind {
		case gitops.Application:
			want = withPath(want, false, "syncPolicy", "automated", "selfHeal")
		default:
			want = withPath(want, true, "suspend")
		}
		after := w.spec(t, o.Kind, o.Namespace, o.Name)
		if diff := cmp.Diff(want, after); diff != "" {
			t.Errorf("%s spec after suspend (-want +got):\n%s", o, diff)
		}
		b, _ := yaml.Marshal(after)
		t.Logf("%s spec after:\n%s", o, b)
	}

	again, err := g.Suspend(ctx, owners, false)
	if err != nil {
		t.Fatalf("second Suspend = %v", err)
	}
	for _, s := range again {
		if s.Changed {
			t.Errorf("second Suspend changed %s again: %s", s.Owner, s.Change)
		}
	}
}

// withPath returns a deep copy of m with value set at path.
func withPath(m map[string]any, value any, path ...string) map[string]any {
	c := runtimeDeepCopy(m)
	if err := unstructured.SetNestedField(c, value, path...); err != nil {
		panic(err)
	}
	return c
}

func runtimeDeepCopy(m map[string]any) map[string]any {
	return (&unstructured.Unstructured{Object: map[string]any{"x": m}}).DeepCopy().Object["x"].(map[string]any)
}
