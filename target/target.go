// Package target finds the workload an alert is about, from its labels: a Deployment,
// StatefulSet or DaemonSet named directly, or reached from a ReplicaSet or a Pod through
// controller ownership. A name is never split on "-" to guess: a Deployment a name points
// at counts only when its own ReplicaSet list confirms it (by controller UID); otherwise
// ownership decides, and an owner counts only if it is of the apps group and kind this
// function can roll back.
package target

import (
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sre-kit/alert-rollback/alert"
	"github.com/sre-kit/alert-rollback/internal/kube"
)

// The workload kinds this function can roll back, spelled as Kubernetes spells them.
const (
	Deployment  = "Deployment"
	StatefulSet = "StatefulSet"
	DaemonSet   = "DaemonSet"
)

// Errors that make an alert's target unusable. None of them is helped by a retry.
var (
	ErrNoWorkloadLabel  = errors.New("alert names no workload")
	ErrNoNamespace      = errors.New("alert has no namespace label")
	ErrInvalidName      = errors.New("invalid name")
	ErrNamespaceDenied  = errors.New("namespace not allowed")
	ErrNotFound         = errors.New("workload not found")
	ErrUnsupportedOwner = errors.New("not controlled by an apps/v1 Deployment, StatefulSet or DaemonSet")
)

// Ref names a workload.
type Ref struct {
	Kind      string
	Namespace string
	Name      string
}

func (r Ref) String() string { return r.Kind + " " + r.Namespace + "/" + r.Name }

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

// Resolver turns alert labels into Targets with as few API reads as it can: none for a
// named workload, and none of its own for a ReplicaSet or a pod of a Deployment (the
// Deployment's ReplicaSet list, which the undo needs anyway, confirms it); the pods of
// other workloads are read.
type Resolver struct {
	Client kube.Client
	// Allowed decides which namespaces may be acted in; checked before any API call.
	Allowed func(namespace string) bool
	// OwnNamespace is where a pod named without a namespace label is looked for: a pod's
	// name, with its generated suffix, cannot match a pod elsewhere by accident.
	OwnNamespace string
	// DefaultNamespace, when set, is the namespace of alerts that name a workload (not a
	// pod) without a namespace label; when empty they are refused, because a rule that
	// aggregates the namespace away would otherwise hit a same-named workload here.
	DefaultNamespace string
	// ReadPods, when set, reads every pod an alert names and follows its controller
	// reference, even when the pod's name and its Deployment's ReplicaSet list agree
	// (see fromPod): one more request per pod, and no trust in names at all.
	ReadPods bool
}

// label names, in the order they are looked at: the most precise first.
var workloadLabels = []struct{ label, kind string }{
	{"deployment", Deployment},
	{"statefulset", StatefulSet},
	{"daemonset", DaemonSet},
	{"replicaset", "ReplicaSet"},
	{"pod", "Pod"},
}

// appsOwner returns the controller of obj if it is an apps/v1 object of one of kinds: a
// CRD of another group may use the same kind name (OpenKruise's StatefulSet, say), and
// must not lead to the apps/v1 object of the same name.
func appsOwner(obj metav1.Object, kinds ...string) (*metav1.OwnerReference, error) {
	owner := metav1.GetControllerOf(obj)
	if owner == nil {
		return nil, fmt.Errorf("%w: it has no controller", ErrUnsupportedOwner)
	}
	gv, err := schema.ParseGroupVersion(owner.APIVersion)
	if err != nil || gv.Group != appsv1.GroupName {
		return nil, fmt.Errorf("%w: its controller is %s %s (apiVersion %q)", ErrUnsupportedOwner, owner.Kind, owner.Name, owner.APIVersion)
	}
	for _, k := range kinds {
		if owner.Kind == k {
			return owner, nil
		}
	}
	return nil, fmt.Errorf("%w: its controller is %s %s", ErrUnsupportedOwner, owner.Kind, owner.Name)
}

// Key identifies the workload reference in labels (the label Resolve would follow and its
// value), so alerts naming the same one are looked up once.
func Key(labels map[string]string) string {
	for _, l := range workloadLabels {
		if name := labels[l.label]; name != "" {
			return l.label + "\x00" + name
		}
	}
	return ""
}

// wrapName says why a name from an alert is no name; the name is the caller's, so it is
// clipped before it reaches an answer, a log line or an Event.
func wrapName(kind, name string, problems []string) error {
	return fmt.Errorf("%w: %s %q: %v", ErrInvalidName, kind, alert.Clip(name), problems)
}
