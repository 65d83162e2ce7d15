package undo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
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
	get  func(ctx context.Context, ns, name string) (*object, error)
	// patch sends a strategic merge patch.
	patch func(ctx context.Context, ns, name string, data []byte, opts metav1.PatchOptions) error
}

func statefulSets(u *Undoer) revisionKind {
	c := u.client
	return revisionKind{
		u: u, kind: "StatefulSet",
		get: func(ctx context.Context, ns, name string) (*object, error) {
			s, err := c.StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			return &object{s, s.Spec.Selector, &s.Spec.Template, s.Status.UpdateRevision}, nil
		},
		patch: func(ctx context.Context, ns, name string, data []byte, opts metav1.PatchOptions) error {
			_, err := c.StatefulSets(ns).Patch(ctx, name, types.StrategicMergePatchType, data, opts)
			return err
		},
	}
}

func daemonSets(u *Undoer) revisionKind {
	c := u.client
	return revisionKind{
		u: u, kind: "DaemonSet",
		get: func(ctx context.Context, ns, name string) (*object, error) {
			d, err := c.DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			return &object{d, d.Spec.Selector, &d.Spec.Template, ""}, nil
		},
		patch: func(ctx context.Context, ns, name string, data []byte, opts metav1.PatchOptions) error {
			_, err := c.DaemonSets(ns).Patch(ctx, name, types.StrategicMergePatchType, data, opts)
			return err
		},
	}
}

// object is what the undo needs of a StatefulSet or DaemonSet.
type object struct {
	metav1.Object
	selector *metav1.LabelSelector
	template *corev1.PodTemplateSpec
	// current names the ControllerRevision of the current template, where the object's
	// status says it (a StatefulSet's updateRevision); "" for a DaemonSet.
	current string
}

// load reads the object and its ControllerRevisions; reads is for Deployments only.
func (k revisionKind) load(ctx context.Context, ns, name string, _ *Reads) (*workload, error) {
	obj, err := k.get(ctx, ns, name)
	if err != nil {
		return nil, getError(strings.ToLower(k.kind), ns, name, err)
	}
	return k.u.withHistory(ctx, obj, k.kind)
}

func (k revisionKind) resourceVersion(ctx context.Context, ns, name string) (string, error) {
	obj, err := k.get(ctx, ns, name)
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
// as for ReplicaSets) and returns the object as a workload. Only what the object's controller
// made counts as history, and the newest entry is the object's current revision:
//   - each entry is named <object>-<its controller.kubernetes.io/hash label>, as the
//     controllers name them, and its data replaces spec.template and nothing else (an entry
//     that also set, say, spec.replicas would be applied as it is);
//   - numbers are unique (and so are templates, checked on the two the undo would use: see
//     decide), so two entries with one mean someone else wrote one of them;
//   - the current revision is the one the object's status names (a StatefulSet's
//     updateRevision) or, for a DaemonSet, the one holding its template; entries numbered
//     above it are not history (someone wrote them, or the list ran ahead of the read).
func (u *Undoer) withHistory(ctx context.Context, obj *object, kind string) (*workload, error) {
	ns, name := obj.GetNamespace(), obj.GetName()
	selector, err := metav1.LabelSelectorAsSelector(obj.selector)
	if err != nil {
		return nil, fmt.Errorf("%s %s/%s: selector: %w", kind, ns, name, err)
	}
	list, err := u.client.ControllerRevisions(ns).List(ctx, metav1.ListOptions{
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
		generation:      obj.GetGeneration(),
		resourceVersion: obj.GetResourceVersion(),
		labels:          obj.GetLabels(),
		annotations:     obj.GetAnnotations(),
		controller:      metav1.GetControllerOf(obj),
		template:        obj.template,
	}
	foreign := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s of %s %s/%s", ErrForeignHistory, fmt.Sprintf(format, args...), kind, ns, name)
	}
	seen := map[int64]string{}
	for i := range list.Items {
		cr := &list.Items[i]
		if !metav1.IsControlledBy(cr, obj) {
			continue
		}
		if hash := cr.Labels[hashLabel(kind)]; hash == "" || cr.Name != revisionName(kind, name, hash) {
			return nil, foreign("controllerrevision %s is not named and labelled as the controller names its revisions", cr.Name)
		}
		if other, dup := seen[cr.Revision]; dup {
			return nil, foreign("controllerrevisions %s and %s both claim revision %d", other, cr.Name, cr.Revision)
		}
		seen[cr.Revision] = cr.Name
		t, err := revisionTemplate(cr.Data.Raw)
		if err != nil {
			return nil, foreign("controllerrevision %s: %v", cr.Name, err)
		}
		w.history = append(w.history, revision{number: cr.Revision, id: cr.Name, template: t, patch: cr.Data.Raw, created: cr.CreationTimestamp.Time})
	}
	sort.Slice(w.history, func(i, j int) bool { return w.history[i].number > w.history[j].number })
	cur := slices.IndexFunc(w.history, func(r revision) bool {
		if obj.current != "" {
			return r.id == obj.current
		}
		return equalIgnoreHash(r.template, obj.template)
	})
	switch {
	case cur > 0:
		w.ahead = true
		w.history = w.history[cur:]
	case cur < 0 && obj.current != "" && len(w.history) > 0:
		return nil, foreign("no controllerrevision holds its current revision %s", obj.current)
	}
	// cur < 0 otherwise: the controller has not recorded the current template yet, and the
	// undo answers that a retry may help (ErrRolloutPending).
	return w, nil
}

// hashLabel is the label holding a ControllerRevision's hash, as each controller writes it:
// the StatefulSet controller through k8s.io/kubernetes/pkg/controller/history, the
// DaemonSet controller with the label its pods carry too.
func hashLabel(kind string) string {
	if kind == "StatefulSet" {
		return "controller.kubernetes.io/hash"
	}
	return appsv1.ControllerRevisionHashLabelKey // "controller-revision-hash"
}

// revisionName is the name the controller of kind gives the revision of object with hash:
// <object>-<hash>, the StatefulSet controller cutting the object's name to 223 bytes.
func revisionName(kind, object, hash string) string {
	if kind == "StatefulSet" && len(object) > 223 {
		object = object[:223]
	}
	return object + "-" + hash
}

// revisionTemplate reads the pod template a ControllerRevision restores. Its data must be
// what the controllers write, {"spec":{"template":{...,"$patch":"replace"}}}: the patch is
// applied as it is, so anything else in it would change more than the template.
func revisionTemplate(raw []byte) (*corev1.PodTemplateSpec, error) {
	var data map[string]map[string]json.RawMessage
	if err := json.Unmarshal(raw, &data); err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	spec, ok := data["spec"]
	if len(data) != 1 || !ok || len(spec) != 1 || spec["template"] == nil {
		return nil, errors.New("data changes more than spec.template")
	}
	var t corev1.PodTemplateSpec
	// The "$patch": "replace" directive in the template is not a field; it is ignored here.
	if err := json.Unmarshal(spec["template"], &t); err != nil {
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
