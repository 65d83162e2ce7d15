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
// A workload's labels and annotations are written by whoever may edit it, so they only
// say where to look. An owner counts as managing the workload when its own records say so
// (a Kustomization's status.inventory, an Application's status.resources), and it is read
// (let alone suspended) only in the namespaces the function may act in: what exists
// elsewhere is never looked at, so an answer cannot tell it. A HelmRelease records nothing
// of the kind (Helm keeps a release's objects in a Secret, which the function never reads):
// it is never read or suspended, and its workload is refused.
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

// ErrUnverified refuses a workload whose annotation or labels name a GitOps owner whose own
// records were not seen to list it: the owner is in a namespace the function may not act
// in (it is not read, so the answer is the same whether it exists or not), its records do
// not list the workload, it could not be read (refuse mode), or it is a HelmRelease, whose
// records are Helm's Secrets. Markers are written by whoever may edit the workload; only
// the owner's own records say it manages it.
var ErrUnverified = errors.New("the GitOps owner this workload's annotation or labels name was not confirmed to manage it")

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
	// Unverified, when set, says why the owner was not confirmed to manage the workload and
	// what to do (see ErrUnverified).
	Unverified string
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
		default:
			fix = "remove the stale labels " + KustomizeName + " and " + KustomizeNS + " from the workload"
		}
		names = append(names, fmt.Sprintf("%s (%s) not found: %s", o, o.Via, fix))
	}
	return fmt.Errorf("%w: %s; or set ROLLBACK_GITOPS=ignore", ErrOwnerMissing, strings.Join(names, "; "))
}

// unverifiedError refuses owners not confirmed to manage the workload, each with why.
func unverifiedError(owners []Owner) error {
	var names []string
	for _, o := range owners {
		names = append(names, fmt.Sprintf("%s (%s): %s", o, o.Via, o.Unverified))
	}
	return fmt.Errorf("%w: %s; nothing was changed: revert the bad change in Git (the GitOps tool then rolls it back), "+
		"or remove the annotation or labels if no such owner manages the workload", ErrUnverified, strings.Join(names, "; "))
}

// outside says why an owner in a namespace the function may not act in was not read.
func outside(o Owner) string {
	return fmt.Sprintf("namespace %s is not one this function may act in, so it was not read; to let the function "+
		"check it, list %s in ROLLBACK_NAMESPACES and bind deploy/cluster-wide/gitops.yaml there", o.Namespace, o.Namespace)
}

// helmUnverifiable says why a HelmRelease is never confirmed, and what to do instead.
func helmUnverifiable(o Owner) string {
	return fmt.Sprintf("only Helm records which objects a release manages, in a Secret, and this function never reads "+
		"Secrets, so it never reads or suspends a HelmRelease; to roll back by hand, suspend it first "+
		"(flux suspend helmrelease %s -n %s)", o.Name, o.Namespace)
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
	allowed       func(namespace string) bool
}

// New returns a guard acting in mode through client; Argo CD's Applications are looked up
// in argoNamespace unless a tracking id names another. Owners are read and suspended only in
// the namespaces allowed says yes to (ROLLBACK_NAMESPACES); nil allows none. discovery, when
// not nil, tells a cluster without Argo CD from Applications the function may not read (see
// lists).
func New(client dynamic.Interface, discovery Discovery, mode Mode, argoNamespace string, allowed func(namespace string) bool) *Guard {
	if argoNamespace == "" {
		argoNamespace = DefaultArgoCDNamespace
	}
	if allowed == nil {
		allowed = func(string) bool { return false }
	}
	return &Guard{client: client, discovery: discovery, mode: mode, argoNamespace: argoNamespace, allowed: allowed}
}

// readable says whether the guard may read the owner o to confirm it: in the namespaces it
// may act in, and, for an Application, in Argo CD's own namespace, which the operator sets
// (ROLLBACK_ARGOCD_NAMESPACE), never a tenant. A read there only ever answers whether that
// Application lists the workload; nothing is written there unless it is allowed too.
func (g *Guard) readable(o Owner) bool {
	return g.allowed(o.Namespace) || (o.Kind == Application && o.Namespace == g.argoNamespace)
}

// Mode is the guard's setting.
func (g *Guard) Mode() Mode { return g.mode }

// Check decides about w before its undo: in refuse mode a *ManagedError when something
// owns it; in suspend mode the owners to pass to Suspend once every other guard has said
// yes; in ignore mode nothing, without a request. In refuse and suspend mode alike, an owner
// the workload names but that does not exist refuses it (ErrOwnerMissing), and so does one
// not confirmed to manage it (ErrUnverified).
func (g *Guard) Check(ctx context.Context, w Workload) ([]Owner, error) {
	if g == nil || g.mode == Ignore {
		return nil, nil
	}
	owners, err := g.Owners(ctx, w)
	if err != nil {
		return nil, err
	}
	var missing, unverified, parented []Owner
	for i, o := range owners {
		if g.mode == Suspend && o.Unverified == "" && !o.Missing && !g.allowed(o.Namespace) {
			o.Unverified = fmt.Sprintf("it manages the workload, but namespace %s is not one this function may act in, "+
				"so it cannot be suspended; list %s in ROLLBACK_NAMESPACES and bind deploy/cluster-wide/gitops.yaml there, "+
				"or revert the bad change in Git", o.Namespace, o.Namespace)
			owners[i] = o
		}
		switch {
		case o.Missing:
			missing = append(missing, o)
		case o.Unverified != "":
			unverified = append(unverified, o)
		case o.Parent != "":
			parented = append(parented, o)
		}
	}
	switch {
	case len(missing) > 0:
		return nil, missingError(missing)
	case len(unverified) > 0:
		return nil, unverifiedError(unverified)
	case len(owners) > 0 && g.mode == Refuse:
		return nil, &ManagedError{Owners: owners}
	case len(parented) > 0:
		// Before anything is written: a suspension that would not last is not made.
		return nil, parentError(parented)
	}
	return owners, nil
}

// Owners returns the Argo CD Applications, Flux Kustomizations and HelmReleases that
// the workload's annotation and labels name, each read at most once, and only in the
// namespaces the guard may act in.
//
// An owner the workload's own annotation or labels name is marked Missing when it does not
// exist, and Unverified when its records do not list the workload, or it was not read (see
// ErrUnverified). A label-tracked Application is different: the instance label is also what
// every Helm chart sets, so it counts only where the Application says so (its status lists
// the workload among its resources), and a missing one means the label is a chart's. An
// Application the function may not read, or may not look for (outside its namespaces),
// makes an error wrapping ErrUnknown, unless discovery says there is no Argo CD.
func (g *Guard) Owners(ctx context.Context, w Workload) ([]Owner, error) {
	var owners []Owner
	if id := w.Annotations[ArgoCDTrackingID]; id != "" {
		if app, ok := g.fromTrackingID(id, w); ok {
			o, err := g.confirm(ctx, app, w)
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
	if name := w.Labels[KustomizeName]; name != "" {
		o, err := g.confirm(ctx, Owner{Kind: Kustomization, Namespace: labelNamespace(w, KustomizeNS), Name: name, Via: "label " + KustomizeName}, w)
		if err != nil {
			return nil, err
		}
		owners = append(owners, o)
	}
	if name := w.Labels[HelmName]; name != "" {
		o := Owner{Kind: HelmRelease, Namespace: labelNamespace(w, HelmNS), Name: name, Via: "label " + HelmName}
		o.Unverified = helmUnverifiable(o)
		owners = append(owners, o)
	}
	return owners, nil
}

// labelNamespace is the namespace a Flux label names, the workload's own when it is not set.
func labelNamespace(w Workload, label string) string {
	if ns := w.Labels[label]; ns != "" {
		return ns
	}
	return w.Namespace
}

// confirm reads an owner that the workload's own annotation or labels name, when it is in a
// namespace the guard may act in, and says whether its records list w. It marks the owner
// Missing when it does not exist (also when its resource type is unknown: the tool is gone
// altogether), Unverified when it was not read or does not list w. In refuse mode a failed
// read is no error: the workload is refused all the same.
func (g *Guard) confirm(ctx context.Context, o Owner, w Workload) (Owner, error) {
	if !g.readable(o) {
		o.Unverified = outside(o)
		return o, nil
	}
	obj, err := g.get(ctx, o)
	switch {
	// Outside ROLLBACK_NAMESPACES a missing owner reads as one that does not list w: the
	// answer must not tell a tenant what exists there.
	case apierrors.IsNotFound(err) && !g.allowed(o.Namespace):
		o.Unverified = unlisted(o, w)
		return o, nil
	case apierrors.IsNotFound(err):
		o.Missing = true
		return o, nil
	case err != nil && g.mode == Refuse:
		o.Unverified = fmt.Sprintf("it could not be read (%v)", err)
		return o, nil
	case err != nil:
		return o, fmt.Errorf("read %s: %w", o, err)
	}
	if !manages(o, obj, w) {
		o.Unverified = unlisted(o, w)
		return o, nil
	}
	if o.Kind == Application {
		o.Parent, err = g.parent(ctx, o, obj)
	}
	return o, err
}

// manages reports whether the owner o, read as obj, records w among what it applied: a
// Kustomization's status.inventory.entries (ids "<namespace>_<name>_<group>_<kind>", as
// Flux writes them), an Application's status.resources. A HelmRelease records no such list.
func manages(o Owner, obj *unstructured.Unstructured, w Workload) bool {
	switch o.Kind {
	case Kustomization:
		id := strings.Join([]string{w.Namespace, w.Name, w.Group, w.Kind}, "_")
		entries, _, _ := unstructured.NestedSlice(obj.Object, "status", "inventory", "entries")
		for _, e := range entries {
			if m, ok := e.(map[string]any); ok && m["id"] == id {
				return true
			}
		}
	case Application:
		resources, _, _ := unstructured.NestedSlice(obj.Object, "status", "resources")
		for _, r := range resources {
			m, ok := r.(map[string]any)
			if ok && m["group"] == w.Group && m["kind"] == w.Kind && m["namespace"] == w.Namespace && m["name"] == w.Name {
				return true
			}
		}
	}
	return false
}

// unlisted says that o's records do not list w.
func unlisted(o Owner, w Workload) string {
	field := "status.inventory"
	if o.Kind == Application {
		field = "status.resources"
	}
	return fmt.Sprintf("its %s does not list %s/%s %s/%s", field, w.Group, w.Kind, w.Namespace, w.Name)
}

// parent names what reconciles the Application app (read as obj) itself, "" for nothing:
// an ApplicationSet that owns it, or a parent Application that tracks it, as Argo CD tracks
// anything it applies (app of apps). In refuse mode a parent that cannot be read (or may
// not be: outside the guard's namespaces) is no error: it would only add to the refusal's
// message.
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
// when there is no such Application. An Application in a namespace the guard may not act in
// is not read: whether it lists w is unknown then.
func (g *Guard) lists(ctx context.Context, app Owner, w Workload) (*unstructured.Unstructured, error) {
	if !g.readable(app) {
		return nil, g.unknown(ctx, app, fmt.Sprintf("%s, which %s may point at, is in a namespace this function may not act in, "+
			"so it is not read; list %s in ROLLBACK_NAMESPACES and bind deploy/cluster-wide/gitops.yaml there, or set ROLLBACK_GITOPS=ignore",
			app, app.Via, app.Namespace), nil)
	}
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
		return nil, g.unknown(ctx, app, fmt.Sprintf("the function may not read %s, which %s may point at; "+
			"apply deploy/cluster-wide/gitops.yaml and bind it in %s to let it read Applications there, or set ROLLBACK_GITOPS=ignore",
			app, app.Via, app.Namespace), err)
	case err != nil:
		return nil, fmt.Errorf("read Argo CD Application %s/%s: %w", app.Namespace, app.Name, err)
	}
	if manages(app, obj, w) {
		return obj, nil
	}
	return nil, nil
}

// unknown is the error for a label-tracked Application that was not read, saying why, or
// nil when discovery says the cluster serves no Applications (the label is a chart's).
func (g *Guard) unknown(ctx context.Context, app Owner, why string, cause error) error {
	if g.discovery != nil {
		served, err := g.discovery.Serves(ctx, ApplicationResource)
		if err != nil {
			// Only the discovery's error: it decides whether a retry can help.
			return fmt.Errorf("%s is not read, and whether Argo CD is installed is not known: %w", app, err)
		}
		if !served {
			return nil
		}
	}
	if cause != nil {
		return fmt.Errorf("%w: %s (%w)", ErrUnknown, why, cause)
	}
	return fmt.Errorf("%w: %s", ErrUnknown, why)
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
