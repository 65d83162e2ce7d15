package kinds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/sre-kit/alert-rollback/internal/kube"
)

// StatefulSets and DaemonSets keep their history in ControllerRevisions, whose data is a
// strategic merge patch that replaces spec.template. Their undo is that patch, as kubectl
// applies it, plus (here) the resourceVersion precondition and the state annotation.

// revisionKind is what a kind keeping its history in ControllerRevisions tells the shared
// code here: how to read and patch its objects, and how its controller labels and names
// the revisions.
type revisionKind struct {
	gk  schema.GroupKind
	get func(ctx context.Context, c kube.Client, ns, name string) (*object, error)
	// patch sends a strategic merge patch.
	patch func(ctx context.Context, c kube.Client, ns, name string, data []byte, opts metav1.PatchOptions) error
	// hashLabel is the label of a ControllerRevision's hash, as the controller writes it.
	hashLabel string
	// maxName, when not 0, is the length the controller cuts the object's name to in its
	// revisions' names.
	maxName int
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

// load reads the object and its ControllerRevisions.
func (k revisionKind) load(ctx context.Context, e *Env, ns, name string) (*Workload, error) {
	obj, err := k.get(ctx, e.Client, ns, name)
	if err != nil {
		return nil, getError(strings.ToLower(k.gk.Kind), ns, name, err)
	}
	return k.withHistory(ctx, e, obj)
}

func (k revisionKind) resourceVersion(ctx context.Context, e *Env, ns, name string) (string, error) {
	obj, err := k.get(ctx, e.Client, ns, name)
	if err != nil {
		return "", err
	}
	return obj.GetResourceVersion(), nil
}

func (k revisionKind) writeState(ctx context.Context, e *Env, w *Workload, state string, dryRun bool) error {
	patch, err := statePatch(w, state)
	if err != nil {
		return err
	}
	if err := k.patch(ctx, e.Client, w.Ref.Namespace, w.Ref.Name, patch, patchOptions(dryRun)); err != nil {
		return fmt.Errorf("patch %s %s/%s: %w", strings.ToLower(k.gk.Kind), w.Ref.Namespace, w.Ref.Name, err)
	}
	return nil
}

func (k revisionKind) restore(ctx context.Context, e *Env, w *Workload, to Revision, state string, dryRun bool) error {
	patch, err := revisionPatch(w, to, state)
	if err != nil {
		return err
	}
	if err := k.patch(ctx, e.Client, w.Ref.Namespace, w.Ref.Name, patch, patchOptions(dryRun)); err != nil {
		return fmt.Errorf("patch %s %s/%s: %w", strings.ToLower(k.gk.Kind), w.Ref.Namespace, w.Ref.Name, err)
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
func (k revisionKind) withHistory(ctx context.Context, e *Env, obj *object) (*Workload, error) {
	ns, name, kind := obj.GetNamespace(), obj.GetName(), k.gk.Kind
	selector, err := metav1.LabelSelectorAsSelector(obj.selector)
	if err != nil {
		return nil, fmt.Errorf("%s %s/%s: selector: %w", kind, ns, name, err)
	}
	list, err := e.Client.ControllerRevisions(ns).List(ctx, metav1.ListOptions{
		LabelSelector:        selector.String(),
		ResourceVersion:      obj.GetResourceVersion(),
		ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan,
	})
	if err != nil {
		return nil, fmt.Errorf("list controllerrevisions of %s %s/%s: %w", kind, ns, name, err)
	}
	w := &Workload{
		Ref:             RefOf(k.gk, ns, name),
		UID:             obj.GetUID(),
		Generation:      obj.GetGeneration(),
		ResourceVersion: obj.GetResourceVersion(),
		Labels:          obj.GetLabels(),
		Annotations:     obj.GetAnnotations(),
		Controller:      metav1.GetControllerOf(obj),
		Template:        obj.template,
		object:          obj.Object,
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
		if hash := cr.Labels[k.hashLabel]; hash == "" || cr.Name != k.revisionName(name, hash) {
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
		w.History = append(w.History, Revision{Number: cr.Revision, ID: cr.Name, Template: t, Patch: cr.Data.Raw, Created: cr.CreationTimestamp.Time})
	}
	sort.Slice(w.History, func(i, j int) bool { return w.History[i].Number > w.History[j].Number })
	cur := slices.IndexFunc(w.History, func(r Revision) bool {
		if obj.current != "" {
			return r.ID == obj.current
		}
		return EqualIgnoreHash(r.Template, obj.template)
	})
	switch {
	case cur > 0:
		w.Ahead = true
		w.History = w.History[cur:]
	case cur < 0 && obj.current != "" && len(w.History) > 0:
		return nil, foreign("no controllerrevision holds its current revision %s", obj.current)
	}
	// cur < 0 otherwise: the controller has not recorded the current template yet, and the
	// undo answers that a retry may help (ErrRolloutPending).
	return w, nil
}

// revisionName is the name the controller gives the revision of object with hash:
// <object>-<hash>, the object's name cut to maxName bytes where the controller cuts it.
func (k revisionKind) revisionName(object, hash string) string {
	if k.maxName > 0 && len(object) > k.maxName {
		object = object[:k.maxName]
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
func revisionPatch(w *Workload, to Revision, state string) ([]byte, error) {
	var patch map[string]any
	if err := json.Unmarshal(to.Patch, &patch); err != nil {
		return nil, fmt.Errorf("controllerrevision %s: %w", to.ID, err)
	}
	patch["metadata"] = map[string]any{
		"resourceVersion": w.ResourceVersion,
		"annotations":     map[string]string{StateAnnotation: state},
	}
	return json.Marshal(patch)
}
