package kinds

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/sre-kit/alert-rollback/internal/kube"
)

// KnativeService is Knative Serving's Service (serving.knative.dev/v1). Its history is the
// Revisions of its Configuration, ordered by the configurationGeneration label Knative puts
// on each; its pods belong to a Deployment that a Revision controls, so an alert about such a
// pod (or its ReplicaSet, or its Deployment) is followed to the Service (see Owner).
//
// The undo does what `kubectl rollout undo` does for a Deployment: spec.template goes back
// to the template of the newest earlier revision that is Ready and not recorded as bad, so
// Knative makes a new revision with that template, and the next deploy flows as usual.
var KnativeService = knativeService{}.GroupVersionKind().GroupKind()

// knativeGroup is Knative Serving's API group; its labels and annotations are named in it
// (knative.dev/serving pkg/apis/serving/register.go).
const knativeGroup = "serving.knative.dev"

var (
	knativeRevision      = schema.GroupKind{Group: knativeGroup, Kind: "Revision"}
	knativeConfiguration = schema.GroupKind{Group: knativeGroup, Kind: "Configuration"}
	knativeServices      = schema.GroupVersionResource{Group: knativeGroup, Version: "v1", Resource: "services"}
	knativeRevisions     = schema.GroupVersionResource{Group: knativeGroup, Version: "v1", Resource: "revisions"}
	knativeConfigs       = schema.GroupVersionResource{Group: knativeGroup, Version: "v1", Resource: "configurations"}
)

// The labels Knative's Configuration controller puts on each Revision it makes
// (pkg/reconciler/configuration/resources/revision.go), on top of the template's.
const (
	configurationLabel           = knativeGroup + "/configuration"
	configurationGenerationLabel = knativeGroup + "/configurationGeneration"
	serviceUIDLabel              = knativeGroup + "/serviceUID"
)

// knativeAdded are the labels and annotations Knative's controllers add to a Revision, which
// its template did not hold: they are left out when a Revision's template is read back.
var knativeAdded = map[string]bool{
	configurationLabel:                     true,
	configurationGenerationLabel:           true,
	serviceUIDLabel:                        true,
	knativeGroup + "/service":              true,
	knativeGroup + "/configurationUID":     true,
	knativeGroup + "/routingState":         true,
	knativeGroup + "/creator":              true,
	knativeGroup + "/routes":               true,
	knativeGroup + "/routingStateModified": true,
	knativeGroup + "/lastPinned":           true,
}

// templateAnnotation holds, in the pod template the undo compares (Workload.Template,
// Revision.Template), the whole revision template as canonical JSON: a Knative template is
// more than a pod template (containerConcurrency, timeoutSeconds...), and two templates are
// the same exactly when that JSON is. It is never written anywhere.
const templateAnnotation = AnnotationPrefix + "knative-template"

type knativeService struct{}

func (knativeService) GroupVersionKind() schema.GroupVersionKind {
	return schema.GroupVersionKind{Group: "serving.knative.dev", Version: "v1", Kind: "Service"}
}

// Label is explicit: Prometheus's own `service` label is kube-state-metrics' core Service,
// never read as a Knative Service.
func (knativeService) Label() string { return "knative_service" }

// Aliases: the labels Knative Serving v0.50.0 puts on its own metrics (the OpenTelemetry
// attribute kn.service.name, as Prometheus names it).
func (knativeService) Aliases() []string { return []string{"kn_service_name"} }

// ControllerLabel names a Revision (kn.revision.name on Knative's metrics), which leads to
// its Service.
func (knativeService) ControllerLabel() string { return "kn_revision_name" }

// PodController: a Revision's pods belong to its Deployment's ReplicaSets, so no pod is ever
// controlled by a Revision; those pods lead to the Deployment, and the undo follows the
// Deployment's controller, the Revision, to its Service (OwnsThrough).
func (knativeService) PodController() schema.GroupKind { return knativeRevision }

func (knativeService) OwnsThrough() []schema.GroupKind { return []schema.GroupKind{knativeRevision} }

// Rules: the Service is read and patched; its Revisions are listed for the history and read
// by name on the way from a Deployment (or a kn_revision_name label), and the Configuration
// in between is read to confirm that the Service controls it.
func (knativeService) Rules() []Rule {
	return []Rule{
		{Group: knativeGroup, Resources: []string{"services"}, Verbs: []string{"get", "patch"}},
		{Group: knativeGroup, Resources: []string{"revisions"}, Verbs: []string{"get", "list"}},
		{Group: knativeGroup, Resources: []string{"configurations"}, Verbs: []string{"get"}},
	}
}

// dynamicOf is the client's dynamic client, which the Knative kinds need.
func dynamicOf(c kube.Client) (dynamic.Interface, error) {
	if d := c.Dynamic(); d != nil {
		return d, nil
	}
	return nil, fmt.Errorf("no dynamic client to read %s", knativeGroup)
}

// Load reads the Service and lists the Revisions of its Configuration (which Knative names
// after the Service): two requests. The history is what Knative made for this Service and
// nothing else: Revisions controlled by its Configuration, labelled with the Service's UID,
// each configurationGeneration claimed once. The newest is the current revision whatever its
// state; earlier ones count only when Ready (a revision that never served is no revision to
// go back to).
func (knativeService) Load(ctx context.Context, e *Env, ns, name string, _ *Reads) (*Workload, error) {
	dyn, err := dynamicOf(e.Client)
	if err != nil {
		return nil, err
	}
	svc, err := dyn.Resource(knativeServices).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, getError("knative service", ns, name, err)
	}
	revs, err := dyn.Resource(knativeRevisions).Namespace(ns).List(ctx, metav1.ListOptions{
		LabelSelector:        configurationLabel + "=" + name,
		ResourceVersion:      svc.GetResourceVersion(),
		ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan,
	})
	if err != nil {
		return nil, fmt.Errorf("list revisions of knative service %s/%s: %w", ns, name, err)
	}
	current, err := serviceTemplate(svc)
	if err != nil {
		return nil, fmt.Errorf("knative service %s/%s: %w", ns, name, err)
	}
	w := &Workload{
		Ref:             RefOf(KnativeService, ns, name),
		UID:             svc.GetUID(),
		Generation:      svc.GetGeneration(),
		ResourceVersion: svc.GetResourceVersion(),
		Labels:          svc.GetLabels(),
		Annotations:     svc.GetAnnotations(),
		Controller:      metav1.GetControllerOf(svc),
		Template:        current.compared,
		object:          svc,
	}
	if !followsLatest(svc) {
		w.Blocked = fmt.Errorf("%w (knative service %s/%s)", ErrTrafficPinned, ns, name)
	}
	type entry struct {
		r     Revision
		ready bool
	}
	var entries []entry
	seen := map[int64]string{}
	for i := range revs.Items {
		rev := &revs.Items[i]
		owner := metav1.GetControllerOf(rev)
		if owner == nil || OwnerGroupKind(owner) != knativeConfiguration || owner.Name != name ||
			rev.GetLabels()[serviceUIDLabel] != string(svc.GetUID()) {
			continue // not made for this Service
		}
		n, err := strconv.ParseInt(rev.GetLabels()[configurationGenerationLabel], 10, 64)
		if err != nil {
			continue // as kubectl skips a ReplicaSet without a readable revision
		}
		if other, dup := seen[n]; dup {
			return nil, fmt.Errorf("%w: revisions %s and %s both claim configuration generation %d of knative service %s/%s",
				ErrForeignHistory, other, rev.GetName(), n, ns, name)
		}
		seen[n] = rev.GetName()
		t, err := knativeTemplateOf(rev)
		if err != nil {
			return nil, fmt.Errorf("revision %s/%s: %w", ns, rev.GetName(), err)
		}
		entries = append(entries, entry{ready: ready(rev), r: Revision{
			Number: n, ID: t.id, Template: t.compared, Patch: t.raw, Created: rev.GetCreationTimestamp().Time,
		}})
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].r.Number > entries[j].r.Number })
	for i, e := range entries {
		if i == 0 || e.ready {
			w.History = append(w.History, e.r)
		}
	}
	return w, nil
}

// RolloutStatus is knativeRollout's verdict on the Service Load read. Knative's own
// progress deadline (600 s unless serving.knative.dev/progress-deadline says otherwise) is
// what marks a revision failed, so DefaultDeadline bounds the wait as it does for kinds with
// none of their own. The times are the conditions' last transitions.
func (knativeService) RolloutStatus(w *Workload) RolloutStatus {
	svc := w.object.(*unstructured.Unstructured)
	done, failed, message := knativeRollout(svc)
	s := RolloutStatus{Done: done, Failed: failed, Message: message, Deadline: DefaultDeadline}
	switch {
	case done:
		s.DoneAt = conditionTime(svc, "Ready")
	case failed:
		s.FailedAt = conditionTime(svc, "ConfigurationsReady")
	}
	return s
}

// conditionTime is the lastTransitionTime of the Service's condition typ; zero when absent.
func conditionTime(svc *unstructured.Unstructured, typ string) time.Time {
	conditions, _, _ := unstructured.NestedSlice(svc.Object, "status", "conditions")
	for _, c := range conditions {
		if m, ok := c.(map[string]any); ok && m["type"] == typ {
			raw, _ := m["lastTransitionTime"].(string)
			t, _ := time.Parse(time.RFC3339, raw)
			return t
		}
	}
	return time.Time{}
}

// WriteState writes the state annotation alone, as a merge patch under the resourceVersion
// precondition.
func (knativeService) WriteState(ctx context.Context, e *Env, w *Workload, state string, dryRun bool) error {
	dyn, err := dynamicOf(e.Client)
	if err != nil {
		return err
	}
	patch, err := statePatch(w, state)
	if err != nil {
		return err
	}
	if _, err := dyn.Resource(knativeServices).Namespace(w.Ref.Namespace).Patch(ctx, w.Ref.Name, types.MergePatchType, patch, patchOptions(dryRun)); err != nil {
		return fmt.Errorf("patch knative service %s/%s: %w", w.Ref.Namespace, w.Ref.Name, err)
	}
	return nil
}

// ready reports whether a Revision's Ready condition is True. A Revision scaled to zero
// stays Ready; one whose pods never started is not.
func ready(rev *unstructured.Unstructured) bool {
	conditions, _, _ := unstructured.NestedSlice(rev.Object, "status", "conditions")
	for _, c := range conditions {
		if m, ok := c.(map[string]any); ok && m["type"] == "Ready" {
			return m["status"] == "True"
		}
	}
	return false
}

// followsLatest reports whether some of the Service's traffic goes to its latest revision,
// which a new revision then takes over. Knative's webhook defaults spec.traffic (an empty one
// to 100% latestRevision, a target without a revisionName to latestRevision, a missing
// percent to 0), so the defaulted form is what is read.
func followsLatest(svc *unstructured.Unstructured) bool {
	traffic, found, _ := unstructured.NestedSlice(svc.Object, "spec", "traffic")
	if !found || len(traffic) == 0 {
		return true
	}
	for _, t := range traffic {
		m, ok := t.(map[string]any)
		if !ok {
			continue
		}
		latest, ok := m["latestRevision"].(bool)
		if !ok {
			latest = m["revisionName"] == nil || m["revisionName"] == ""
		}
		percent, _ := m["percent"].(int64)
		if latest && (percent > 0 || m["percent"] == nil && len(traffic) == 1) {
			return true
		}
	}
	return false
}

// knativeTemplate is a revision template in the three forms the undo uses.
type knativeTemplate struct {
	// raw is what spec.template is set to for it (JSON): labels, annotations and spec,
	// without a name (a revision name can be used once: Knative names the new revision).
	raw []byte
	// compared is the pod template the undo compares (see templateAnnotation).
	compared *corev1.PodTemplateSpec
	// id identifies the template: a hash of raw. Two revisions with one template (an undo
	// makes one) have one ID, so the state's bad revisions and the alert's revision are
	// about templates, as a Deployment's pod-template-hash is.
	id string
}

// newTemplate builds the forms of the template with labels, annotations and spec.
func newTemplate(labels, annotations map[string]string, spec map[string]any) (knativeTemplate, error) {
	meta := map[string]any{}
	if len(labels) > 0 {
		meta["labels"] = labels
	}
	if len(annotations) > 0 {
		meta["annotations"] = annotations
	}
	raw, err := json.Marshal(map[string]any{"metadata": meta, "spec": spec}) // map keys sorted: canonical
	if err != nil {
		return knativeTemplate{}, err
	}
	sum := sha256.Sum256(raw)
	return knativeTemplate{
		raw:      raw,
		compared: &corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{templateAnnotation: string(raw)}}},
		id:       hex.EncodeToString(sum[:5]),
	}, nil
}

// serviceTemplate is the Service's spec.template, its name left out (see knativeTemplate.raw).
func serviceTemplate(svc *unstructured.Unstructured) (knativeTemplate, error) {
	labels, _, err := unstructured.NestedStringMap(svc.Object, "spec", "template", "metadata", "labels")
	if err != nil {
		return knativeTemplate{}, err
	}
	annotations, _, err := unstructured.NestedStringMap(svc.Object, "spec", "template", "metadata", "annotations")
	if err != nil {
		return knativeTemplate{}, err
	}
	spec, _, err := unstructured.NestedMap(svc.Object, "spec", "template", "spec")
	if err != nil {
		return knativeTemplate{}, err
	}
	return newTemplate(labels, annotations, spec)
}

// knativeTemplateOf is the template a Revision was made from: Knative copies the template's
// labels, annotations and spec into the Revision and adds its own labels and annotations
// (knativeAdded), which are left out.
func knativeTemplateOf(rev *unstructured.Unstructured) (knativeTemplate, error) {
	spec, _, err := unstructured.NestedMap(rev.Object, "spec")
	if err != nil {
		return knativeTemplate{}, err
	}
	return newTemplate(without(rev.GetLabels(), knativeAdded), without(rev.GetAnnotations(), knativeAdded), spec)
}

func without(m map[string]string, drop map[string]bool) map[string]string {
	out := maps.Clone(m)
	maps.DeleteFunc(out, func(k, _ string) bool { return drop[k] })
	return out
}

func (knativeService) ResourceVersion(ctx context.Context, e *Env, ns, name string) (string, error) {
	dyn, err := dynamicOf(e.Client)
	if err != nil {
		return "", err
	}
	svc, err := dyn.Resource(knativeServices).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	return svc.GetResourceVersion(), nil
}

// Restore writes the revision's template to spec.template and the new state, as one JSON
// patch under the resourceVersion read (a conflict if anything changed the Service since).
// The template carries no name, so a Service whose templates bring their own revision names
// gets a name from Knative for the new revision instead of reusing the old one, which
// Knative would refuse.
func (knativeService) Restore(ctx context.Context, e *Env, w *Workload, to Revision, state string, dryRun bool) error {
	dyn, err := dynamicOf(e.Client)
	if err != nil {
		return err
	}
	annotations := maps.Clone(w.Annotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[StateAnnotation] = state
	patch, err := json.Marshal([]map[string]any{
		{"op": "replace", "path": "/metadata/resourceVersion", "value": w.ResourceVersion},
		{"op": "replace", "path": "/spec/template", "value": json.RawMessage(to.Patch)},
		{"op": "add", "path": "/metadata/annotations", "value": annotations},
	})
	if err != nil {
		return err
	}
	_, err = dyn.Resource(knativeServices).Namespace(w.Ref.Namespace).Patch(ctx, w.Ref.Name, types.JSONPatchType, patch, patchOptions(dryRun))
	if err != nil {
		return fmt.Errorf("patch knative service %s/%s: %w", w.Ref.Namespace, w.Ref.Name, err)
	}
	return nil
}

// FromPod: no pod is controlled by a Revision (see PodController); should one be, it leads
// to the Revision's Service all the same.
func (k knativeService) FromPod(ctx context.Context, c kube.Client, pod *corev1.Pod, owner *metav1.OwnerReference, _ *Reads) (Target, error) {
	return k.FromOwner(ctx, c, pod.Namespace, owner)
}

// FromController is the Service of the Revision ns/name.
func (knativeService) FromController(ctx context.Context, c kube.Client, ns, name string, _ *Reads) (Target, error) {
	return fromRevision(ctx, c, ns, name, "")
}

// FromOwner is the Service of the Revision controller (a Deployment's controller).
func (knativeService) FromOwner(ctx context.Context, c kube.Client, ns string, controller *metav1.OwnerReference) (Target, error) {
	if OwnerGroupKind(controller) != knativeRevision {
		return Target{}, fmt.Errorf("%w: %s %s", ErrUnsupportedOwner, controller.Kind, controller.Name)
	}
	return fromRevision(ctx, c, ns, controller.Name, controller.UID)
}

// fromRevision follows Revision ns/name (of UID uid, when set) to its Configuration and that
// Configuration to its Service, by controller references, each object read and matched by
// UID: three reads. The Target's Revision is the Revision's template ID, as the Service's
// history has it.
func fromRevision(ctx context.Context, c kube.Client, ns, name string, uid types.UID) (Target, error) {
	dyn, err := dynamicOf(c)
	if err != nil {
		return Target{}, err
	}
	rev, err := dyn.Resource(knativeRevisions).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || err == nil && uid != "" && rev.GetUID() != uid {
		return Target{}, fmt.Errorf("%w: revision %s/%s", ErrNotFound, ns, name)
	}
	if err != nil {
		return Target{}, fmt.Errorf("get revision %s/%s: %w", ns, name, err)
	}
	cfgRef, err := ControllerAmong(rev, knativeConfiguration)
	if err != nil {
		return Target{}, fmt.Errorf("revision %s/%s: %w", ns, name, err)
	}
	cfg, err := dyn.Resource(knativeConfigs).Namespace(ns).Get(ctx, cfgRef.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || err == nil && cfg.GetUID() != cfgRef.UID {
		return Target{}, fmt.Errorf("%w: configuration %s/%s of revision %s", ErrNotFound, ns, cfgRef.Name, name)
	}
	if err != nil {
		return Target{}, fmt.Errorf("get configuration %s/%s: %w", ns, cfgRef.Name, err)
	}
	svcRef, err := ControllerAmong(cfg, KnativeService)
	if err != nil {
		return Target{}, fmt.Errorf("configuration %s/%s of revision %s: %w", ns, cfgRef.Name, name, err)
	}
	t, err := knativeTemplateOf(rev)
	if err != nil {
		return Target{}, fmt.Errorf("revision %s/%s: %w", ns, name, err)
	}
	return Target{Ref: RefOf(KnativeService, ns, svcRef.Name), Revision: t.id, UID: svcRef.UID}, nil
}

// knativeRollout says whether a Knative Service's rollout is done, or failed, as
// `kn service describe` and Knative's own conditions tell it: done once the Service has
// observed its generation, is Ready, its latest created revision is its latest Ready one and
// the traffic that follows the latest revision goes to it; failed once it has observed its
// generation and its Configuration is not Ready (the revision failed: its pods crash or
// cannot be scheduled). Package undo's verification asks it after an undo (RolloutStatus).
func knativeRollout(svc *unstructured.Unstructured) (done, failed bool, message string) {
	observed, _, _ := unstructured.NestedInt64(svc.Object, "status", "observedGeneration")
	if observed != svc.GetGeneration() {
		return false, false, fmt.Sprintf("waiting for the Knative controller to observe generation %d (at %d)", svc.GetGeneration(), observed)
	}
	conditions, _, _ := unstructured.NestedSlice(svc.Object, "status", "conditions")
	cond := func(typ string) (status, text string) {
		for _, c := range conditions {
			if m, ok := c.(map[string]any); ok && m["type"] == typ {
				status, _ = m["status"].(string)
				reason, _ := m["reason"].(string)
				msg, _ := m["message"].(string)
				return status, strings.TrimSpace(reason + " " + msg)
			}
		}
		return "", ""
	}
	if status, text := cond("ConfigurationsReady"); status == "False" {
		return false, true, "the latest revision failed: " + text
	}
	created, _, _ := unstructured.NestedString(svc.Object, "status", "latestCreatedRevisionName")
	readyRev, _, _ := unstructured.NestedString(svc.Object, "status", "latestReadyRevisionName")
	if status, text := cond("Ready"); status != "True" {
		return false, false, fmt.Sprintf("waiting for revision %s to be Ready: %s", created, text)
	}
	if created == "" || created != readyRev {
		return false, false, fmt.Sprintf("waiting for revision %s to be Ready (latest Ready: %s)", created, readyRev)
	}
	traffic, _, _ := unstructured.NestedSlice(svc.Object, "status", "traffic")
	for _, t := range traffic {
		m, _ := t.(map[string]any)
		if latest, _ := m["latestRevision"].(bool); latest && m["revisionName"] != created {
			return false, false, fmt.Sprintf("waiting for the traffic of the latest revision to move to %s", created)
		}
	}
	return true, false, fmt.Sprintf("revision %s is Ready and serves", created)
}
