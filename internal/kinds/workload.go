package kinds

import (
	"fmt"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/lru"

	"github.com/sre-kit/alert-rollback/internal/kube"
)

// The annotations this function owns on a workload.
const (
	// AnnotationPrefix starts every annotation this function owns. They are never copied
	// back from an old revision: they always come from the workload's current state.
	AnnotationPrefix = "alert-rollback.dev/"
	// StateAnnotation holds the undo's state (package undo) as JSON. Restore writes it in
	// the same patch as the undo, under the same resourceVersion precondition.
	StateAnnotation = AnnotationPrefix + "state"
)

// Env is what the kinds read and write through: the client, and what one process
// remembers between notifications. It is safe for concurrent use.
type Env struct {
	Client kube.Client
	// selectors remembers the selectors of the Deployments read (see readDeployment),
	// bounded: a forgotten one costs a round trip, nothing else.
	selectors *lru.Cache
}

// selectorCapacity bounds the Deployment selectors remembered: a few hundred bytes each.
const selectorCapacity = 1024

// NewEnv returns an Env acting through client.
func NewEnv(client kube.Client) *Env {
	return &Env{Client: client, selectors: lru.New(selectorCapacity)}
}

// Workload is what the undo needs to know of a workload, whatever its kind.
type Workload struct {
	Ref             Ref
	UID             types.UID
	Generation      int64
	ResourceVersion string
	Labels          map[string]string
	Annotations     map[string]string
	Paused          bool
	// Blocked, when set, is why the kind will not undo this workload as it is now (a
	// Knative Service whose traffic is pinned to named revisions: ErrTrafficPinned). The
	// undo refuses with it where it refuses a paused workload.
	Blocked error
	// Controller is the workload's controller reference, if another object controls it.
	Controller *metav1.OwnerReference
	Template   *corev1.PodTemplateSpec
	// History is newest first.
	History []Revision
	// Ahead is set when the history holds entries newer than the workload's current
	// revision: read after a change, or written by someone else.
	Ahead bool
	// object is the object as read, for the kind's RolloutStatus (shared: never changed).
	object any
	// Peers are the controllers, other than the workload, of objects its history read
	// found with it (an Argo Rollout's ReplicaSets that a Deployment's selector matches when
	// the Rollout runs the Deployment's template through workloadRef); see Follower.
	Peers []metav1.OwnerReference
	// Own is what the kind read for its Restore beyond this (an Argo Rollout's status).
	Own any
	// Also are the other objects the kind's Restore may write for this workload (an Argo
	// Rollout's workloadRef Deployment), as read: the undo holds each to the guards it holds
	// the workload to (another controller, the opt-out, GitOps), so what an alert reaches
	// through a workload is never more than what it could reach by naming that object.
	Also []Object
}

// Object is an object other than the workload that a Restore writes (Workload.Also).
type Object struct {
	Ref                 Ref
	UID                 types.UID
	Controller          *metav1.OwnerReference
	Labels, Annotations map[string]string
}

// Revision is one entry of a workload's rollout history, whatever its kind.
type Revision struct {
	Number int64
	// ID identifies the template: pod-template-hash, or the ControllerRevision's name.
	ID       string
	Template *corev1.PodTemplateSpec
	// Annotations are the ReplicaSet's, which kubectl copies back onto a Deployment.
	Annotations map[string]string
	// Patch is a ControllerRevision's data: the strategic merge patch that restores it.
	Patch []byte
	// Created is when the entry was made: for the current revision, when its rollout
	// started (or, for a revision rolled back to, earlier).
	Created time.Time
	// Earlier are the numbers the entry held before it was made current again, oldest
	// first, where the kind records them (a ReplicaSet's revision-history); nil otherwise.
	Earlier []int64
}

// EqualIgnoreHash compares pod templates as kubectl does, ignoring the pod-template-hash
// label: the Deployment's own template never carries it, its ReplicaSets' always do, and
// the hash of one template changes when the API adds a field.
func EqualIgnoreHash(a, b *corev1.PodTemplateSpec) bool {
	a, b = a.DeepCopy(), b.DeepCopy()
	delete(a.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	delete(b.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	return equality.Semantic.DeepEqual(a, b)
}

// getError wraps a failed read of the workload; a missing workload is a refusal.
func getError(kind, ns, name string, err error) error {
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%w: %s %s/%s", ErrNotFound, kind, ns, name)
	}
	return fmt.Errorf("get %s %s/%s: %w", kind, ns, name, err)
}

func patchOptions(dryRun bool) metav1.PatchOptions {
	opts := metav1.PatchOptions{FieldManager: "alert-rollback"}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	return opts
}

// ControllerAmong returns obj's controller reference if it is of one of the kinds gks: a
// CRD of another group may use the same kind name (OpenKruise's StatefulSet, say), and must
// not lead to the object of that name in the kinds' group.
func ControllerAmong(obj metav1.Object, gks ...schema.GroupKind) (*metav1.OwnerReference, error) {
	owner := metav1.GetControllerOf(obj)
	if owner == nil {
		return nil, fmt.Errorf("%w: it has no controller", ErrUnsupportedOwner)
	}
	gv, err := schema.ParseGroupVersion(owner.APIVersion)
	if err != nil || !slices.ContainsFunc(gks, func(gk schema.GroupKind) bool { return gk.Group == gv.Group }) {
		return nil, fmt.Errorf("%w: its controller is %s %s (apiVersion %q)", ErrUnsupportedOwner, owner.Kind, owner.Name, owner.APIVersion)
	}
	if slices.Contains(gks, schema.GroupKind{Group: gv.Group, Kind: owner.Kind}) {
		return owner, nil
	}
	return nil, fmt.Errorf("%w: its controller is %s %s", ErrUnsupportedOwner, owner.Kind, owner.Name)
}

// PodControllers lists the kinds of the controllers of the registry's kinds' pods.
func PodControllers() []schema.GroupKind {
	var out []schema.GroupKind
	for _, k := range registry {
		out = append(out, k.PodController())
	}
	return out
}

// OwnerGroupKind is the kind of the object an owner reference names.
func OwnerGroupKind(owner *metav1.OwnerReference) schema.GroupKind {
	gv, _ := schema.ParseGroupVersion(owner.APIVersion)
	return schema.GroupKind{Group: gv.Group, Kind: owner.Kind}
}
