package undo

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The Deployment annotations kubectl keeps from the Deployment rather than copying back
// from the ReplicaSet (k8s.io/kubectl pkg/polymorphichelpers/rollback.go annotationsToSkip);
// the controller owns them, or they describe the Deployment and not a revision.
const (
	revisionAnnotation        = "deployment.kubernetes.io/revision"
	revisionHistoryAnnotation = "deployment.kubernetes.io/revision-history"
	desiredReplicasAnnotation = "deployment.kubernetes.io/desired-replicas"
	maxReplicasAnnotation     = "deployment.kubernetes.io/max-replicas"
)

var annotationsToSkip = map[string]bool{
	corev1.LastAppliedConfigAnnotation: true,
	revisionAnnotation:                 true,
	revisionHistoryAnnotation:          true,
	desiredReplicasAnnotation:          true,
	maxReplicasAnnotation:              true,
	appsv1.DeprecatedRollbackTo:        true,
}

type deployments struct{ u *Undoer }

// load reads the Deployment and the ReplicaSets it controls: two requests. The list asks for
// data at least as new as the Deployment just read (resourceVersionMatch=NotOlderThan), which
// the API server answers from its watch cache in a few milliseconds; a plain list is a
// consistent read that waits for the cache to catch up (~70 ms after any write, measured).
// The controller creates a ReplicaSet before it records its revision on the Deployment, so
// nothing the Deployment refers to can be missing from that list.
func (d deployments) load(ctx context.Context, ns, name string) (*workload, error) {
	c := d.u.client.AppsV1()
	var dep *appsv1.Deployment
	err := d.u.call(ctx, func(ctx context.Context) (err error) {
		dep, err = c.Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		return err
	})
	if err != nil {
		return nil, getError("deployment", ns, name, err)
	}
	selector, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("deployment %s/%s: selector: %w", ns, name, err)
	}
	var list *appsv1.ReplicaSetList
	err = d.u.call(ctx, func(ctx context.Context) (err error) {
		list, err = c.ReplicaSets(ns).List(ctx, metav1.ListOptions{
			LabelSelector:        selector.String(),
			ResourceVersion:      dep.ResourceVersion,
			ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list replicasets of deployment %s/%s: %w", ns, name, err)
	}
	w := &workload{
		ref:             refOf("Deployment", ns, name),
		uid:             dep.UID,
		resourceVersion: dep.ResourceVersion,
		annotations:     dep.Annotations,
		paused:          dep.Spec.Paused,
		template:        &dep.Spec.Template,
	}
	for i := range list.Items {
		rs := &list.Items[i]
		// The selector may match ReplicaSets of others; only controlled ones are history.
		if !metav1.IsControlledBy(rs, dep) {
			continue
		}
		n, err := strconv.ParseInt(rs.Annotations[revisionAnnotation], 10, 64)
		if err != nil {
			continue // kubectl skips ReplicaSets without a readable revision too
		}
		w.history = append(w.history, revision{
			number:      n,
			id:          rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey],
			template:    &rs.Spec.Template,
			annotations: rs.Annotations,
		})
	}
	sort.Slice(w.history, func(i, j int) bool { return w.history[i].number > w.history[j].number })
	return w, nil
}

func (d deployments) resourceVersion(ctx context.Context, ns, name string) (string, error) {
	var rv string
	err := d.u.call(ctx, func(ctx context.Context) error {
		dep, err := d.u.client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			rv = dep.ResourceVersion
		}
		return err
	})
	return rv, err
}

// restore writes what kubectl writes (the revision's template without its hash label, and
// the annotations kubectl computes) plus the new state, as one JSON patch. Unlike kubectl
// it also sets metadata.resourceVersion to the one read: the API server then refuses the
// write with a conflict if anything changed the Deployment since, instead of overwriting it.
func (d deployments) restore(ctx context.Context, w *workload, to revision, state string, dryRun bool) error {
	template := to.template.DeepCopy()
	delete(template.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	patch, err := json.Marshal([]map[string]any{
		{"op": "replace", "path": "/metadata/resourceVersion", "value": w.resourceVersion},
		{"op": "replace", "path": "/spec/template", "value": template},
		{"op": "add", "path": "/metadata/annotations", "value": deploymentAnnotations(w.annotations, to.annotations, state)},
	})
	if err != nil {
		return err
	}
	return d.u.call(ctx, func(ctx context.Context) error {
		_, err := d.u.client.AppsV1().Deployments(w.ref.Namespace).Patch(ctx, w.ref.Name,
			types.JSONPatchType, patch, patchOptions(dryRun))
		if err != nil {
			return fmt.Errorf("patch deployment %s/%s: %w", w.ref.Namespace, w.ref.Name, err)
		}
		return nil
	})
}

// deploymentAnnotations computes the Deployment's annotations after the undo exactly as
// kubectl does (the skipped ones from the Deployment, the rest from the ReplicaSet), except
// for this function's own annotations: they always come from the Deployment, because the
// ReplicaSet holds a stale copy made when it was created.
func deploymentAnnotations(current, fromRS map[string]string, state string) map[string]string {
	out := map[string]string{}
	for k, v := range current {
		if annotationsToSkip[k] || strings.HasPrefix(k, AnnotationPrefix) {
			out[k] = v
		}
	}
	for k, v := range fromRS {
		if !annotationsToSkip[k] && !strings.HasPrefix(k, AnnotationPrefix) {
			out[k] = v
		}
	}
	out[StateAnnotation] = state
	return out
}
