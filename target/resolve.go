package target

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Resolve finds the workload the alert labels point at, in namespace (the alert's
// namespace label, or the function's own namespace when it has none).
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
			return r.fromReplicaSet(ctx, namespace, name, "replicaset "+name)
		default:
			// A named workload needs no read here: the undo reads it anyway, and reports
			// it as not found if it is not there.
			return Target{Ref: Ref{Kind: l.kind, Namespace: namespace, Name: name}, Via: l.label + " label"}, nil
		}
	}
	return Target{}, fmt.Errorf("%w: want one of the labels deployment, statefulset, daemonset, replicaset, pod", ErrNoWorkloadLabel)
}

func (r *Resolver) fromPod(ctx context.Context, ns, name string) (Target, error) {
	via := "pod " + name
	var pod *corev1.Pod
	err := r.call(ctx, func(ctx context.Context) (err error) {
		pod, err = r.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return err
	})
	if apierrors.IsNotFound(err) {
		return r.fromGonePod(ctx, ns, name)
	}
	if err != nil {
		return Target{}, fmt.Errorf("get pod %s/%s: %w", ns, name, err)
	}
	owner := metav1.GetControllerOf(pod)
	if owner == nil {
		return Target{}, fmt.Errorf("pod %s/%s: %w: it has no controller", ns, name, ErrUnsupportedOwner)
	}
	hash := pod.Labels[appsv1.ControllerRevisionHashLabelKey]
	switch owner.Kind {
	case "ReplicaSet":
		return r.fromReplicaSet(ctx, ns, owner.Name, via)
	case StatefulSet:
		// A StatefulSet pod's controller-revision-hash is its ControllerRevision's name.
		return Target{Ref: Ref{StatefulSet, ns, owner.Name}, Revision: hash, Via: via}, nil
	case DaemonSet:
		// A DaemonSet pod's controller-revision-hash is the hash alone; the
		// ControllerRevision is named <daemonset>-<hash>.
		rev := ""
		if hash != "" {
			rev = owner.Name + "-" + hash
		}
		return Target{Ref: Ref{DaemonSet, ns, owner.Name}, Revision: rev, Via: via}, nil
	}
	return Target{}, fmt.Errorf("pod %s/%s is controlled by %s %s: %w", ns, name, owner.Kind, owner.Name, ErrUnsupportedOwner)
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
		t, err := r.fromReplicaSet(ctx, ns, name[:strings.LastIndexByte(name, '-')], "pod "+name+" (gone)")
		if err == nil || !errors.Is(err, ErrNotFound) {
			return t, err
		}
	}
	return Target{}, fmt.Errorf("%w: pod %s/%s is gone and no Deployment's ReplicaSet owned it; for a StatefulSet or DaemonSet, add a statefulset or daemonset label to the alert", ErrNotFound, ns, name)
}

func (r *Resolver) fromReplicaSet(ctx context.Context, ns, name, via string) (Target, error) {
	var rs *appsv1.ReplicaSet
	err := r.call(ctx, func(ctx context.Context) (err error) {
		rs, err = r.Client.AppsV1().ReplicaSets(ns).Get(ctx, name, metav1.GetOptions{})
		return err
	})
	if apierrors.IsNotFound(err) {
		return Target{}, fmt.Errorf("%w: replicaset %s/%s", ErrNotFound, ns, name)
	}
	if err != nil {
		return Target{}, fmt.Errorf("get replicaset %s/%s: %w", ns, name, err)
	}
	owner := metav1.GetControllerOf(rs)
	if owner == nil || owner.Kind != Deployment {
		return Target{}, fmt.Errorf("replicaset %s/%s: %w: no Deployment controls it", ns, name, ErrUnsupportedOwner)
	}
	return Target{
		Ref:      Ref{Deployment, ns, owner.Name},
		Revision: rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey],
		Via:      via,
	}, nil
}

// call runs one API call under its own deadline.
func (r *Resolver) call(ctx context.Context, f func(context.Context) error) error {
	if r.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.Timeout)
		defer cancel()
	}
	return f(ctx)
}
