package target

import (
	"context"
	"errors"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/sre-kit/alert-rollback/internal/kinds"
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
		case l.label == podLabel:
			return r.OwnNamespace, nil
		case r.DefaultNamespace != "":
			return r.DefaultNamespace, nil
		}
		return "", fmt.Errorf("%w: a %s label without a namespace is refused (set ROLLBACK_DEFAULT_NAMESPACE to allow it)", ErrNoNamespace, l.label)
	}
	return r.OwnNamespace, nil
}

// Resolve finds the workload the alert labels point at, in namespace (see Namespace).
// Workloads are read through reads (the notification's, which the undo uses too); nil
// reads each object on the way instead.
func (r *Resolver) Resolve(ctx context.Context, namespace string, labels map[string]string, reads *kinds.Reads) (Target, error) {
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
		switch {
		case l.label == podLabel:
			return r.fromPod(ctx, namespace, name, reads)
		case l.resolve != nil:
			return l.resolve.FromController(ctx, r.Client, namespace, name, reads)
		default:
			// A named workload needs no read here: the undo reads it anyway, and reports
			// it as not found if it is not there.
			return Target{Ref: kinds.RefOf(l.kind.GroupVersionKind().GroupKind(), namespace, name)}, nil
		}
	}
	var names []string
	for _, l := range workloadLabels {
		names = append(names, l.label)
	}
	return Target{}, fmt.Errorf("%w: want one of the labels %s", ErrNoWorkloadLabel, strings.Join(names, ", "))
}

// fromPod finds the workload of the pod name. A kind whose pods' names say which workload
// they belong to may confirm that from its own reads, and the pod is not read (see
// kinds.PodNamer; ReadPods turns that off). Otherwise the pod is read and its controller
// reference decides.
func (r *Resolver) fromPod(ctx context.Context, ns, name string, reads *kinds.Reads) (Target, error) {
	for _, k := range kinds.All() {
		p, ok := k.(kinds.PodNamer)
		if !ok {
			continue
		}
		t, ok, wait, err := p.FromPodName(ctx, ns, name, reads, r.ReadPods)
		if wait != nil {
			defer wait() // nothing outlives the lookup
		}
		if ok {
			return t, err
		}
	}
	pod, err := r.Client.Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return r.fromGonePod(ctx, ns, name, reads)
	}
	if err != nil {
		return Target{}, fmt.Errorf("get pod %s/%s: %w", ns, name, err)
	}
	owner, err := kinds.ControllerAmong(pod, kinds.PodControllers()...)
	if err != nil {
		return Target{}, fmt.Errorf("pod %s/%s: %w", ns, name, err)
	}
	k, _ := kinds.ForPodController(kinds.OwnerGroupKind(owner))
	return k.FromPod(ctx, r.Client, pod, owner, reads)
}

// fromGonePod resolves a pod that no longer exists (the alert outlived it, which is common
// once a rollout replaced it), by the kinds that can tell from its name and their own reads
// (see kinds.PodNamer). The others cannot confirm a gone pod (a Job's or a bare pod's name
// looks the same), so it is refused: the answer says to name the workload in the alert.
func (r *Resolver) fromGonePod(ctx context.Context, ns, name string, reads *kinds.Reads) (Target, error) {
	err := fmt.Errorf("%w: pod %s/%s is gone", ErrNotFound, ns, name)
	var names, labels []string
	for _, k := range kinds.All() {
		p, ok := k.(kinds.PodNamer)
		if !ok {
			names, labels = append(names, k.GroupVersionKind().Kind), append(labels, k.Label())
			continue
		}
		var t Target
		if t, err = p.FromGonePod(ctx, r.Client, ns, name, reads); err == nil || !errors.Is(err, ErrNotFound) {
			return t, err
		}
	}
	if len(names) == 0 {
		return Target{}, err
	}
	return Target{}, fmt.Errorf("%w; for a %s, add a %s label to the alert", err, kinds.Or(names), kinds.Or(labels))
}
