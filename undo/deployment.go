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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sre-kit/alert-rollback/target"
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

// load reads the Deployment and the ReplicaSets it controls (see readDeployment), or takes
// them from reads when they were read for this notification already.
//
// The history is what the Deployment controller made, and nothing else: ReplicaSets it
// controls (owner UID), named <deployment>-<pod-template-hash> with that hash on their
// template, each revision number claimed once, none newer than the revision the Deployment
// itself records (deployment.kubernetes.io/revision), which is the current one.
func (d deployments) load(ctx context.Context, ns, name string, reads *Reads) (*workload, error) {
	var (
		dep *appsv1.Deployment
		rss []appsv1.ReplicaSet
		err error
	)
	if reads != nil {
		dep, rss, err = reads.Deployment(ctx, ns, name)
	} else {
		dep, rss, err = d.u.readDeployment(ctx, ns, name)
	}
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("%w: deployment %s/%s", ErrNotFound, ns, name)
	}
	if err != nil {
		return nil, err
	}
	w := &workload{
		ref:             target.Ref{Kind: target.Deployment, Namespace: ns, Name: name},
		uid:             dep.UID,
		generation:      dep.Generation,
		resourceVersion: dep.ResourceVersion,
		labels:          dep.Labels,
		annotations:     dep.Annotations,
		paused:          dep.Spec.Paused,
		controller:      metav1.GetControllerOf(dep),
		template:        &dep.Spec.Template,
	}
	// 0 when the controller has recorded no revision yet: then nothing is history.
	current, _ := strconv.ParseInt(dep.Annotations[revisionAnnotation], 10, 64)
	// The selector may match ReplicaSets of others; only controlled ones are history.
	var controlled []*appsv1.ReplicaSet
	// retired are the numbers ReplicaSets held before they were made current again, as their
	// revision-history lists them. The controller numbers a revision past every ReplicaSet it
	// has, so it never hands out such a number again while the ReplicaSet that held it is
	// there: another ReplicaSet claiming one was written by someone else, after the number
	// was freed (by an undo of this function, say).
	retired := map[int64]string{}
	for i := range rss {
		if rs := &rss[i]; metav1.IsControlledBy(rs, dep) {
			controlled = append(controlled, rs)
			for _, n := range revisionHistory(rs.Annotations) {
				retired[n] = rs.Name
			}
		}
	}
	seen := map[int64]string{}
	for _, rs := range controlled {
		n, err := strconv.ParseInt(rs.Annotations[revisionAnnotation], 10, 64)
		if err != nil {
			continue // kubectl skips ReplicaSets without a readable revision too
		}
		hash := rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
		if hash == "" || rs.Name != name+"-"+hash || rs.Spec.Template.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != hash {
			return nil, fmt.Errorf("%w: replicaset %s/%s is not named and labelled as the Deployment controller names its ReplicaSets", ErrForeignHistory, ns, rs.Name)
		}
		if other, dup := seen[n]; dup {
			return nil, fmt.Errorf("%w: replicasets %s and %s both claim revision %d of deployment %s/%s", ErrForeignHistory, other, rs.Name, n, ns, name)
		}
		if other, ok := retired[n]; ok {
			return nil, fmt.Errorf("%w: replicaset %s claims revision %d of deployment %s/%s, which replicaset %s held before it was made current again (its %s)",
				ErrForeignHistory, rs.Name, n, ns, name, other, revisionHistoryAnnotation)
		}
		seen[n] = rs.Name
		if n > current {
			// Newer than the Deployment read: the history was read after a change, or
			// someone wrote it. Either way it is not this Deployment's history yet.
			w.ahead = true
			continue
		}
		w.history = append(w.history, revision{
			number:      n,
			id:          hash,
			template:    &rs.Spec.Template,
			annotations: rs.Annotations,
			created:     rs.CreationTimestamp.Time,
		})
	}
	sort.Slice(w.history, func(i, j int) bool { return w.history[i].number > w.history[j].number })
	if len(w.history) > 0 && w.history[0].number != current {
		// The current revision's ReplicaSet is not in the list: not made yet (the list
		// is at least as new as the Deployment, so it is not that) or deleted by hand.
		return nil, fmt.Errorf("%w: no replicaset of deployment %s/%s holds its current revision %d", ErrForeignHistory, ns, name, current)
	}
	return w, nil
}

// revisionHistory reads a ReplicaSet's revision-history annotation: the numbers it held
// before, oldest first, as the controller appends them. What does not parse is left out.
func revisionHistory(annotations map[string]string) []int64 {
	var out []int64
	for _, f := range strings.Split(annotations[revisionHistoryAnnotation], ",") {
		if n, err := strconv.ParseInt(f, 10, 64); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func (d deployments) resourceVersion(ctx context.Context, ns, name string) (string, error) {
	dep, err := d.u.client.Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	return dep.ResourceVersion, nil
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
	_, err = d.u.client.Deployments(w.ref.Namespace).Patch(ctx, w.ref.Name, types.JSONPatchType, patch, patchOptions(dryRun))
	if err != nil {
		return fmt.Errorf("patch deployment %s/%s: %w", w.ref.Namespace, w.ref.Name, err)
	}
	return nil
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
