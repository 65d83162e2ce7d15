package undo

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// StatefulSets and DaemonSets keep their history in ControllerRevisions, whose data is a
// strategic merge patch that replaces spec.template. Their undo is that patch, as kubectl
// applies it, plus (here) the resourceVersion precondition and the state annotation.

type statefulSets struct{ u *Undoer }

func (s statefulSets) load(ctx context.Context, ns, name string) (*workload, error) {
	var sts *appsv1.StatefulSet
	err := s.u.call(ctx, func(ctx context.Context) (err error) {
		sts, err = s.u.client.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
		return err
	})
	if err != nil {
		return nil, getError("statefulset", ns, name, err)
	}
	return s.u.withHistory(ctx, sts, "StatefulSet", sts.Spec.Selector, &sts.Spec.Template)
}

func (s statefulSets) restore(ctx context.Context, w *workload, to revision, state string, dryRun bool) error {
	patch, err := revisionPatch(w, to, state)
	if err != nil {
		return err
	}
	return s.u.call(ctx, func(ctx context.Context) error {
		_, err := s.u.client.AppsV1().StatefulSets(w.ref.Namespace).Patch(ctx, w.ref.Name,
			types.StrategicMergePatchType, patch, patchOptions(dryRun))
		if err != nil {
			return fmt.Errorf("patch statefulset %s/%s: %w", w.ref.Namespace, w.ref.Name, err)
		}
		return nil
	})
}

type daemonSets struct{ u *Undoer }

func (d daemonSets) load(ctx context.Context, ns, name string) (*workload, error) {
	var ds *appsv1.DaemonSet
	err := d.u.call(ctx, func(ctx context.Context) (err error) {
		ds, err = d.u.client.AppsV1().DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
		return err
	})
	if err != nil {
		return nil, getError("daemonset", ns, name, err)
	}
	return d.u.withHistory(ctx, ds, "DaemonSet", ds.Spec.Selector, &ds.Spec.Template)
}

func (d daemonSets) restore(ctx context.Context, w *workload, to revision, state string, dryRun bool) error {
	patch, err := revisionPatch(w, to, state)
	if err != nil {
		return err
	}
	return d.u.call(ctx, func(ctx context.Context) error {
		_, err := d.u.client.AppsV1().DaemonSets(w.ref.Namespace).Patch(ctx, w.ref.Name,
			types.StrategicMergePatchType, patch, patchOptions(dryRun))
		if err != nil {
			return fmt.Errorf("patch daemonset %s/%s: %w", w.ref.Namespace, w.ref.Name, err)
		}
		return nil
	})
}

// withHistory lists the ControllerRevisions the object controls (the same fresh-enough read
// as for ReplicaSets) and returns the object as a workload.
func (u *Undoer) withHistory(ctx context.Context, obj metav1.Object, kind string, sel *metav1.LabelSelector, tmpl *corev1.PodTemplateSpec) (*workload, error) {
	ns, name := obj.GetNamespace(), obj.GetName()
	selector, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil, fmt.Errorf("%s %s/%s: selector: %w", kind, ns, name, err)
	}
	var list *appsv1.ControllerRevisionList
	err = u.call(ctx, func(ctx context.Context) (err error) {
		list, err = u.client.AppsV1().ControllerRevisions(ns).List(ctx, metav1.ListOptions{
			LabelSelector:        selector.String(),
			ResourceVersion:      obj.GetResourceVersion(),
			ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list controllerrevisions of %s %s/%s: %w", kind, ns, name, err)
	}
	w := &workload{
		ref:             refOf(kind, ns, name),
		uid:             obj.GetUID(),
		resourceVersion: obj.GetResourceVersion(),
		annotations:     obj.GetAnnotations(),
		template:        tmpl,
	}
	for i := range list.Items {
		cr := &list.Items[i]
		if !metav1.IsControlledBy(cr, obj) {
			continue
		}
		t, err := revisionTemplate(cr.Data.Raw)
		if err != nil {
			return nil, fmt.Errorf("controllerrevision %s/%s: %w", ns, cr.Name, err)
		}
		w.history = append(w.history, revision{number: cr.Revision, id: cr.Name, template: t, patch: cr.Data.Raw})
	}
	sort.Slice(w.history, func(i, j int) bool { return w.history[i].number > w.history[j].number })
	return w, nil
}

// revisionTemplate reads the pod template a ControllerRevision restores.
func revisionTemplate(raw []byte) (*corev1.PodTemplateSpec, error) {
	var data struct {
		Spec struct {
			Template json.RawMessage `json:"template"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(raw, &data); err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	var t corev1.PodTemplateSpec
	// The "$patch": "replace" directive in the template is not a field; it is ignored here.
	if err := json.Unmarshal(data.Spec.Template, &t); err != nil {
		return nil, fmt.Errorf("data.spec.template: %w", err)
	}
	return &t, nil
}

// revisionPatch is the ControllerRevision's own patch (what kubectl sends) with the
// resourceVersion precondition and the state annotation added to its metadata.
func revisionPatch(w *workload, to revision, state string) ([]byte, error) {
	var patch map[string]any
	if err := json.Unmarshal(to.patch, &patch); err != nil {
		return nil, fmt.Errorf("controllerrevision %s: %w", to.id, err)
	}
	patch["metadata"] = map[string]any{
		"resourceVersion": w.resourceVersion,
		"annotations":     map[string]string{StateAnnotation: state},
	}
	return json.Marshal(patch)
}
