// Package target finds the workload an alert is about, from its labels: a Deployment,
// StatefulSet or DaemonSet named directly, or reached from a ReplicaSet or a Pod through
// controller ownership. Names are never split on "-" to guess; ownership decides.
package target

import (
	"errors"
	"fmt"
	"time"

	"k8s.io/client-go/kubernetes"
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
	ErrInvalidName      = errors.New("invalid name")
	ErrNamespaceDenied  = errors.New("namespace not allowed")
	ErrNotFound         = errors.New("workload not found")
	ErrUnsupportedOwner = errors.New("not controlled by a Deployment, StatefulSet or DaemonSet")
)

// Ref names a workload.
type Ref struct {
	Kind      string
	Namespace string
	Name      string
}

func (r Ref) String() string { return r.Kind + " " + r.Namespace + "/" + r.Name }

// Target is the workload an alert is about. Revision, when the alert named a pod or a
// ReplicaSet, identifies the revision that pod ran (a pod-template-hash for Deployments, a
// ControllerRevision name otherwise): an alert about a revision that is no longer current
// is stale. It is empty when the alert named the workload itself, or the pod is gone and
// its revision cannot be known.
type Target struct {
	Ref
	Revision string
	// Via says how the workload was found, for the report ("pod web-7d4b9c-x2x7q").
	Via string
}

// Resolver turns alert labels into Targets with as few API reads as it can: none for a
// named workload, two for a pod of a Deployment (pod, ReplicaSet).
type Resolver struct {
	Client kubernetes.Interface
	// Timeout bounds each API call.
	Timeout time.Duration
	// Allowed decides which namespaces may be acted in; checked before any API call.
	Allowed func(namespace string) bool
}

// label names, in the order they are looked at: the most precise first.
var workloadLabels = []struct{ label, kind string }{
	{"deployment", Deployment},
	{"statefulset", StatefulSet},
	{"daemonset", DaemonSet},
	{"replicaset", "ReplicaSet"},
	{"pod", "Pod"},
}

func wrapName(kind, name string, problems []string) error {
	return fmt.Errorf("%w: %s %q: %v", ErrInvalidName, kind, name, problems)
}
