package guards

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

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
	"github.com/sre-kit/alert-rollback/internal/outcome"
	"github.com/sre-kit/alert-rollback/internal/report"
)

// gitopsWorld is Argo CD's and Flux's objects on the real apiserver, through their own CRDs,
// owning real Deployments in namespace shop.
type gitopsWorld struct {
	admin dynamic.Interface
	// fn acts as the function's ServiceAccount with kservice.yaml's Role and
	// deploy/cluster-wide/gitops.yaml bound in argo and flux; disco reads discovery as that
	// ServiceAccount.
	fn    dynamic.Interface
	disco gitops.Discovery
	// ns holds the workloads and the HelmRelease; argo the Application, flux the
	// Kustomization (each test has its own three). The function may act in all three
	// (namespaces, for ROLLBACK_NAMESPACES; allowed, for gitops.New).
	ns, argo, flux string
	namespaces     string
	allowed        func(string) bool
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
  - {group: apps, version: v1, kind: Deployment, namespace: SHOP, name: annotated}
  - {group: apps, version: v1, kind: Deployment, namespace: SHOP, name: anywhere}
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
	argo, flux := ns+"-argocd", ns+"-flux"
	for _, n := range []string{argo, flux} {
		if err := kube.CreateNamespace(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	bindGitopsRole(t, ns, argo, flux)
	admin, err := dynamic.NewForConfig(kube.Config)
	if err != nil {
		t.Fatal(err)
	}
	_, fn := clientsOf(t, kube, ns)
	w := &gitopsWorld{admin: admin, fn: fn, disco: discoveryOf(t, ns), ns: ns, argo: argo, flux: flux,
		namespaces: strings.Join([]string{ns, argo, flux}, ","),
		allowed:    func(n string) bool { return n == ns || n == argo || n == flux }}
	r := strings.NewReplacer("SHOP", ns, "ARGO", argo, "FLUX", flux)
	for _, doc := range []string{argoApplication, fluxKustomization, fluxHelmRelease} {
		w.create(t, r.Replace(doc))
	}
	w.inventory(t, flux, "apps", ns+"/kustomized", ns+"/labelled")
	return w
}

// bindGitopsRole applies deploy/cluster-wide/gitops.yaml (the ClusterRole) and binds it to the
// function's ServiceAccount of ns in each of owners, with the command the file documents.
func bindGitopsRole(t *testing.T, ns string, owners ...string) {
	t.Helper()
	ctx := context.Background()
	if out, err := kube.Kubectl(ctx, "apply", "-f", repoFile("deploy/cluster-wide/gitops.yaml")); err != nil {
		t.Fatalf("apply gitops.yaml: %v: %s", err, out)
	}
	for _, o := range owners {
		out, err := kube.Kubectl(ctx, "-n", o, "create", "rolebinding", "alert-rollback-gitops",
			"--clusterrole=alert-rollback-gitops", "--serviceaccount="+ns+":alert-rollback")
		if err != nil {
			t.Fatalf("bind the GitOps role in %s: %v: %s", o, err, out)
		}
	}
}

// inventory records in the Kustomization ns/name's status what kustomize-controller would
// have applied: the Deployments workloads ("namespace/name").
func (w *gitopsWorld) inventory(t *testing.T, ns, name string, workloads ...string) {
	t.Helper()
	ctx := context.Background()
	client := w.admin.Resource(gitops.KustomizationResource).Namespace(ns)
	k, err := client.Get(ctx, name, get)
	if err != nil {
		t.Fatal(err)
	}
	var entries []any
	for _, wl := range workloads {
		wns, wname, _ := strings.Cut(wl, "/")
		entries = append(entries, map[string]any{"id": wns + "_" + wname + "_apps_Deployment", "v": "v1"})
	}
	if err := unstructured.SetNestedSlice(k.Object, entries, "status", "inventory", "entries"); err != nil {
		t.Fatal(err)
	}
	if _, err := client.UpdateStatus(ctx, k, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("record the inventory of Kustomization %s/%s: %v", ns, name, err)
	}
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
		// Helm alone records what a release manages, in a Secret the function never reads.
		{name: "released", labels: map[string]string{gitops.HelmName: "web", gitops.HelmNS: ns, gitops.ManagedByLabel: "Helm"},
			wantErr: gitops.ErrUnverified},
		// Labels naming a real Kustomization whose inventory does not list the workload, or one
		// outside the namespaces the function may act in.
		{name: "forged", labels: map[string]string{gitops.KustomizeName: "apps", gitops.KustomizeNS: w.flux}, wantErr: gitops.ErrUnverified},
		{name: "outside", labels: map[string]string{gitops.KustomizeName: "apps", gitops.KustomizeNS: "kube-system"}, wantErr: gitops.ErrUnverified},
		{name: "plain"},
		// Labels of a Kustomization deleted with its workloads left behind: refused, as an
		// owner that does not exist.
		{name: "orphaned", labels: map[string]string{gitops.KustomizeName: "gone", gitops.KustomizeNS: w.flux}, wantErr: gitops.ErrOwnerMissing},
	}
	g := gitops.New(w.fn, w.disco, gitops.Refuse, w.argo, w.allowed)
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
		_, err := gitops.New(fn, disco, mode, "", func(n string) bool { return n == ns || n == gitops.DefaultArgoCDNamespace }).Check(ctx, wl)
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
status:
  resources:
  - {group: apps, version: v1, kind: Deployment, namespace: SHOP, name: child-web}
`
	w.create(t, strings.NewReplacer("SHOP", w.ns, "ARGO", w.argo).Replace(child))
	before := w.spec(t, gitops.Application, w.argo, "child")
	wl := w.deployment(t, "child-web", nil, map[string]string{gitops.ArgoCDTrackingID: "child:apps/Deployment:" + w.ns + "/child-web"})
	owners, err := gitops.New(w.fn, w.disco, gitops.Suspend, w.argo, w.allowed).Check(ctx, wl)
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
	g := gitops.New(w.fn, w.disco, gitops.Suspend, "", w.allowed) // Argo CD's default namespace, argocd, holds nothing here
	owners, err := g.Check(ctx, wl)
	want := []gitops.Owner{{Kind: gitops.Application, Namespace: w.argo, Name: "shop", Via: "annotation " + gitops.ArgoCDTrackingID}}
	if err != nil || !cmp.Equal(owners, want) {
		t.Fatalf("Check = %+v, %v; want %+v", owners, err, want)
	}
	before := w.spec(t, gitops.Application, w.argo, "shop")
	s, err := g.Suspend(ctx, wl, owners, true)
	if err != nil || len(s) != 1 || !s[0].Changed || s[0].Ref.UID == "" {
		t.Fatalf("dry-run Suspend = %+v, %v; want the real Application, changed", s, err)
	}
	if diff := cmp.Diff(before, w.spec(t, gitops.Application, w.argo, "shop")); diff != "" {
		t.Errorf("a dry run changed the Application (-before +after):\n%s", diff)
	}
}

// TestGitOpsSuspendOnRealCRDs: suspend through the real schemas, with the function's own
// permissions, for a workload the owners' records list. Flux's Kustomization gets
// spec.suspend: true and keeps the rest; Argo CD's Application loses self-heal only. A dry run
// is checked by the server and changes nothing; a second suspend finds nothing to do. A
// HelmRelease is never suspended: nothing records that it manages the workload but Helm's
// Secret.
func TestGitOpsSuspendOnRealCRDs(t *testing.T) {
	w := newGitopsWorld(t, "gitops-suspend")
	ctx := context.Background()
	wl := gitops.Workload{Group: "apps", Kind: "Deployment", Namespace: w.ns, Name: "labelled"}
	owners := []gitops.Owner{
		{Kind: gitops.Application, Namespace: w.argo, Name: "shop"},
		{Kind: gitops.Kustomization, Namespace: w.flux, Name: "apps"},
	}
	release := gitops.Owner{Kind: gitops.HelmRelease, Namespace: w.ns, Name: "web"}
	before := map[string]map[string]any{}
	for _, o := range append(owners, release) {
		before[o.Kind] = w.spec(t, o.Kind, o.Namespace, o.Name)
		b, _ := yaml.Marshal(before[o.Kind])
		t.Logf("%s spec before:\n%s", o, b)
	}
	g := gitops.New(w.fn, w.disco, gitops.Suspend, w.argo, w.allowed)

	dry, err := g.Suspend(ctx, wl, owners, true)
	if err != nil || len(dry) != 2 {
		t.Fatalf("dry-run Suspend = %+v, %v", dry, err)
	}
	for _, o := range owners {
		if diff := cmp.Diff(before[o.Kind], w.spec(t, o.Kind, o.Namespace, o.Name)); diff != "" {
			t.Errorf("%s changed by a dry run (-before +after):\n%s", o, diff)
		}
	}

	if s, err := g.Suspend(ctx, wl, []gitops.Owner{release}, false); !errors.Is(err, gitops.ErrUnverified) || len(s) != 0 {
		t.Errorf("Suspend(%s) = %+v, %v; want refused, unverified", release, s, err)
	}
	if diff := cmp.Diff(before[release.Kind], w.spec(t, release.Kind, release.Namespace, release.Name)); diff != "" {
		t.Errorf("%s changed (-before +after):\n%s", release, diff)
	}

	done, err := g.Suspend(ctx, wl, owners, false)
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

	again, err := g.Suspend(ctx, wl, owners, false)
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

// TestGitOpsForgedMarkers: issue #17's attack on the real apiserver, through the function's
// binary. A tenant who may edit only its own Deployments labels and annotates one (web) to
// name the platform's Kustomization, HelmRelease and Application in namespaces outside
// ROLLBACK_NAMESPACES, and another (web-argo) to name an Application inside them that does not
// list it. RBAC here is wider than the shipped one: in the outside namespaces the function may
// read and patch all three kinds and write Events, as gitops.yaml's former ClusterRoleBinding
// allowed. What is tested is the function's own refusal. Each alert is refused gitops-unverified; no owner changes (spec and
// resourceVersion); no Event lands outside the allowed namespaces. A Deployment that the
// allowed Application does list is still suspended and rolled back. In refuse mode, the
// answer about markers naming outside owners is the same whether they exist or not.
func TestGitOpsForgedMarkers(t *testing.T) {
	w := newGitopsWorld(t, "gitops-forged")
	ctx := context.Background()
	platform, payments := w.ns+"-platform", w.ns+"-payments"
	for _, n := range []string{platform, payments} {
		if err := kube.CreateNamespace(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{platform, payments} {
		for _, args := range [][]string{
			{"create", "role", "wide-gitops", "--verb=get,patch,create",
				"--resource=applications.argoproj.io,kustomizations.kustomize.toolkit.fluxcd.io,helmreleases.helm.toolkit.fluxcd.io,events"},
			{"create", "rolebinding", "wide-gitops", "--role=wide-gitops", "--serviceaccount=" + w.ns + ":alert-rollback"},
		} {
			if out, err := kube.Kubectl(ctx, append([]string{"-n", n}, args...)...); err != nil {
				t.Fatalf("grant the function everything about owners in %s: %v: %s", n, err, out)
			}
		}
	}
	r := strings.NewReplacer("PLATFORM", platform, "PAYMENTS", payments)
	outsiders := func(name string) {
		w.create(t, r.Replace(`
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: `+name+`, namespace: PLATFORM}
spec: {interval: 10m, path: ./platform, prune: true, sourceRef: {kind: GitRepository, name: flux-system}}
`))
		w.inventory(t, platform, name, platform+"/source-controller")
		w.create(t, r.Replace(`
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: `+name+`, namespace: PAYMENTS}
spec: {interval: 5m, chart: {spec: {chart: billing, sourceRef: {kind: HelmRepository, name: charts}}}}
`))
		w.create(t, r.Replace(`
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: `+name+`, namespace: PAYMENTS}
spec:
  project: default
  source: {repoURL: "https://git.example.com/payments.git", path: deploy, targetRevision: main}
  destination: {server: "https://kubernetes.default.svc", namespace: PAYMENTS}
  syncPolicy: {automated: {prune: true, selfHeal: true}}
status:
  resources:
  - {group: apps, version: v1, kind: Deployment, namespace: PAYMENTS, name: `+name+`}
`))
	}
	outsiders("billing")
	forged := func(name, owner string) (map[string]string, map[string]string) {
		return map[string]string{gitops.KustomizeName: owner, gitops.KustomizeNS: platform, gitops.HelmName: owner, gitops.HelmNS: payments},
			map[string]string{gitops.ArgoCDTrackingID: payments + "_" + owner + ":apps/Deployment:" + w.ns + "/" + name}
	}

	f := gitopsFn(t, w)
	labels, annotations := forged("web", "billing")
	f.rolledOut("web", labels, annotations)
	f.rolledOut("web-argo", nil, map[string]string{gitops.ArgoCDTrackingID: w.argo + "_shop:apps/Deployment:" + w.ns + "/web-argo"})
	f.rolledOut("annotated", nil, map[string]string{gitops.ArgoCDTrackingID: w.argo + "_shop:apps/Deployment:" + w.ns + "/annotated"})
	owners := []gitops.Owner{
		{Kind: gitops.Kustomization, Namespace: platform, Name: "billing"},
		{Kind: gitops.HelmRelease, Namespace: payments, Name: "billing"},
		{Kind: gitops.Application, Namespace: payments, Name: "billing"},
		{Kind: gitops.Application, Namespace: w.argo, Name: "shop"},
	}
	before := map[gitops.Owner]*unstructured.Unstructured{}
	for _, o := range owners {
		before[o] = w.object(t, o)
	}
	allowed := w.ns + "," + w.argo
	p := f.start("rollback-suspend", map[string]string{"ROLLBACK_GITOPS": "suspend", "ROLLBACK_NAMESPACES": allowed})
	for _, name := range []string{"web", "web-argo"} {
		code, resp, err := p.Post(ctx, notification(f.alertAbout("BadRollout", name, time.Now())), f.token)
		if err != nil || code != http.StatusOK || len(resp.Results) != 1 {
			t.Fatalf("%s: answer %d %+v: %v", name, code, resp, err)
		}
		res := resp.Results[0]
		t.Logf("%s: %s [%s]: %s", name, res.Action, res.Reason, res.Message)
		if res.Reason != outcome.ReasonGitOpsUnverified {
			t.Errorf("%s: %s [%s]; want refused, %s", name, res.Action, res.Reason, outcome.ReasonGitOpsUnverified)
		}
		if rev := f.deployment(name).Annotations["deployment.kubernetes.io/revision"]; rev != "2" {
			t.Errorf("%s at revision %s after a refusal; want 2", name, rev)
		}
	}
	for _, o := range owners {
		after := w.object(t, o)
		if after.GetResourceVersion() != before[o].GetResourceVersion() || !cmp.Equal(after.Object["spec"], before[o].Object["spec"]) {
			t.Errorf("%s changed: resourceVersion %s → %s, spec (-before +after):\n%s", o, before[o].GetResourceVersion(),
				after.GetResourceVersion(), cmp.Diff(before[o].Object["spec"], after.Object["spec"]))
		}
	}

	// The Application in an allowed namespace that does list its workload is still suspended.
	code, resp, err := p.Post(ctx, notification(f.alertAbout("BadRollout", "annotated", time.Now())), f.token)
	if err != nil || code != http.StatusOK || len(resp.Results) != 1 || resp.Results[0].Action != outcome.RolledBack {
		t.Fatalf("annotated: answer %d %+v: %v; want rolled back", code, resp, err)
	}
	if selfHeal, _, _ := unstructured.NestedBool(w.object(t, owners[3]).Object, "spec", "syncPolicy", "automated", "selfHeal"); selfHeal {
		t.Errorf("%s still self-heals after the rollback of annotated", owners[3])
	}
	if _, err := fixture.WaitEvents(ctx, kube.Clientset, w.argo, gitops.Application, "shop", report.ReasonSuspended, 1); err != nil {
		t.Errorf("no %s Event on %s: %v", report.ReasonSuspended, owners[3], err)
	}
	p.Stop() // flushes its Events
	for _, n := range []string{platform, payments, w.flux} {
		events, err := kube.Clientset.CoreV1().Events(n).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range events.Items {
			t.Errorf("an Event in %s, outside ROLLBACK_NAMESPACES=%s: %s %s/%s: %s", n, allowed, e.Reason, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Message)
		}
	}

	// Refuse mode: the same answer whether the outside owners the markers name exist or not
	// (here even an Application that lists the workload).
	labels, annotations = forged("probe", "ghost")
	f.rolledOut("probe", labels, annotations)
	q := f.start("rollback-refuse", map[string]string{"ROLLBACK_GITOPS": "refuse", "ROLLBACK_NAMESPACES": allowed})
	var answers []outcome.Result
	for i, exist := range []bool{false, true} {
		if exist {
			outsiders("ghost")
		}
		code, resp, err := q.Post(ctx, notification(f.alertAbout("BadRollout", "probe", time.Now().Add(time.Duration(i)*time.Second))), f.token)
		if err != nil || code != http.StatusOK || len(resp.Results) != 1 {
			t.Fatalf("probe: answer %d %+v: %v", code, resp, err)
		}
		res := resp.Results[0]
		t.Logf("probe, outside owners exist %v: %s [%s]: %s", exist, res.Action, res.Reason, res.Message)
		answers = append(answers, outcome.Result{Action: res.Action, Reason: res.Reason, Message: res.Message})
	}
	if answers[0].Reason != outcome.ReasonGitOpsUnverified {
		t.Errorf("probe: %s [%s]; want refused, %s", answers[0].Action, answers[0].Reason, outcome.ReasonGitOpsUnverified)
	}
	if diff := cmp.Diff(answers[0], answers[1]); diff != "" {
		t.Errorf("the answer tells whether objects outside ROLLBACK_NAMESPACES exist (-absent +present):\n%s", diff)
	}
}

// object reads an owner as the apiserver stores it.
func (w *gitopsWorld) object(t *testing.T, o gitops.Owner) *unstructured.Unstructured {
	t.Helper()
	u, err := w.admin.Resource(resourceOf(o.Kind)).Namespace(o.Namespace).Get(context.Background(), o.Name, get)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
