package kinds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"

	"github.com/sre-kit/alert-rollback/internal/kube"
)

// Rollout is the Argo Rollouts Rollout (argoproj.io/v1alpha1), read and written through the
// dynamic client. Like a Deployment, its history is the ReplicaSets it controls, numbered by
// rollout.argoproj.io/revision and told apart by their rollouts-pod-template-hash; its pods'
// controller is one of those ReplicaSets. What the undo does depends on where the rollout is
// (see Describe): during a rollout it is aborted, after full promotion undone.
var Rollout = rollout{}.GroupVersionKind().GroupKind()

// rollouts is the Rollout's resource, for the dynamic client.
var rollouts = rollout{}.GroupVersionKind().GroupVersion().WithResource("rollouts")

// The labels and annotations the Argo Rollouts controller writes (its utils/annotations and
// the rollouts v1alpha1 types), the same in meaning as the Deployment controller's.
const (
	rolloutHashLabel                 = "rollouts-pod-template-hash"
	rolloutRevisionAnnotation        = "rollout.argoproj.io/revision"
	rolloutRevisionHistoryAnnotation = "rollout.argoproj.io/revision-history"
)

// abortPatch is what `kubectl argo rollouts abort` sends to the status subresource
// (pkg/kubectl-argo-rollouts/cmd/abort), with the resourceVersion read as a precondition.
const abortPatch = `{"metadata":{"resourceVersion":%q},"status":{"abort":true}}`

type rollout struct{}

func (rollout) GroupVersionKind() schema.GroupVersionKind {
	return schema.GroupVersionKind{Group: "argoproj.io", Version: "v1alpha1", Kind: "Rollout"}
}

// Rules: the Rollout is read and patched (its template, the state annotation), its status
// patched to abort; its ReplicaSets are listed for the history and read by name when an
// alert names one; the Deployment a workloadRef names is read for its template and patched
// to undo.
func (rollout) Rules() []Rule {
	return []Rule{
		{Group: Rollout.Group, Resources: []string{"rollouts"}, Verbs: []string{"get", "patch"}},
		{Group: Rollout.Group, Resources: []string{"rollouts/status"}, Verbs: []string{"patch"}},
		{Group: replicaSet.Group, Resources: []string{"replicasets"}, Verbs: []string{"get", "list"}},
		{Group: Deployment.Group, Resources: []string{"deployments"}, Verbs: []string{"get", "patch"}},
	}
}

func (rollout) Label() string                   { return "rollout" }
func (rollout) PodController() schema.GroupKind { return replicaSet }

func (rollout) revisionOf(rs *appsv1.ReplicaSet) string { return rs.Labels[rolloutHashLabel] }

// FromPod is the Rollout of a pod whose controller is ReplicaSet owner: the ReplicaSet's
// controller decides (see readReplicaSet).
func (rollout) FromPod(ctx context.Context, c kube.Client, pod *corev1.Pod, owner *metav1.OwnerReference, reads *Reads) (Target, error) {
	return fromReplicaSet(ctx, c, pod.Namespace, owner.Name, owner.UID, reads)
}

// rolloutObject is what is read of a Rollout, decoded from the unstructured object.
type rolloutObject struct {
	Meta metav1.ObjectMeta `json:"metadata"`
	Spec struct {
		Selector    *metav1.LabelSelector `json:"selector"`
		Paused      bool                  `json:"paused"`
		WorkloadRef *struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Name       string `json:"name"`
		} `json:"workloadRef"`
	} `json:"spec"`
	Status struct {
		Abort                      bool   `json:"abort"`
		CurrentPodHash             string `json:"currentPodHash"`
		StableRS                   string `json:"stableRS"`
		ObservedGeneration         string `json:"observedGeneration"`
		WorkloadObservedGeneration string `json:"workloadObservedGeneration"`
	} `json:"status"`
}

// rolloutState is what Restore and Describe need of the Rollout read (Workload.Own).
type rolloutState struct {
	// stable is the stable ReplicaSet's hash while a rollout is under way (not fully
	// promoted: status.stableRS differs from status.currentPodHash); empty otherwise.
	stable string
	// deployment and its resourceVersion, when the template comes from a workloadRef.
	deployment, deploymentRV string
	// observed: the controller has seen the Rollout's spec and its workloadRef's (Argo's own
	// test: observedGeneration at least the generation, or not a number).
	observed bool
	// stableAvailable counts the stable ReplicaSet's available pods.
	stableAvailable int32
}

func (rollout) dynamic(e *Env, ns string) (dynamic.ResourceInterface, error) {
	d := e.Client.Dynamic()
	if d == nil {
		return nil, errors.New("no dynamic client")
	}
	return d.Resource(rollouts).Namespace(ns), nil
}

func (r rollout) get(ctx context.Context, e *Env, ns, name string) (*unstructured.Unstructured, *rolloutObject, error) {
	ri, err := r.dynamic(e, ns)
	if err != nil {
		return nil, nil, err
	}
	u, err := ri.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, nil, getError("rollout", ns, name, err)
	}
	var ro rolloutObject
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &ro); err != nil {
		return nil, nil, fmt.Errorf("rollout %s/%s: %w", ns, name, err)
	}
	return u, &ro, nil
}

// Load reads the Rollout, the template it runs (its own, or the workloadRef Deployment's)
// and the ReplicaSets it controls. The history is checked as the Deployment's is: what the
// controller made, and nothing else (see deployment.Load).
//
// The Rollout's template is not defaulted by the API server, its ReplicaSets' are, so they
// are compared as `kubectl argo rollouts undo` compares them: the Rollout's template must be
// contained in the ReplicaSet's (equality.Semantic.DeepDerivative). The Workload's Template
// is then that ReplicaSet's, so the undo's guards compare like with like. Until the
// controller has observed the current spec, the Rollout's own template stands, which
// matches no revision: the rollout is pending.
//
// During a rollout the previous revision is the stable one, which an abort brings back:
// the history reads current, stable, then what is older than the stable revision. After an
// abort, the stable revision is what serves.
func (r rollout) Load(ctx context.Context, e *Env, ns, name string, _ *Reads) (*Workload, error) {
	u, ro, err := r.get(ctx, e, ns, name)
	if err != nil {
		return nil, err
	}
	w := &Workload{
		Ref:             RefOf(Rollout, ns, name),
		UID:             ro.Meta.UID,
		Generation:      ro.Meta.Generation,
		ResourceVersion: ro.Meta.ResourceVersion,
		Labels:          ro.Meta.Labels,
		Annotations:     ro.Meta.Annotations,
		Paused:          ro.Spec.Paused,
		Controller:      metav1.GetControllerOf(&ro.Meta),
	}
	own := &rolloutState{}
	w.Own, w.object = own, u
	observed := observedAtLeast(ro.Status.ObservedGeneration, ro.Meta.Generation)
	template, _, _ := unstructured.NestedMap(u.Object, "spec", "template")
	if ref := ro.Spec.WorkloadRef; ref != nil {
		gv, _ := schema.ParseGroupVersion(ref.APIVersion)
		if (schema.GroupKind{Group: gv.Group, Kind: ref.Kind}) != Deployment {
			return nil, fmt.Errorf("%w: rollout %s/%s runs the template of %s %s (workloadRef); only a Deployment's is restored", ErrUnsupportedOwner, ns, name, ref.Kind, ref.Name)
		}
		dep, err := e.Client.Deployments(ns).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return nil, getError("deployment", ns, ref.Name, err)
		}
		own.deployment, own.deploymentRV = dep.Name, dep.ResourceVersion
		w.Also = append(w.Also, Object{Ref: RefOf(Deployment, ns, dep.Name), UID: dep.UID,
			Controller: metav1.GetControllerOf(dep), Labels: dep.Labels, Annotations: dep.Annotations})
		if template, err = runtime.DefaultUnstructuredConverter.ToUnstructured(&dep.Spec.Template); err != nil {
			return nil, err
		}
		observed = observed && observedAtLeast(ro.Status.WorkloadObservedGeneration, dep.Generation)
	}
	own.observed = observed
	if ro.Spec.Selector == nil {
		return nil, fmt.Errorf("%w: rollout %s/%s has no selector", ErrForeignHistory, ns, name)
	}
	selector, err := metav1.LabelSelectorAsSelector(ro.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("rollout %s/%s: selector: %w", ns, name, err)
	}
	list, err := e.Client.ReplicaSets(ns).List(ctx, metav1.ListOptions{
		LabelSelector:        selector.String(),
		ResourceVersion:      ro.Meta.ResourceVersion,
		ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan,
	})
	if err != nil {
		return nil, fmt.Errorf("list replicasets of rollout %s/%s: %w", ns, name, err)
	}
	if err := rolloutHistory(w, ro, list.Items); err != nil {
		return nil, err
	}
	for i := range list.Items {
		if rs := &list.Items[i]; metav1.IsControlledBy(rs, &ro.Meta) && rs.Labels[rolloutHashLabel] == ro.Status.StableRS {
			own.stableAvailable = rs.Status.AvailableReplicas
		}
	}

	// The template the Rollout runs: the newest revision holding it, once observed.
	w.Template = &corev1.PodTemplateSpec{}
	_ = runtime.DefaultUnstructuredConverter.FromUnstructured(template, w.Template)
	if observed {
		for _, rev := range w.History {
			if derivative(template, rev.Template) {
				w.Template = rev.Template
				break
			}
		}
	}
	if !observed || len(w.History) == 0 || ro.Status.StableRS == "" || ro.Status.StableRS == ro.Status.CurrentPodHash || w.History[0].ID != ro.Status.CurrentPodHash {
		return w, nil
	}
	for i, rev := range w.History {
		if rev.ID != ro.Status.StableRS || i == 0 {
			continue
		}
		own.stable = rev.ID
		w.History = append([]Revision{w.History[0], rev}, w.History[i+1:]...)
		if ro.Status.Abort {
			w.Template = rev.Template // aborted: the stable revision serves
		}
		break
	}
	return w, nil
}

// observedAtLeast is Argo's test of an observed generation (utils/conditions): the status's
// number is at least the object's, or is not a number (older controllers wrote a hash).
func observedAtLeast(status string, generation int64) bool {
	n, err := strconv.ParseInt(status, 10, 64)
	return err != nil || n >= generation
}

// rolloutHistory sets w's History from the ReplicaSets listed: those the Rollout controls,
// named and labelled as its controller names them, each revision claimed once, newest first.
func rolloutHistory(w *Workload, ro *rolloutObject, rss []appsv1.ReplicaSet) error {
	ns, name := w.Ref.Namespace, w.Ref.Name
	current, _ := strconv.ParseInt(ro.Meta.Annotations[rolloutRevisionAnnotation], 10, 64)
	var controlled []*appsv1.ReplicaSet
	retired := map[int64]string{}
	for i := range rss {
		if rs := &rss[i]; metav1.IsControlledBy(rs, &ro.Meta) {
			controlled = append(controlled, rs)
			for _, n := range revisionHistory(rs.Annotations[rolloutRevisionHistoryAnnotation]) {
				retired[n] = rs.Name
			}
		}
	}
	seen := map[int64]string{}
	for _, rs := range controlled {
		n, err := strconv.ParseInt(rs.Annotations[rolloutRevisionAnnotation], 10, 64)
		if err != nil {
			continue
		}
		hash := rs.Labels[rolloutHashLabel]
		if hash == "" || rs.Name != name+"-"+hash || rs.Spec.Template.Labels[rolloutHashLabel] != hash {
			return fmt.Errorf("%w: replicaset %s/%s is not named and labelled as the Argo Rollouts controller names its ReplicaSets", ErrForeignHistory, ns, rs.Name)
		}
		if other, dup := seen[n]; dup {
			return fmt.Errorf("%w: replicasets %s and %s both claim revision %d of rollout %s/%s", ErrForeignHistory, other, rs.Name, n, ns, name)
		}
		// Its own number in its own revision-history is the controller's doing: aborting, it
		// lists the canary's revision there.
		if other, ok := retired[n]; ok && other != rs.Name {
			return fmt.Errorf("%w: replicaset %s claims revision %d of rollout %s/%s, which replicaset %s held before it was made current again (its %s)",
				ErrForeignHistory, rs.Name, n, ns, name, other, rolloutRevisionHistoryAnnotation)
		}
		seen[n] = rs.Name
		if n > current {
			w.Ahead = true
			continue
		}
		template := rs.Spec.Template.DeepCopy()
		delete(template.Labels, rolloutHashLabel)
		w.History = append(w.History, Revision{
			Number:      n,
			ID:          hash,
			Template:    template,
			Annotations: rs.Annotations,
			Created:     rs.CreationTimestamp.Time,
			// Its own number is not an earlier one (an aborted canary lists it there).
			Earlier: slices.DeleteFunc(revisionHistory(rs.Annotations[rolloutRevisionHistoryAnnotation]), func(e int64) bool { return e == n }),
		})
	}
	sort.Slice(w.History, func(i, j int) bool { return w.History[i].Number > w.History[j].Number })
	if len(w.History) > 0 && w.History[0].Number != current {
		return fmt.Errorf("%w: no replicaset of rollout %s/%s holds its current revision %d", ErrForeignHistory, ns, name, current)
	}
	return nil
}

// derivative reports whether the Rollout's template (unstructured, not defaulted) is
// contained in the revision's (defaulted by the API server), hash labels aside: the test
// `kubectl argo rollouts undo` makes (equalIgnoreHash there).
func derivative(template map[string]any, rev *corev1.PodTemplateSpec) bool {
	if template == nil {
		return false
	}
	got, err := runtime.DefaultUnstructuredConverter.ToUnstructured(rev)
	if err != nil {
		return false
	}
	want := runtime.DeepCopyJSON(template)
	unstructured.RemoveNestedField(want, "metadata", "labels", rolloutHashLabel)
	unstructured.RemoveNestedField(got, "metadata", "labels", rolloutHashLabel)
	return equality.Semantic.DeepDerivative(want, got)
}

func (r rollout) ResourceVersion(ctx context.Context, e *Env, ns, name string) (string, error) {
	u, _, err := r.get(ctx, e, ns, name)
	if err != nil {
		return "", err
	}
	return u.GetResourceVersion(), nil
}

// aborts reports whether restoring to is an abort: a rollout is under way and to is its
// stable revision.
func (rollout) aborts(w *Workload, to Revision) bool {
	s, ok := w.Own.(*rolloutState)
	return ok && s.stable != "" && s.stable == to.ID
}

// Describe says which of the two the undo does, in the words of the plugin's commands.
func (r rollout) Describe(w *Workload, to Revision) string {
	switch s, _ := w.Own.(*rolloutState); {
	case r.aborts(w, to):
		return fmt.Sprintf("aborted the rollout as `kubectl argo rollouts abort` does: the stable revision %d (%s) serves; "+
			"the Rollout's template still holds revision %d, so change it where it is kept", to.Number, to.ID, w.History[0].Number)
	case s != nil && s.deployment != "":
		return fmt.Sprintf("undone as `kubectl argo rollouts undo` does: the template of Deployment %s (the Rollout's workloadRef) is revision %d's (%s)",
			s.deployment, to.Number, to.ID)
	default:
		return fmt.Sprintf("undone as `kubectl argo rollouts undo` does: the Rollout's template is revision %d's (%s)", to.Number, to.ID)
	}
}

// Restore aborts the rollout under way, or writes the revision's template (less its hash
// label) where the Rollout takes it from, as `kubectl argo rollouts undo` does; the state
// annotation goes on the Rollout. Each write is made under the resourceVersion read.
//
// An abort is a write of the status subresource, where the API server ignores metadata, so
// the state takes a second write: after the abort, which is idempotent and can be seen on
// the Rollout, so a failure in between leaves a Rollout whose next undo finds it aborted
// (already at its target) rather than a record of an abort never made. The same holds for
// the template of a workloadRef Deployment.
func (r rollout) Restore(ctx context.Context, e *Env, w *Workload, to Revision, state string, dryRun bool) error {
	ri, err := r.dynamic(e, w.Ref.Namespace)
	if err != nil {
		return err
	}
	s, _ := w.Own.(*rolloutState)
	if s == nil {
		return fmt.Errorf("rollout %s: not loaded", w.Ref)
	}
	if r.aborts(w, to) {
		u, err := ri.Patch(ctx, w.Ref.Name, types.MergePatchType, fmt.Appendf(nil, abortPatch, w.ResourceVersion), patchOptions(dryRun), "status")
		if err != nil {
			return fmt.Errorf("abort rollout %s/%s: %w", w.Ref.Namespace, w.Ref.Name, err)
		}
		return r.writeState(ctx, ri, w, u.GetResourceVersion(), state, dryRun)
	}
	template := to.Template.DeepCopy()
	delete(template.Labels, rolloutHashLabel)
	if s.deployment != "" {
		patch, err := json.Marshal([]map[string]any{
			{"op": "replace", "path": "/metadata/resourceVersion", "value": s.deploymentRV},
			{"op": "replace", "path": "/spec/template", "value": template},
		})
		if err != nil {
			return err
		}
		if _, err := e.Client.Deployments(w.Ref.Namespace).Patch(ctx, s.deployment, types.JSONPatchType, patch, patchOptions(dryRun)); err != nil {
			return fmt.Errorf("patch deployment %s/%s (workloadRef of rollout %s): %w", w.Ref.Namespace, s.deployment, w.Ref.Name, err)
		}
		return r.writeState(ctx, ri, w, w.ResourceVersion, state, dryRun)
	}
	ops := []map[string]any{
		{"op": "replace", "path": "/metadata/resourceVersion", "value": w.ResourceVersion},
		{"op": "replace", "path": "/spec/template", "value": template},
	}
	if w.Annotations == nil {
		ops = append(ops, map[string]any{"op": "add", "path": "/metadata/annotations", "value": map[string]string{StateAnnotation: state}})
	} else {
		ops = append(ops, map[string]any{"op": "add", "path": "/metadata/annotations/" + strings.ReplaceAll(StateAnnotation, "/", "~1"), "value": state})
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return err
	}
	if _, err := ri.Patch(ctx, w.Ref.Name, types.JSONPatchType, patch, patchOptions(dryRun)); err != nil {
		return fmt.Errorf("patch rollout %s/%s: %w", w.Ref.Namespace, w.Ref.Name, err)
	}
	return nil
}

// errStateChanged: between the undo and the write of its record, another writer changed the
// state annotation.
var errStateChanged = errors.New("the state annotation changed while the undo was recorded")

// writeState writes the state annotation after the undo's first write, from resourceVersion
// rv on. The Argo Rollouts controller updates the Rollout as it reacts to that write, so a
// conflict is expected: the Rollout is read again, and as long as nobody else changed the
// state since the undo was decided, the write is made again.
func (rollout) writeState(ctx context.Context, ri dynamic.ResourceInterface, w *Workload, rv, state string, dryRun bool) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
			"resourceVersion": rv, "annotations": map[string]string{StateAnnotation: state}}})
		if err != nil {
			return err
		}
		_, err = ri.Patch(ctx, w.Ref.Name, types.MergePatchType, patch, patchOptions(dryRun))
		if !apierrors.IsConflict(err) {
			return err
		}
		u, gerr := ri.Get(ctx, w.Ref.Name, metav1.GetOptions{})
		if gerr != nil {
			return gerr
		}
		if u.GetUID() != w.UID || u.GetAnnotations()[StateAnnotation] != w.Annotations[StateAnnotation] {
			return errStateChanged
		}
		rv = u.GetResourceVersion()
		return err
	})
	if err != nil {
		// Not a conflict for the caller: the undo itself is written, and deciding it again
		// would find the Rollout at its target.
		return fmt.Errorf("record the undo on rollout %s/%s: %w", w.Ref.Namespace, w.Ref.Name, noConflict(err))
	}
	return nil
}

// noConflict keeps err's message but not its API status, so a conflict in recording an undo
// already written is not taken for one in writing the undo.
func noConflict(err error) error {
	if apierrors.IsConflict(err) {
		return errors.New(err.Error())
	}
	return err
}

// Follow is the Rollout that runs Deployment w through its workloadRef. The Deployment does
// not name it (the Rollout is not its controller), but the Rollout's ReplicaSets carry the
// Deployment's template labels, so the Deployment's selector finds them along with its own
// history: their controllers are w's Peers. A Rollout among them whose workloadRef names w
// runs it. A Deployment with no such ReplicaSet costs nothing more.
func (r rollout) Follow(ctx context.Context, e *Env, w *Workload) (Target, bool, error) {
	if w.Ref.GroupKind() != Deployment {
		return Target{}, false, nil
	}
	for _, p := range w.Peers {
		if OwnerGroupKind(&p) != Rollout {
			continue
		}
		_, ro, err := r.get(ctx, e, w.Ref.Namespace, p.Name)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return Target{}, false, err
		}
		ref := ro.Spec.WorkloadRef
		if ro.Meta.UID != p.UID || ref == nil || ref.Name != w.Ref.Name {
			continue
		}
		if gv, _ := schema.ParseGroupVersion(ref.APIVersion); (schema.GroupKind{Group: gv.Group, Kind: ref.Kind}) == Deployment {
			return Target{Ref: RefOf(Rollout, w.Ref.Namespace, p.Name), UID: p.UID}, true, nil
		}
	}
	return Target{}, false, nil
}

// RolloutStatus is what `kubectl argo rollouts status` says of the Rollout Load read, from
// the phase its controller writes (Healthy, Progressing, Paused, Degraded), with one
// difference: an aborted rollout is Degraded to Argo, but once the controller has acted on the
// abort and the stable ReplicaSet's own pods are all available, the abort did what the undo
// meant, and that counts as done. A rollout paused at a step is neither done nor failing:
// people promote it (Argo does not count a pause against progressDeadlineSeconds either). The
// deadline is the Rollout's progressDeadlineSeconds (600 by default, as a Deployment's).
func (rollout) RolloutStatus(w *Workload) RolloutStatus {
	u := w.object.(*unstructured.Unstructured)
	st, _ := w.Own.(*rolloutState)
	s := RolloutStatus{Deadline: DefaultDeadline}
	if p, ok, _ := unstructured.NestedInt64(u.Object, "spec", "progressDeadlineSeconds"); ok {
		s.Deadline = time.Duration(p) * time.Second
	}
	if st == nil || !st.observed {
		s.Message = "waiting for rollout spec update to be observed"
		return s
	}
	str := func(f ...string) string { v, _, _ := unstructured.NestedString(u.Object, f...); return v }
	desired := int64(1)
	if r, ok, _ := unstructured.NestedInt64(u.Object, "spec", "replicas"); ok {
		desired = r
	}
	available, _, _ := unstructured.NestedInt64(u.Object, "status", "availableReplicas")
	phase, message := str("status", "phase"), str("status", "message")
	aborted, _, _ := unstructured.NestedBool(u.Object, "status", "abort")
	seen := phase == "Degraded" && strings.HasPrefix(message, "RolloutAborted")
	switch {
	case aborted && seen && int64(st.stableAvailable) >= desired:
		s.Done, s.Aborted = true, true
		s.Message = fmt.Sprintf("rollout %q aborted: its stable revision (%s) serves, %d of %d of its replicas available", u.GetName(), str("status", "stableRS"), st.stableAvailable, desired)
	case aborted:
		s.Aborted = true
		s.Message = fmt.Sprintf("waiting for rollout %q: aborted (%s), %d of %d of the stable revision's replicas available", u.GetName(), strings.TrimSpace(phase+" "+message), st.stableAvailable, desired)
	case phase == "Healthy":
		s.Done = true
		s.Message = fmt.Sprintf("rollout %q is Healthy: %d of %d replicas available", u.GetName(), available, desired)
		s.DoneAt = conditionTime(u, "Healthy")
	case phase == "Degraded":
		s.Failed = true
		s.Message = fmt.Sprintf("rollout %q is Degraded: %s", u.GetName(), message)
		s.FailedAt = conditionTime(u, "Progressing")
	case phase == "Paused":
		s.Paused = true
		s.Message = fmt.Sprintf("rollout %q is paused (%s): it finishes when promoted (kubectl argo rollouts promote)", u.GetName(), message)
	default:
		s.Message = fmt.Sprintf("waiting for rollout %q: %s", u.GetName(), strings.TrimSpace(phase+" "+message))
	}
	return s
}

// WriteState writes the state annotation alone, as a merge patch under the resourceVersion
// precondition.
func (r rollout) WriteState(ctx context.Context, e *Env, w *Workload, state string, dryRun bool) error {
	ri, err := r.dynamic(e, w.Ref.Namespace)
	if err != nil {
		return err
	}
	patch, err := statePatch(w, state)
	if err != nil {
		return err
	}
	if _, err := ri.Patch(ctx, w.Ref.Name, types.MergePatchType, patch, patchOptions(dryRun)); err != nil {
		return fmt.Errorf("patch rollout %s/%s: %w", w.Ref.Namespace, w.Ref.Name, err)
	}
	return nil
}
