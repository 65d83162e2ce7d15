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

// DeploymentReader reads a Deployment and the ReplicaSets its selector matches. undo.Reads
// is one: it keeps the reads for the undo that follows, so confirming a ReplicaSet's
// Deployment from that list costs no request of its own.
type DeploymentReader interface {
	Deployment(ctx context.Context, ns, name string) (*appsv1.Deployment, []appsv1.ReplicaSet, error)
}

// Resolve finds the workload the alert labels point at, in namespace (see Namespace).
// Deployments are read through reads; nil reads each ReplicaSet on the way instead.
func (r *Resolver) Resolve(ctx context.Context, namespace string, labels map[string]string, reads DeploymentReader) (Target, error) {
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
			return r.fromPod(ctx, namespace, name, reads)
		case "ReplicaSet":
			return r.fromReplicaSet(ctx, namespace, name, "", reads)
		default:
			// A named workload needs no read here: the undo reads it anyway, and reports
			// it as not found if it is not there.
			return Target{Ref: Ref{Kind: l.kind, Namespace: namespace, Name: name}}, nil
		}
	}
	return Target{}, fmt.Errorf("%w: want one of the labels deployment, statefulset, daemonset, replicaset, pod", ErrNoWorkloadLabel)
}

// fromPod finds the workload of the pod name.
//
// A pod of a Deployment is named <replicaset>-<5 characters>, and its ReplicaSet
// <deployment>-<pod-template-hash>. The undo reads that Deployment and lists its
// ReplicaSets anyway; when the list holds a ReplicaSet of exactly the pod's name less its
// suffix, controlled by that very Deployment (by UID), the name is taken as confirmed and
// the pod is not read: the undo then costs the workload's three requests and nothing more.
// What the name cannot rule out is a Job or a bare pod named <deployment>-<hash>-<5
// characters> on purpose, hash and all; only someone who can create pods in that namespace
// can do that, and ReadPods closes it at the cost of one request per pod.
//
// Otherwise (ReadPods, a name of another shape, or one the list does not confirm) the pod
// is read and its controller reference decides. With ReadPods, the Deployment its name
// points at is read at the same time, so a pod of a Deployment still costs the round trips
// of the workload alone; that read is never trusted, and when the pod says otherwise it was
// only wasted.
func (r *Resolver) fromPod(ctx context.Context, ns, name string, reads DeploymentReader) (Target, error) {
	d, ok := deploymentOfPodName(name)
	if ok && reads != nil && !r.ReadPods {
		t, confirmed, err := ownReplicaSet(ctx, reads, ns, d, name[:strings.LastIndexByte(name, '-')], "")
		if confirmed || err != nil {
			return t, err
		}
	}
	if ok && reads != nil && r.ReadPods {
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _, _ = reads.Deployment(ctx, ns, d)
		}()
		defer func() { <-done }() // nothing outlives the lookup
	}
	pod, err := r.Client.Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return r.fromGonePod(ctx, ns, name, reads)
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
		return r.fromReplicaSet(ctx, ns, owner.Name, owner.UID, reads)
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

// templateHash is a pod-template-hash as the Deployment controller spells it: a 32-bit hash
// in the same alphabet.
var templateHash = regexp.MustCompile(`^[bcdfghjklmnpqrstvwxz2456789]{1,10}$`)

// deploymentOfPodName is the Deployment a pod's name would belong to if a ReplicaSet of a
// Deployment made it: <deployment>-<pod-template-hash>-<5 characters>. A guess only.
func deploymentOfPodName(pod string) (string, bool) {
	if !generatedSuffix.MatchString(pod) {
		return "", false
	}
	rs := pod[:strings.LastIndexByte(pod, '-')]
	i := strings.LastIndexByte(rs, '-')
	if i <= 0 || !templateHash.MatchString(rs[i+1:]) {
		return "", false
	}
	return rs[:i], true
}

// fromGonePod resolves a pod that no longer exists (the alert outlived it, which is common
// once a rollout replaced it). Its ReplicaSet is the pod name without the generated suffix,
// but that is only a guess until ownership confirms it: the ReplicaSet must exist and be
// controlled by a Deployment, and then its pod-template-hash says which revision the pod
// ran. A gone pod of a StatefulSet or DaemonSet cannot be confirmed that way (a Job's or a
// bare pod's name looks the same), so it is refused: name the workload in the alert.
func (r *Resolver) fromGonePod(ctx context.Context, ns, name string, reads DeploymentReader) (Target, error) {
	if generatedSuffix.MatchString(name) {
		t, err := r.fromReplicaSet(ctx, ns, name[:strings.LastIndexByte(name, '-')], "", reads)
		if err == nil || !errors.Is(err, ErrNotFound) {
			return t, err
		}
	}
	return Target{}, fmt.Errorf("%w: pod %s/%s is gone and no Deployment's ReplicaSet owned it; for a StatefulSet or DaemonSet, add a statefulset or daemonset label to the alert", ErrNotFound, ns, name)
}

// fromReplicaSet resolves the ReplicaSet name; uid, when set, is the UID a pod's controller
// reference gives it: a ReplicaSet of that name with another UID is not the pod's.
//
// The Deployment controller names a Deployment's ReplicaSets <deployment>-<pod-template-hash>,
// and the hash has no "-", so the name says which Deployment to read. The undo reads that
// Deployment and lists its ReplicaSets anyway; the same list (through reads) confirms the
// guess: the ReplicaSet is in it, controlled by that very Deployment (its controller
// reference carries the Deployment's UID) and, when uid is set, it is the pod's. Only then
// is the name trusted. Otherwise the ReplicaSet itself is read, and its controller
// reference decides, as if no guess had been made.
func (r *Resolver) fromReplicaSet(ctx context.Context, ns, name string, uid types.UID, reads DeploymentReader) (Target, error) {
	if i := strings.LastIndexByte(name, '-'); reads != nil && i > 0 {
		t, confirmed, err := ownReplicaSet(ctx, reads, ns, name[:i], name, uid)
		if confirmed || err != nil {
			return t, err
		}
	}
	return r.readReplicaSet(ctx, ns, name, uid)
}

// ownReplicaSet reads Deployment ns/dep through reads and reports whether its ReplicaSet
// list holds ReplicaSet rs (of UID uid, when set) controlled by it: then the Target is that
// Deployment, at rs's revision. A Deployment that is not there confirms nothing, and is no
// error.
func ownReplicaSet(ctx context.Context, reads DeploymentReader, ns, dep, rs string, uid types.UID) (Target, bool, error) {
	d, rss, err := reads.Deployment(ctx, ns, dep)
	if apierrors.IsNotFound(err) {
		return Target{}, false, nil
	}
	if err != nil {
		return Target{}, false, err
	}
	for i := range rss {
		r := &rss[i]
		if r.Name == rs && metav1.IsControlledBy(r, d) && (uid == "" || r.UID == uid) {
			return Target{
				Ref:      Ref{Deployment, ns, d.Name},
				Revision: r.Labels[appsv1.DefaultDeploymentUniqueLabelKey],
				UID:      d.UID,
			}, true, nil
		}
	}
	return Target{}, false, nil
}

// readReplicaSet reads the ReplicaSet and follows its controller reference.
func (r *Resolver) readReplicaSet(ctx context.Context, ns, name string, uid types.UID) (Target, error) {
	rs, err := r.Client.ReplicaSets(ns).Get(ctx, name, metav1.GetOptions{})
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
