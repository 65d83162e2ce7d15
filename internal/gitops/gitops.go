// Package gitops finds out whether Argo CD or Flux reconciles a workload, and, when asked,
// stops them from putting back what a rollback just took away.
//
// A `kubectl rollout undo` of a workload that GitOps owns lasts until the next reconcile:
// Argo CD's self-heal reverts it within seconds, Flux at its next interval. The alert fires
// again and the function would undo again, a slow flip-flop with the team's own CD. So by
// default such a workload is refused, with the owner named; in suspend mode the owner is
// paused first (Flux: spec.suspend; Argo CD: self-heal off), which is also what Argo CD's
// documentation asks before a rollback.
//
// The Argo CD and Flux objects are read and patched with the dynamic client: their Go types
// would bring the controllers' dependency trees into the function.
package gitops

import (
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// Mode is what to do about a workload GitOps owns (ROLLBACK_GITOPS).
type Mode string

// The modes. Refuse is the default: doing nothing is always safe, and the team learns the
// rollback belongs in Git.
const (
	Refuse  Mode = "refuse"
	Suspend Mode = "suspend"
	Ignore  Mode = "ignore"
)

// ParseMode reads ROLLBACK_GITOPS; empty means Refuse.
func ParseMode(v string) (Mode, error) {
	switch m := Mode(strings.TrimSpace(v)); m {
	case "":
		return Refuse, nil
	case Refuse, Suspend, Ignore:
		return m, nil
	}
	return "", fmt.Errorf("%q: want refuse, suspend or ignore", v)
}

// DefaultArgoCDNamespace is where Argo CD's Applications live unless ROLLBACK_ARGOCD_NAMESPACE
// says otherwise (or a tracking id names another namespace: apps in any namespace).
const DefaultArgoCDNamespace = "argocd"

// ErrManaged marks a refusal; the error wrapping it is a *ManagedError naming the owners.
var ErrManaged = errors.New("a GitOps tool reconciles this workload and would put the bad revision back")

// ErrUnknown refuses a workload whose instance label may name an Argo CD Application that
// the function may not read: label tracking is then undecidable, and treating it as "not
// managed" would make the default, refuse, protect nothing on Argo CD's label tracking.
var ErrUnknown = errors.New("whether Argo CD reconciles this workload is not known")

// ErrParentManaged refuses to suspend an Application that something else reconciles in
// turn: an ApplicationSet regenerates its spec, a parent Application (app of apps) syncs it
// from Git, and either puts self-heal back, after which Argo CD reverts the rollback.
var ErrParentManaged = errors.New("suspending the GitOps owner would not last: something reconciles the owner itself")

// ErrOwnerMissing refuses a workload whose own annotation or labels name a GitOps owner that
// does not exist. The tool wrote them, so the workload was applied by it; the owner may have
// been deleted leaving the workload behind, or be looked up in the wrong place
// (ROLLBACK_ARGOCD_NAMESPACE). Either way a person should look before the function acts, in
// every mode but ignore.
var ErrOwnerMissing = errors.New("the GitOps owner this workload's annotation or labels name does not exist")

// The labels and annotations the tools put on what they apply.
const (
	ArgoCDTrackingID = "argocd.argoproj.io/tracking-id"
	InstanceLabel    = "app.kubernetes.io/instance"
	KustomizeName    = "kustomize.toolkit.fluxcd.io/name"
	KustomizeNS      = "kustomize.toolkit.fluxcd.io/namespace"
	HelmName         = "helm.toolkit.fluxcd.io/name"
	HelmNS           = "helm.toolkit.fluxcd.io/namespace"
	ManagedByLabel   = "app.kubernetes.io/managed-by"
	HelmReleaseName  = "meta.helm.sh/release-name"
	HelmReleaseNS    = "meta.helm.sh/release-namespace"
)

// The owners' kinds.
const (
	Application   = "Application"
	Kustomization = "Kustomization"
	HelmRelease   = "HelmRelease"
)

// Resources of the owners' kinds, at the versions their current controllers serve and store.
var (
	ApplicationResource   = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applications"}
	KustomizationResource = schema.GroupVersionResource{Group: "kustomize.toolkit.fluxcd.io", Version: "v1", Resource: "kustomizations"}
	HelmReleaseResource   = schema.GroupVersionResource{Group: "helm.toolkit.fluxcd.io", Version: "v2", Resource: "helmreleases"}
)

// Owner is an object of a GitOps tool that reconciles the workload.
type Owner struct {
	Kind      string
	Namespace string
	Name      string
	// Via says how it was recognised (the annotation or labels), for the people reading why.
	Via string
	// Missing is set when the workload names it but it does not exist (see ErrOwnerMissing).
	Missing bool
	// Parent, for an Application, names what reconciles the Application itself (an
	// ApplicationSet, or a parent Application: app of apps), which would turn self-heal
	// back on soon after Suspend turned it off (see ErrParentManaged).
	Parent string
}

func (o Owner) tool() string {
	if o.Kind == Application {
		return "Argo CD"
	}
	return "Flux"
}

func (o Owner) resource() schema.GroupVersionResource {
	switch o.Kind {
	case Application:
		return ApplicationResource
	case Kustomization:
		return KustomizationResource
	}
	return HelmReleaseResource
}

// String names the owner for people: "Argo CD Application argocd/shop".
func (o Owner) String() string {
	return fmt.Sprintf("%s %s %s/%s", o.tool(), o.Kind, o.Namespace, o.Name)
}

// ManagedError is a refusal because GitOps owns the workload.
type ManagedError struct{ Owners []Owner }

func (e *ManagedError) Error() string {
	names := make([]string, len(e.Owners))
	suspend := "or set ROLLBACK_GITOPS=suspend to let this function pause it before rolling back"
	for i, o := range e.Owners {
		names[i] = fmt.Sprintf("%s (%s)", o, o.Via)
		if o.Parent != "" {
			names[i] += fmt.Sprintf(" (itself reconciled by %s)", o.Parent)
			suspend = "ROLLBACK_GITOPS=suspend would not last here: what reconciles the Application would turn self-heal back on"
		}
	}
	return fmt.Sprintf("%v: %s; revert the bad change in Git (the GitOps tool then rolls it back); %s",
		ErrManaged, strings.Join(names, ", "), suspend)
}

func (e *ManagedError) Unwrap() error { return ErrManaged }

// parentError refuses to suspend owners whose Parent would undo the suspension.
func parentError(owners []Owner) error {
	var names []string
	for _, o := range owners {
		names = append(names, fmt.Sprintf("%s (%s) is itself reconciled by %s, which would turn its self-heal back on", o, o.Via, o.Parent))
	}
	return fmt.Errorf("%w: %s; nothing was suspended: revert the bad change in Git, or turn self-heal off "+
		"where the Application comes from (the ApplicationSet's template, the parent's Git source) before a rollback",
		ErrParentManaged, strings.Join(names, "; "))
}

// missingError refuses owners that the workload names but that do not exist, saying what to
// do about each.
func missingError(owners []Owner) error {
	var names []string
	for _, o := range owners {
		var fix string
		switch o.Kind {
		case Application:
			fix = "remove the stale annotation " + ArgoCDTrackingID + " from the workload, " +
				"or set ROLLBACK_ARGOCD_NAMESPACE if Argo CD's Applications live elsewhere"
		case Kustomization:
			fix = "remove the stale labels " + KustomizeName + " and " + KustomizeNS + " from the workload"
		default:
			fix = "remove the stale labels " + HelmName + " and " + HelmNS + " from the workload"
		}
		names = append(names, fmt.Sprintf("%s (%s) not found: %s", o, o.Via, fix))
	}
	return fmt.Errorf("%w: %s; or set ROLLBACK_GITOPS=ignore", ErrOwnerMissing, strings.Join(names, "; "))
}

// Workload is what the guard needs to know of the workload to roll back.
type Workload struct {
	// Group and Kind as in a tracking id: "apps", "Deployment".
	Group, Kind, Namespace, Name string
	Labels, Annotations          map[string]string
}

// Discovery says whether the API server serves a resource type, from its discovery
// document, which every authenticated client may read.
type Discovery interface {
	Serves(ctx context.Context, gvr schema.GroupVersionResource) (bool, error)
}

// Guard applies ROLLBACK_GITOPS. It is safe for concurrent use.
type Guard struct {
	client        dynamic.Interface
	discovery     Discovery
	mode          Mode
	argoNamespace string
}

// New returns a guard acting in mode through client; Argo CD's Applications are looked up
// in argoNamespace unless a tracking id names another. discovery, when not nil, tells a
// cluster without Argo CD from Applications the function may not read (see lists).
func New(client dynamic.Interface, discovery Discovery, mode Mode, argoNamespace string) *Guard {
	if argoNamespace == "" {
		argoNamespace = DefaultArgoCDNamespace
	}
	return &Guard{client: client, discovery: discovery, mode: mode, argoNamespace: argoNamespace}
}

// Mode is the guard's setting.
func (g *Guard) Mode() Mode { return g.mode }

// Check decides about w before its undo: in refuse mode a *ManagedError when something
// owns it; in suspend mode the owners to pass to Suspend once every other guard has said
// yes; in ignore mode nothing, without a request. In refuse and suspend mode alike, an owner
// the workload names but that does not exist refuses it (ErrOwnerMissing).
func (g *Guard) Check(ctx context.Context, w Workload) ([]Owner, error) {
	if g == nil || g.mode == Ignore {
		return nil, nil
	}
	owners, err := g.Owners(ctx, w)
	if err != nil {
		return nil, err
	}
	var missing, parented []Owner
	for _, o := range owners {
		if o.Missing {
			missing = append(missing, o)
		}
		if o.Parent != "" {
			parented = append(parented, o)
		}
	}
	switch {
	case len(missing) > 0:
		return nil, missingError(missing)
	case len(owners) > 0 && g.mode == Refuse:
		return nil, &ManagedError{Owners: owners}
	case len(parented) > 0:
		// Before anything is written: a suspension that would not last is not made.
		return nil, parentError(parented)
	}
	return owners, nil
}

// Owners returns the Argo CD Applications, Flux Kustomizations and HelmReleases that
// reconcile w, each read once.
//
// An owner the workload's own annotation or labels name is marked Missing when it does not
// exist. A label-tracked Application is different: the instance label is also what every Helm
// chart sets, so it counts only where the Application says so (its status lists the workload
// among its resources), and a missing one means the label is a chart's. An Application the
// function may not read makes an error wrapping ErrUnknown.
//
// In refuse mode an owner the workload names that cannot be read (403, 5xx) is still an
// owner: the refusal does not depend on what the read would say.
func (g *Guard) Owners(ctx context.Context, w Workload) ([]Owner, error) {
	var owners []Owner
	if id := w.Annotations[ArgoCDTrackingID]; id != "" {
		if app, ok := g.fromTrackingID(id, w); ok {
			o, obj, err := g.named(ctx, app)
			if err == nil && obj != nil {
				o.Parent, err = g.parent(ctx, o, obj)
			}
			if err != nil {
				return nil, err
			}
			owners = append(owners, o)
		}
	}
	if v := w.Labels[InstanceLabel]; v != "" {
		app := g.application(v, "label "+InstanceLabel+"="+v)
		// Both trackings naming one Application make one owner, read once.
		if len(owners) == 0 || owners[0].Namespace != app.Namespace || owners[0].Name != app.Name {
			obj, err := g.lists(ctx, app, w)
			if err == nil && obj != nil {
				app.Parent, err = g.parent(ctx, app, obj)
			}
			if err != nil {
				return nil, err
			}
			if obj != nil {
				owners = append(owners, app)
			}
		}
	}
	for _, f := range []struct{ kind, name, ns string }{
		{Kustomization, KustomizeName, KustomizeNS},
		{HelmRelease, HelmName, HelmNS},
	} {
		name := w.Labels[f.name]
		if name == "" {
			continue
		}
		ns := w.Labels[f.ns]
		if ns == "" {
			ns = w.Namespace
		}
		o, _, err := g.named(ctx, Owner{Kind: f.kind, Namespace: ns, Name: name, Via: "label " + f.name})
		if err != nil {
			return nil, err
		}
		owners = append(owners, o)
	}
	return owners, nil
}

// named reads an owner that the workload's own annotation or labels name, and marks it
// Missing when it does not exist (also when its resource type is unknown: the tool is gone
// altogether). In refuse mode a failed read is no error: the workload says who owns it, and
// the refusal does not depend on what the read would have said. The object is returned when
// it was read.
func (g *Guard) named(ctx context.Context, o Owner) (Owner, *unstructured.Unstructured, error) {
	obj, err := g.get(ctx, o)
	switch {
	case apierrors.IsNotFound(err):
		o.Missing = true
		return o, nil, nil
	case err != nil && g.mode == Refuse:
		return o, nil, nil
	case err != nil:
		return o, nil, fmt.Errorf("read %s: %w", o, err)
	}
	return o, obj, nil
}

// parent names what reconciles the Application app (read as obj) itself, "" for nothing:
// an ApplicationSet that owns it, or a parent Application that tracks it, as Argo CD tracks
// anything it applies (app of apps). In refuse mode a parent that cannot be read is no
// error: it would only add to the refusal's message.
func (g *Guard) parent(ctx context.Context, app Owner, obj *unstructured.Unstructured) (string, error) {
	for _, ref := range obj.GetOwnerReferences() {
		if gv, err := schema.ParseGroupVersion(ref.APIVersion); err == nil && gv.Group == ApplicationResource.Group && ref.Kind == "ApplicationSet" {
			// Owner references name objects of the dependant's own namespace.
			return fmt.Sprintf("Argo CD ApplicationSet %s/%s", app.Namespace, ref.Name), nil
		}
	}
	self := Workload{Group: ApplicationResource.Group, Kind: Application, Namespace: app.Namespace, Name: app.Name,
		Labels: obj.GetLabels(), Annotations: obj.GetAnnotations()}
	if id := self.Annotations[ArgoCDTrackingID]; id != "" {
		if p, ok := g.fromTrackingID(id, self); ok {
			return fmt.Sprintf("%s (app of apps, %s)", p, p.Via), nil
		}
	}
	if v := self.Labels[InstanceLabel]; v != "" {
		p := g.application(v, "label "+InstanceLabel+"="+v)
		if p.Namespace == app.Namespace && p.Name == app.Name {
			return "", nil
		}
		pobj, err := g.lists(ctx, p, self)
		switch {
		case err != nil && g.mode == Refuse:
			return "", nil
		case err != nil:
			return "", err
		case pobj != nil:
			return fmt.Sprintf("%s (app of apps, %s)", p, p.Via), nil
		}
	}
	return "", nil
}

func (g *Guard) get(ctx context.Context, o Owner) (*unstructured.Unstructured, error) {
	return g.client.Resource(o.resource()).Namespace(o.Namespace).Get(ctx, o.Name, metav1.GetOptions{})
}

// fromTrackingID reads Argo CD's annotation tracking, <app>:<group>/<kind>:<namespace>/<name>.
// The id must name w itself: Argo CD ignores a copied annotation, and so does this.
func (g *Guard) fromTrackingID(id string, w Workload) (Owner, bool) {
	parts := strings.SplitN(id, ":", 3)
	if len(parts) != 3 {
		return Owner{}, false
	}
	gk, nn := parts[1], parts[2]
	if gk != w.Group+"/"+w.Kind || nn != w.Namespace+"/"+w.Name {
		return Owner{}, false
	}
	return g.application(parts[0], "annotation "+ArgoCDTrackingID), true
}

// application turns Argo CD's name for an Application into the Application: <name> in Argo
// CD's namespace, or <namespace>_<name> when it lives elsewhere (apps in any namespace;
// neither a namespace nor a name may hold "_", so the split is unambiguous).
func (g *Guard) application(appName, via string) Owner {
	if ns, name, ok := strings.Cut(appName, "_"); ok {
		return Owner{Kind: Application, Namespace: ns, Name: name, Via: via}
	}
	return Owner{Kind: Application, Namespace: g.argoNamespace, Name: appName, Via: via}
}

// lists returns the Application app when it says it manages w, nil when it does not, or
// when there is no such Application.
func (g *Guard) lists(ctx context.Context, app Owner, w Workload) (*unstructured.Unstructured, error) {
	obj, err := g.get(ctx, app)
	switch {
	// No such Application, or no Argo CD at all (the resource type is unknown: also
	// NotFound): the label is a Helm chart's, or a leftover.
	case apierrors.IsNotFound(err):
		return nil, nil
	// RBAC answers 403 before the API server looks for the resource type, so a cluster
	// without Argo CD says 403 too when gitops.yaml was not applied: ask discovery. When
	// Argo CD is there, RBAC will say the same next time: a final refusal that says how to
	// lift it. Any other error is returned as it is, so that a 5xx or a timeout stays a
	// failure a retry can fix.
	case apierrors.IsForbidden(err):
		if g.discovery != nil {
			served, derr := g.discovery.Serves(ctx, ApplicationResource)
			if derr != nil {
				// Only the discovery's error: it decides whether a retry can help.
				return nil, fmt.Errorf("read %s: forbidden, and whether Argo CD is installed is not known: %w", app, derr)
			}
			if !served {
				return nil, nil
			}
		}
		return nil, fmt.Errorf("%w: the function may not read %s, which %s may point at (%w); "+
			"apply deploy/cluster-wide/gitops.yaml to let it read Applications, or set ROLLBACK_GITOPS=ignore",
			ErrUnknown, app, app.Via, err)
	case err != nil:
		return nil, fmt.Errorf("read Argo CD Application %s/%s: %w", app.Namespace, app.Name, err)
	}
	resources, _, _ := unstructured.NestedSlice(obj.Object, "status", "resources")
	for _, r := range resources {
		m, ok := r.(map[string]any)
		if !ok {
			continue
		}
		if m["group"] == w.Group && m["kind"] == w.Kind && m["namespace"] == w.Namespace && m["name"] == w.Name {
			return obj, nil
		}
	}
	return nil, nil
}

// HelmNote returns, for a workload Helm installed, a note that the next `helm upgrade`
// supersedes the rollback; "" for any other.
func HelmNote(w Workload) string {
	if w.Labels[ManagedByLabel] != "Helm" {
		return ""
	}
	release := w.Annotations[HelmReleaseName]
	if release == "" {
		release = w.Labels[InstanceLabel]
	}
	if ns := w.Annotations[HelmReleaseNS]; ns != "" && release != "" {
		release = ns + "/" + release
	}
	if release == "" {
		return "managed by Helm: the next `helm upgrade` puts the chart's template back and supersedes this rollback"
	}
	return fmt.Sprintf("managed by Helm release %s: the next `helm upgrade` puts the chart's template back and supersedes this rollback", release)
}

// ObjectReference points an Event at an owner.
func objectReference(o Owner, obj *unstructured.Unstructured) corev1.ObjectReference {
	r := o.resource()
	return corev1.ObjectReference{
		APIVersion: r.GroupVersion().String(), Kind: o.Kind, Namespace: o.Namespace, Name: o.Name,
		UID: obj.GetUID(), ResourceVersion: obj.GetResourceVersion(),
	}
}
