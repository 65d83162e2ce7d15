package undo

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sre-kit/alert-rollback/target"
)

// StatefulSets and DaemonSets keep their history in ControllerRevisions, whose data is a
// strategic merge patch that replaces spec.template. Their undo is that patch, as kubectl
// applies it, plus (here) the resourceVersion precondition and the state annotation.

// revisionKind is a StatefulSet or a DaemonSet: the two differ only in which typed client
// reads and patches them.
type revisionKind struct {
	u    *Undoer
	kind string
	get  func(ctx context.Context, ns, name string) (metav1.Object, *metav1.LabelSelector, *corev1.PodTemplateSpec, error)
	// patch sends a strategic merge patch.
	patch func(ctx context.Context, ns, name string, data []byte, opts metav1.PatchOptions) error
}

func statefulSets(u *Undoer) revisionKind {
	c := u.client.AppsV1()
	return revisionKind{
		u: u, kind: "StatefulSet",
		get: func(ctx context.Context, ns, name string) (metav1.Object, *metav1.LabelSelector, *corev1.PodTemplateSpec, error) {
			s, err := c.StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return nil, nil, nil, err
			}
			return s, s.Spec.Selector, &s.Spec.Template, nil
		},
		patch: func(ctx context.Context, ns, name string, data []byte, opts metav1.PatchOptions) error {
			_, err := c.StatefulSets(ns).Patch(ctx, name, types.StrategicMergePatchType, data, opts)
			return err
		},
	}
}

func daemonSets(u *Undoer) revisionKind {
	c := u.client.AppsV1()
	return revisionKind{
		u: u, kind: "DaemonSet",
		get: func(ctx context.Context, ns, name string) (metav1.Object, *metav1.LabelSelector, *corev1.PodTemplateSpec, error) {
			d, err := c.DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return nil, nil, nil, err
			}
			return d, d.Spec.Selector, &d.Spec.Template, nil
		},
		patch: func(ctx context.Context, ns, name string, data []byte, opts metav1.PatchOptions) error {
			_, err := c.DaemonSets(ns).Patch(ctx, name, types.StrategicMergePatchType, data, opts)
			return err
		},
	}
}

func (k revisionKind) load(ctx context.Context, ns, name string) (*workload, error) {
	obj, sel, tmpl, err := k.get(ctx, ns, name)
	if err != nil {
		return nil, getError(strings.ToLower(k.kind), ns, name, err)
	}
	return k.u.withHistory(ctx, obj, k.kind, sel, tmpl)
}

func (k revisionKind) resourceVersion(ctx context.Context, ns, name string) (string, error) {
	obj, _, _, err := k.get(ctx, ns, name)
	if err != nil {
		return "", err
	}
	return obj.GetResourceVersion(), nil
}

func (k revisionKind) restore(ctx context.Context, w *workload, to revision, state string, dryRun bool) error {
	patch, err := revisionPatch(w, to, state)
	if err != nil {
		return err
	}
	if err := k.patch(ctx, w.ref.Namespace, w.ref.Name, patch, patchOptions(dryRun)); err != nil {
		return fmt.Errorf("patch %s %s/%s: %w", strings.ToLower(k.kind), w.ref.Namespace, w.ref.Name, err)
	}
	return nil
}

// withHistory lists the ControllerRevisions the object controls (the same fresh-enough read
// as for ReplicaSets) and returns the object as a workload.
func (u *Undoer) withHistory(ctx context.Context, obj metav1.Object, kind string, sel *metav1.LabelSelector, tmpl *corev1.PodTemplateSpec) (*workload, error) {
	ns, name := obj.GetNamespace(), obj.GetName()
	selector, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil, fmt.Errorf("%s %s/%s: selector: %w", kind, ns, name, err)
	}
	list, err := u.client.AppsV1().ControllerRevisions(ns).List(ctx, metav1.ListOptions{
		LabelSelector:        selector.String(),
		ResourceVersion:      obj.GetResourceVersion(),
		ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan,
	})
	if err != nil {
		return nil, fmt.Errorf("list controllerrevisions of %s %s/%s: %w", kind, ns, name, err)
	}
	w := &workload{
		ref:             target.Ref{Kind: kind, Namespace: ns, Name: name},
		uid:             obj.GetUID(),
		resourceVersion: obj.GetResourceVersion(),
		labels:          obj.GetLabels(),
		annotations:     obj.GetAnnotations(),
		template:        tmpl,
	}
	seen := map[int64]string{}
	for i := range list.Items {
		cr := &list.Items[i]
		if !metav1.IsControlledBy(cr, obj) {
			continue
		}
		// The controllers number their revisions uniquely; two entries with one number
		// mean someone else wrote one of them.
		if other, dup := seen[cr.Revision]; dup {
			return nil, fmt.Errorf("%w: controllerrevisions %s and %s both claim revision %d of %s %s/%s", ErrForeignHistory, other, cr.Name, cr.Revision, kind, ns, name)
		}
		seen[cr.Revision] = cr.Name
		t, err := revisionTemplate(cr.Data.Raw)
		if err != nil {
			return nil, fmt.Errorf("controllerrevision %s/%s: %w", ns, cr.Name, err)
		}
		w.history = append(w.history, revision{number: cr.Revision, id: cr.Name, template: t, patch: cr.Data.Raw, created: cr.CreationTimestamp.Time})
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
