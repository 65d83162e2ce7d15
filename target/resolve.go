package target

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Namespace is the namespace the alert labels are about: their namespace label; else, for a
// pod, the function's own; else DefaultNamespace if set.
func (r *Resolver) Namespace(labels map[string]string) (string, error) {
	if ns := labels["namespace"]; ns != "" {
		return ns, nil
	}
	for _, l := range workloadLabels {
		if labels[l.label] == "" {
			continue
		}
		switch {
		case l.kind == "Pod":
			return r.OwnNamespace, nil
		case r.DefaultNamespace != "":
			return r.DefaultNamespace, nil
		}
		return "", fmt.Errorf("%w: a %s label without a namespace is refused (set ROLLBACK_DEFAULT_NAMESPACE to allow it)", ErrNoNamespace, l.label)
	}
	return r.OwnNamespace, nil
}

// Resolve finds the workload the alert labels point at, in namespace (see Namespace).
func (r *Resolver) Resolve(ctx context.Context, namespace string, labels map[string]string) (Target, error) {
	if errs := validation.IsDNS1123Label(namespace); len(errs) > 0 {
		return Target{}, wrapName("namespace", namespace, errs)
	}
	if r.Allowed != nil && !r.Allowed(namespace) {
		return Target{}, fmt.Errorf("%w: %q (set ROLLBACK_NAMESPACES to allow it)", ErrNamespaceDenied, namespace)
	}
	for _, l := range workloadLabels {
		name, ok := labels[l.label]
		if !ok || name == "" {
			continue
		}
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			return Target{}, wrapName(l.label, name, errs)
		}
		switch l.kind {
		case "Pod":
			return r.fromPod(ctx, namespace, name)
		case "ReplicaSet":
			return r.fromReplicaSet(ctx, namespace, name, "")
		default:
			// A named workload needs no read here: the undo reads it anyway, and reports
			// it as not found if it is not there.
			return Target{Ref: Ref{Kind: l.kind, Namespace: namespace, Name: name}}, nil
		}
	}
	return Target{}, fmt.Errorf("%w: want one of the labels deployment, statefulset, daemonset, replicaset, pod", ErrNoWorkloadLabel)
}

func (r *Resolver) fromPod(ctx context.Context, ns, name string) (Target, error) {
	pod, err := r.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return r.fromGonePod(ctx, ns, name)
	}
	if err != nil {
		return Target{}, fmt.Errorf("get pod %s/%s: %w", ns, name, err)
	}
	owner, err := appsOwner(pod, "ReplicaSet", StatefulSet, DaemonSet)
	if err != nil {
		return Target{}, fmt.Errorf("pod %s/%s: %w", ns, name, err)
	}
	hash := pod.Labels[appsv1.ControllerRevisionHashLabelKey]
	switch owner.Kind {
	case "ReplicaSet":
		return r.fromReplicaSet(ctx, ns, owner.Name, owner.UID)
	case StatefulSet:
		// A StatefulSet pod's controller-revision-hash is its ControllerRevision's name.
		return Target{Ref: Ref{StatefulSet, ns, owner.Name}, Revision: hash, UID: owner.UID}, nil
	}
	// A DaemonSet pod's controller-revision-hash is the hash alone; the ControllerRevision
	// is named <daemonset>-<hash>.
	rev := ""
	if hash != "" {
		rev = owner.Name + "-" + hash
	}
	return Target{Ref: Ref{DaemonSet, ns, owner.Name}, Revision: rev, UID: owner.UID}, nil
}

// generatedSuffix is what the ReplicaSet controller appends to a ReplicaSet's name for a
// pod: "-" and five characters from apimachinery's rand alphabet.
var generatedSuffix = regexp.MustCompile(`-[bcdfghjklmnpqrstvwxz2456789]{5}$`)

// fromGonePod resolves a pod that no longer exists (the alert outlived it, which is common
// once a rollout replaced it). Its ReplicaSet is the pod name without the generated suffix,
// but that is only a guess until ownership confirms it: the ReplicaSet must exist and be
// controlled by a Deployment, and then its pod-template-hash says which revision the pod
// ran. A gone pod of a StatefulSet or DaemonSet cannot be confirmed that way (a Job's or a
// bare pod's name looks the same), so it is refused: name the workload in the alert.
func (r *Resolver) fromGonePod(ctx context.Context, ns, name string) (Target, error) {
	if generatedSuffix.MatchString(name) {
		t, err := r.fromReplicaSet(ctx, ns, name[:strings.LastIndexByte(name, '-')], "")
		if err == nil || !errors.Is(err, ErrNotFound) {
			return t, err
		}
	}
	return Target{}, fmt.Errorf("%w: pod %s/%s is gone and no Deployment's ReplicaSet owned it; for a StatefulSet or DaemonSet, add a statefulset or daemonset label to the alert", ErrNotFound, ns, name)
}

// fromReplicaSet resolves the ReplicaSet name; uid, when set, is the UID a pod's controller
// reference gives it: a ReplicaSet of that name with another UID is not the pod's.
func (r *Resolver) fromReplicaSet(ctx context.Context, ns, name string, uid types.UID) (Target, error) {
	rs, err := r.Client.AppsV1().ReplicaSets(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || err == nil && uid != "" && rs.UID != uid {
		return Target{}, fmt.Errorf("%w: replicaset %s/%s", ErrNotFound, ns, name)
	}
	if err != nil {
		return Target{}, fmt.Errorf("get replicaset %s/%s: %w", ns, name, err)
	}
	owner, err := appsOwner(rs, Deployment)
	if err != nil {
		return Target{}, fmt.Errorf("replicaset %s/%s: %w", ns, name, err)
	}
	return Target{
		Ref:      Ref{Deployment, ns, owner.Name},
		Revision: rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey],
		UID:      owner.UID,
	}, nil
}
