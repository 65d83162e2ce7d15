// Package kinds holds the kinds of workload the function can roll back, in a registry keyed
// by schema.GroupKind (the shape of kubectl's RollbackerFor): each kind is one file that says
// how a workload of that kind is named by an alert, reached from a pod, read with its
// rollout history, and restored to an earlier revision. What does not depend on the kind
// (the guards, the state kept on the workload, the budget, GitOps) lives in package undo,
// which asks the registry for the kind of each workload.
//
// Adding a kind: a file here implementing Kind, one line in registry, its RBAC rows
// (kservice.yaml, deploy/cluster-wide/rbac.yaml, the README), its README row, its tests.
package kinds

import (
	"context"
	"errors"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sre-kit/alert-rollback/internal/kube"
)

// registry lists the kinds, in the order an alert's labels are looked at: when an alert
// names workloads of several kinds, the first kind's label counts.
var registry = []Kind{
	deployment{},
	statefulSet{},
	daemonSet{},
	knativeService{},
	rollout{},
}

// Kind is one kind of workload: how alerts name it, and how to read its history and
// restore a revision. Implementations hold no state; what they read through is Env. Their
// GroupVersionKind and Label use no variable of this package: package variables such as
// ErrUnsupportedOwner are made from them through the registry, before other variables of
// the package may be set.
type Kind interface {
	// GroupVersionKind names the kind and the version it is read and written in.
	GroupVersionKind() schema.GroupVersionKind
	// Label is the alert label that names a workload of this kind ("deployment").
	Label() string
	// PodController is the kind of the controller of this kind's pods: the kind itself, or
	// an object of its own in between (a Deployment's ReplicaSet).
	PodController() schema.GroupKind
	// FromPod is the workload of pod, whose controller reference is owner (of kind
	// PodController); reads holds the notification's reads (nil: none).
	FromPod(ctx context.Context, c kube.Client, pod *corev1.Pod, owner *metav1.OwnerReference, reads *Reads) (Target, error)

	// Load reads the workload and its history; reads, when set, holds reads made for this
	// notification already.
	Load(ctx context.Context, e *Env, ns, name string, reads *Reads) (*Workload, error)
	// ResourceVersion reads the workload's current resourceVersion.
	ResourceVersion(ctx context.Context, e *Env, ns, name string) (string, error)
	// Restore writes the revision's template and the new state annotation, under the
	// precondition that the workload is still at w.ResourceVersion.
	Restore(ctx context.Context, e *Env, w *Workload, to Revision, state string, dryRun bool) error

	// Rules are the API permissions the kind's reads and writes need; the RBAC manifests
	// grant their union (Rules), as e2e/manifests checks.
	Rules() []Rule
}

// Rule is one permission a kind needs: verbs on resources of an API group.
type Rule struct {
	Group            string
	Resources, Verbs []string
}

// Rules lists the rules every kind of the registry needs.
func Rules() []Rule {
	var out []Rule
	for _, k := range registry {
		out = append(out, k.Rules()...)
	}
	return out
}

// ControllerLabeler is a Kind whose pods' controller is an object of its own (a Deployment's
// ReplicaSet), which alerts may name too.
type ControllerLabeler interface {
	// ControllerLabel is the alert label naming that object ("replicaset").
	ControllerLabel() string
	// FromController is the workload of that object, ns/name.
	FromController(ctx context.Context, c kube.Client, ns, name string, reads *Reads) (Target, error)
}

// PodNamer is a Kind whose pods' names say which workload they belong to, which the kind's
// own reads can confirm without reading the pod.
type PodNamer interface {
	// FromPodName resolves pod ns/name from its name when reads confirm it (ok). With
	// readPods, it confirms nothing but may start the reads the undo will make; wait, when
	// not nil, must be called before the lookup returns.
	FromPodName(ctx context.Context, ns, name string, reads *Reads, readPods bool) (t Target, ok bool, wait func(), err error)
	// FromGonePod resolves a pod that no longer exists, from its name and what it can
	// confirm of it; ErrNotFound when it cannot.
	FromGonePod(ctx context.Context, c kube.Client, ns, name string, reads *Reads) (Target, error)
}

// Owner is a Kind whose workloads control workloads of other kinds through objects of their
// own (a Knative Service's Revision controls a Deployment). Such a controlled workload is not
// the alert's to undo (its controller writes its template back), but its owner is: the undo,
// where it finds the controller reference on the workload it read, asks the Owner of that
// reference's kind for the workload it leads to, and acts on that instead. A controller of
// any other kind, or one the Owner cannot follow, is refused (undo.ErrControllerOwned).
type Owner interface {
	// OwnsThrough lists the kinds of controller references that lead to this kind's
	// workloads ("serving.knative.dev Revision").
	OwnsThrough() []schema.GroupKind
	// FromOwner is the workload that controller, the controller reference of a workload in
	// namespace ns, leads to; Target.Revision identifies the revision the controlled
	// workload is, Target.UID the workload. ErrUnsupportedOwner or ErrNotFound when the
	// chain of controllers leads to no workload of this kind.
	FromOwner(ctx context.Context, c kube.Client, ns string, controller *metav1.OwnerReference) (Target, error)
}

// OwnerOf returns the Owner that a controller reference of kind gk leads to.
func OwnerOf(gk schema.GroupKind) (Owner, bool) {
	for _, k := range registry {
		if o, ok := k.(Owner); ok && slices.Contains(o.OwnsThrough(), gk) {
			return o, true
		}
	}
	return nil, false
}

// Aliaser is a Kind that other labels name as well as Label: those the kind's own
// project puts on its metrics (Knative Serving's kn_service_name).
type Aliaser interface {
	// Aliases are the other labels, in the order they are looked at, after Label.
	Aliases() []string
}

// Follower is a Kind that runs workloads of other kinds without controlling them (an Argo
// Rollout whose workloadRef names a Deployment): an alert about such a workload is about
// the Follower's workload, which the undo acts on instead.
type Follower interface {
	// Follow returns the workload of this kind that runs w (ok), confirmed by its own read.
	Follow(ctx context.Context, e *Env, w *Workload) (t Target, ok bool, err error)
}

// Follow returns the workload that runs w, if a kind of the registry has one.
func Follow(ctx context.Context, e *Env, w *Workload) (Target, bool, error) {
	for _, k := range registry {
		if f, ok := k.(Follower); ok {
			if t, ok, err := f.Follow(ctx, e, w); ok || err != nil {
				return t, ok, err
			}
		}
	}
	return Target{}, false, nil
}

// Describer is a Kind whose Restore takes more than one form (an Argo Rollout is aborted
// during a rollout and undone after one): Describe says which one restoring to would take,
// for the answer and the record on the workload.
type Describer interface {
	Describe(w *Workload, to Revision) string
}

// For returns the kind of gk.
func For(gk schema.GroupKind) (Kind, bool) {
	for _, k := range registry {
		if k.GroupVersionKind().GroupKind() == gk {
			return k, true
		}
	}
	return nil, false
}

// All returns the kinds, in the registry's order.
func All() []Kind { return registry }

// ForPodController returns the kind whose pods' controller is of kind gk.
func ForPodController(gk schema.GroupKind) (Kind, bool) {
	for _, k := range registry {
		if k.PodController() == gk {
			return k, true
		}
	}
	return nil, false
}

// Names lists the kinds, "Deployment, StatefulSet, DaemonSet or Service
// (serving.knative.dev)", for messages: a kind of another group than the first kind's is
// named with its group, so a Knative Service is not read as a core Service.
func Names() string {
	var s []string
	for _, k := range registry {
		gvk := k.GroupVersionKind()
		if gvk.Group != registry[0].GroupVersionKind().Group {
			s = append(s, gvk.Kind+" ("+gvk.Group+")")
			continue
		}
		s = append(s, gvk.Kind)
	}
	return Or(s)
}

// Labels lists the labels that name a workload of some kind, "deployment, statefulset or
// daemonset", for messages.
func Labels() string {
	var s []string
	for _, k := range registry {
		s = append(s, k.Label())
	}
	return Or(s)
}

// groupVersions lists the kinds by the group and version they are read in, "apps/v1
// Deployment, StatefulSet or DaemonSet", for messages.
func groupVersions() string {
	var out []string
	var last schema.GroupVersion
	var names []string
	flush := func() {
		if len(names) > 0 {
			out = append(out, last.String()+" "+Or(names))
		}
	}
	for _, k := range registry {
		gvk := k.GroupVersionKind()
		if gvk.GroupVersion() != last {
			flush()
			last, names = gvk.GroupVersion(), nil
		}
		names = append(names, gvk.Kind)
	}
	flush()
	return strings.Join(out, " or ")
}

// Or joins words as "a, b or c".
func Or(words []string) string {
	if len(words) <= 1 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// Errors of the kinds, which package outcome classifies (through the names package undo
// and package target give them).
var (
	// ErrNotFound: the workload, or the object an alert named on the way to it, is not there.
	ErrNotFound = errors.New("workload not found")
	// ErrForeignHistory means the rollout history holds entries the workload's controller
	// cannot have made (two entries claiming one revision, say): someone else wrote them,
	// and acting on them could restore a template of their choice.
	ErrForeignHistory = errors.New("the rollout history holds entries its controller did not make")
	// ErrUnsupportedOwner: what the alert names is controlled by nothing this function can
	// roll back.
	ErrUnsupportedOwner = errors.New("not controlled by an " + groupVersions())
	// ErrTrafficPinned: the workload routes its traffic by revision name, so restoring its
	// template would not change what serves.
	ErrTrafficPinned = errors.New("the Knative Service routes its traffic to named revisions (spec.traffic), not to its latest revision, " +
		"so restoring its template would not change what serves; move spec.traffic to the revision to serve, " +
		"or set it to latestRevision: true so this function can roll the Service back")
)

// Ref names a workload: its group and kind, namespace and name.
type Ref struct {
	Group     string
	Kind      string
	Namespace string
	Name      string
}

// RefOf names the workload ns/name of kind gk.
func RefOf(gk schema.GroupKind, ns, name string) Ref {
	return Ref{Group: gk.Group, Kind: gk.Kind, Namespace: ns, Name: name}
}

func (r Ref) String() string { return r.Kind + " " + r.Namespace + "/" + r.Name }

// GroupKind is the kind of the workload r names.
func (r Ref) GroupKind() schema.GroupKind { return schema.GroupKind{Group: r.Group, Kind: r.Kind} }

// APIVersion is the apiVersion the workload's kind is read in ("" for no kind of the
// registry), as an object reference carries it.
func (r Ref) APIVersion() string {
	if k, ok := For(r.GroupKind()); ok {
		return k.GroupVersionKind().GroupVersion().String()
	}
	return ""
}

// Target is the workload an alert is about.
type Target struct {
	Ref
	// Revision, when the alert named a pod or a ReplicaSet, identifies the revision that pod
	// ran (a pod-template-hash for Deployments, a ControllerRevision name otherwise): an
	// alert about a revision that is no longer current is stale. It is empty when the alert
	// named the workload itself, or the pod is gone and its revision cannot be known.
	Revision string
	// UID is the workload's UID as the controller reference found on the way names it;
	// empty when the alert named the workload itself. The undo acts only on that object.
	UID types.UID
}
