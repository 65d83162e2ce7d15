// Package target finds the workload an alert is about, from its labels: a workload of one
// of the kinds of package kinds named directly, or reached from an object in between (a
// Deployment's ReplicaSet) or a Pod through controller ownership. A name is never split on
// "-" to guess: a workload a name points at counts only when its own reads confirm it (by
// controller UID); otherwise ownership decides, and an owner counts only if it is of a
// group and kind this function can roll back.
package target

import (
	"errors"
	"fmt"

	"github.com/sre-kit/alert-rollback/internal/alert"
	"github.com/sre-kit/alert-rollback/internal/kinds"
	"github.com/sre-kit/alert-rollback/internal/kube"
)

// Errors that make an alert's target unusable. None of them is helped by a retry.
var (
	ErrNoWorkloadLabel  = errors.New("alert names no workload")
	ErrNoNamespace      = errors.New("alert has no namespace label")
	ErrInvalidName      = errors.New("invalid name")
	ErrNamespaceDenied  = errors.New("namespace not allowed")
	ErrNotFound         = kinds.ErrNotFound
	ErrUnsupportedOwner = kinds.ErrUnsupportedOwner
)

// Ref names a workload (see kinds.Ref).
type Ref = kinds.Ref

// Target is the workload an alert is about (see kinds.Target).
type Target = kinds.Target

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

// podLabel names a pod.
const podLabel = "pod"

// labelOf is one label that names a workload, or an object on the way to one.
type labelOf struct {
	label string
	kind  kinds.Kind
	// resolve, when set, follows the named object to its workload (a Deployment's
	// ReplicaSet); when nil the label names the workload itself.
	resolve kinds.ControllerLabeler
}

// workloadLabels are the labels looked at, in order: the most precise first (every kind's
// own, then the objects in between, then pods, which Resolve handles itself).
var workloadLabels = func() []labelOf {
	var own, between []labelOf
	for _, k := range kinds.All() {
		own = append(own, labelOf{label: k.Label(), kind: k})
		if a, ok := k.(kinds.Aliaser); ok {
			for _, alias := range a.Aliases() {
				own = append(own, labelOf{label: alias, kind: k})
			}
		}
		if c, ok := k.(kinds.ControllerLabeler); ok {
			between = append(between, labelOf{label: c.ControllerLabel(), kind: k, resolve: c})
		}
	}
	return append(append(own, between...), labelOf{label: podLabel})
}()

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
