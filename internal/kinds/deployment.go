package kinds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sre-kit/alert-rollback/internal/kube"
)

// Deployment is the apps/v1 Deployment. Its history is the ReplicaSets it controls; its pods'
// controller is one of those ReplicaSets, which alerts may name too.
var Deployment = deployment{}.GroupVersionKind().GroupKind()

// replicaSet is the controller of a Deployment's pods.
var replicaSet = appsv1.SchemeGroupVersion.WithKind("ReplicaSet").GroupKind()

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

type deployment struct{}

func (deployment) GroupVersionKind() schema.GroupVersionKind {
	return appsv1.SchemeGroupVersion.WithKind("Deployment")
}

// Rules: the workload is read and patched; its ReplicaSets are listed for the history and
// read by name when an alert names one.
func (deployment) Rules() []Rule {
	return []Rule{
		{Group: Deployment.Group, Resources: []string{"deployments"}, Verbs: []string{"get", "patch"}},
		{Group: replicaSet.Group, Resources: []string{"replicasets"}, Verbs: []string{"get", "list"}},
	}
}

func (deployment) Label() string                   { return "deployment" }
func (deployment) PodController() schema.GroupKind { return replicaSet }
func (deployment) ControllerLabel() string         { return "replicaset" }

// load reads the Deployment and the ReplicaSets it controls (see readDeployment), or takes
// them from reads when they were read for this notification already.
//
// The history is what the Deployment controller made, and nothing else: ReplicaSets it
// controls (owner UID), named <deployment>-<pod-template-hash> with that hash on their
// template, each revision number claimed once, none newer than the revision the Deployment
// itself records (deployment.kubernetes.io/revision), which is the current one.
func (deployment) Load(ctx context.Context, e *Env, ns, name string, reads *Reads) (*Workload, error) {
	var (
		dep *appsv1.Deployment
		rss []appsv1.ReplicaSet
		err error
	)
	if reads != nil {
		dep, rss, err = reads.Deployment(ctx, ns, name)
	} else {
		dep, rss, err = e.readDeployment(ctx, ns, name)
	}
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("%w: deployment %s/%s", ErrNotFound, ns, name)
	}
	if err != nil {
		return nil, err
	}
	w := &Workload{
		Ref:             RefOf(Deployment, ns, name),
		UID:             dep.UID,
		Generation:      dep.Generation,
		ResourceVersion: dep.ResourceVersion,
		Labels:          dep.Labels,
		Annotations:     dep.Annotations,
		Paused:          dep.Spec.Paused,
		Controller:      metav1.GetControllerOf(dep),
		Template:        &dep.Spec.Template,
		object:          dep,
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
			for _, n := range revisionHistory(rs.Annotations[revisionHistoryAnnotation]) {
				retired[n] = rs.Name
			}
		} else if c := metav1.GetControllerOf(rs); c != nil && !slices.ContainsFunc(w.Peers, func(p metav1.OwnerReference) bool { return p.UID == c.UID }) {
			w.Peers = append(w.Peers, *c)
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
			w.Ahead = true
			continue
		}
		w.History = append(w.History, Revision{
			Number:      n,
			ID:          hash,
			Template:    &rs.Spec.Template,
			Annotations: rs.Annotations,
			Created:     rs.CreationTimestamp.Time,
			Earlier:     revisionHistory(rs.Annotations[revisionHistoryAnnotation]),
		})
	}
	sort.Slice(w.History, func(i, j int) bool { return w.History[i].Number > w.History[j].Number })
	if len(w.History) > 0 && w.History[0].Number != current {
		// The current revision's ReplicaSet is not in the list: not made yet (the list
		// is at least as new as the Deployment, so it is not that) or deleted by hand.
		return nil, fmt.Errorf("%w: no replicaset of deployment %s/%s holds its current revision %d", ErrForeignHistory, ns, name, current)
	}
	return w, nil
}

// revisionHistory reads a ReplicaSet's revision-history annotation: the numbers it held
// before, oldest first, as the controller appends them. What does not parse is left out.
func revisionHistory(annotation string) []int64 {
	var out []int64
	for _, f := range strings.Split(annotation, ",") {
		if n, err := strconv.ParseInt(f, 10, 64); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func (deployment) ResourceVersion(ctx context.Context, e *Env, ns, name string) (string, error) {
	dep, err := e.Client.Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	return dep.ResourceVersion, nil
}

// restore writes what kubectl writes (the revision's template without its hash label, and
// the annotations kubectl computes) plus the new state, as one JSON patch. Unlike kubectl
// it also sets metadata.resourceVersion to the one read: the API server then refuses the
// write with a conflict if anything changed the Deployment since, instead of overwriting it.
func (deployment) Restore(ctx context.Context, e *Env, w *Workload, to Revision, state string, dryRun bool) error {
	template := to.Template.DeepCopy()
	delete(template.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	patch, err := json.Marshal([]map[string]any{
		{"op": "replace", "path": "/metadata/resourceVersion", "value": w.ResourceVersion},
		{"op": "replace", "path": "/spec/template", "value": template},
		{"op": "add", "path": "/metadata/annotations", "value": deploymentAnnotations(w.Annotations, to.Annotations, state)},
	})
	if err != nil {
		return err
	}
	_, err = e.Client.Deployments(w.Ref.Namespace).Patch(ctx, w.Ref.Name, types.JSONPatchType, patch, patchOptions(dryRun))
	if err != nil {
		return fmt.Errorf("patch deployment %s/%s: %w", w.Ref.Namespace, w.Ref.Name, err)
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

// FromPod is the Deployment of a pod whose controller is ReplicaSet owner.
func (deployment) FromPod(ctx context.Context, c kube.Client, pod *corev1.Pod, owner *metav1.OwnerReference, reads *Reads) (Target, error) {
	return fromReplicaSet(ctx, c, pod.Namespace, owner.Name, owner.UID, reads)
}

// FromController is the Deployment of the ReplicaSet ns/name.
func (deployment) FromController(ctx context.Context, c kube.Client, ns, name string, reads *Reads) (Target, error) {
	return fromReplicaSet(ctx, c, ns, name, "", reads)
}

// FromPodName finds the Deployment of pod ns/name from its name, without reading the pod.
//
// A pod of a Deployment is named <replicaset>-<5 characters>, and its ReplicaSet
// <deployment>-<pod-template-hash>. The undo reads that Deployment and lists its
// ReplicaSets anyway; when the list holds a ReplicaSet of exactly the pod's name less its
// suffix, controlled by that very Deployment (by UID), the name is taken as confirmed and
// the pod is not read: the undo then costs the workload's three requests and nothing more.
// What the name cannot rule out is a Job or a bare pod named <deployment>-<hash>-<5
// characters> on purpose, hash and all; only someone who can create pods in that namespace
// can do that, and readPods closes it at the cost of one request per pod.
//
// With readPods, the Deployment its name points at is read while the pod is, so a pod of a
// Deployment still costs the round trips of the workload alone; that read is never trusted,
// and when the pod says otherwise it was only wasted.
func (deployment) FromPodName(ctx context.Context, ns, name string, reads *Reads, readPods bool) (Target, bool, func(), error) {
	d, ok := deploymentOfPodName(name)
	if !ok || reads == nil {
		return Target{}, false, nil, nil
	}
	if !readPods {
		t, confirmed, err := ownReplicaSet(ctx, reads, ns, d, name[:strings.LastIndexByte(name, '-')], "")
		return t, confirmed || err != nil, nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _, _ = reads.Deployment(ctx, ns, d)
	}()
	return Target{}, false, func() { <-done }, nil
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

// FromGonePod resolves a pod that no longer exists (the alert outlived it, which is common
// once a rollout replaced it). Its ReplicaSet is the pod name without the generated suffix,
// but that is only a guess until ownership confirms it: the ReplicaSet must exist and be
// controlled by a Deployment, and then its pod-template-hash says which revision the pod
// ran.
func (deployment) FromGonePod(ctx context.Context, c kube.Client, ns, name string, reads *Reads) (Target, error) {
	if generatedSuffix.MatchString(name) {
		t, err := fromReplicaSet(ctx, c, ns, name[:strings.LastIndexByte(name, '-')], "", reads)
		if err == nil || !errors.Is(err, ErrNotFound) {
			return t, err
		}
	}
	return Target{}, fmt.Errorf("%w: pod %s/%s is gone and no Deployment's ReplicaSet owned it", ErrNotFound, ns, name)
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
func fromReplicaSet(ctx context.Context, c kube.Client, ns, name string, uid types.UID, reads *Reads) (Target, error) {
	if i := strings.LastIndexByte(name, '-'); reads != nil && i > 0 {
		t, confirmed, err := ownReplicaSet(ctx, reads, ns, name[:i], name, uid)
		if confirmed || err != nil {
			return t, err
		}
	}
	return readReplicaSet(ctx, c, ns, name, uid)
}

// ownReplicaSet reads Deployment ns/dep through reads and reports whether its ReplicaSet
// list holds ReplicaSet rs (of UID uid, when set) controlled by it: then the Target is that
// Deployment, at rs's revision. A Deployment that is not there confirms nothing, and is no
// error.
func ownReplicaSet(ctx context.Context, reads *Reads, ns, dep, rs string, uid types.UID) (Target, bool, error) {
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
				Ref:      RefOf(Deployment, ns, d.Name),
				Revision: r.Labels[appsv1.DefaultDeploymentUniqueLabelKey],
				UID:      d.UID,
			}, true, nil
		}
	}
	return Target{}, false, nil
}

// readReplicaSet reads the ReplicaSet and follows its controller reference.
func readReplicaSet(ctx context.Context, c kube.Client, ns, name string, uid types.UID) (Target, error) {
	rs, err := c.ReplicaSets(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || err == nil && uid != "" && rs.UID != uid {
		return Target{}, fmt.Errorf("%w: replicaset %s/%s", ErrNotFound, ns, name)
	}
	if err != nil {
		return Target{}, fmt.Errorf("get replicaset %s/%s: %w", ns, name, err)
	}
	owner, err := ControllerAmong(rs, replicaSetOwners()...)
	if err != nil {
		return Target{}, fmt.Errorf("replicaset %s/%s: %w", ns, name, err)
	}
	gk := OwnerGroupKind(owner)
	k, _ := For(gk)
	return Target{Ref: RefOf(gk, ns, owner.Name), Revision: k.(replicaSetKind).revisionOf(rs), UID: owner.UID}, nil
}

// replicaSetKind is a Kind whose pods' controller is a ReplicaSet it controls, as the
// Deployment's are: a pod's or a ReplicaSet's workload is the ReplicaSet's controller,
// whichever of these kinds it is.
type replicaSetKind interface {
	Kind
	// revisionOf identifies the revision ReplicaSet rs holds (its template hash label).
	revisionOf(rs *appsv1.ReplicaSet) string
}

func (deployment) revisionOf(rs *appsv1.ReplicaSet) string {
	return rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
}

// replicaSetOwners lists the kinds whose pods' controller is a ReplicaSet.
func replicaSetOwners() []schema.GroupKind {
	var out []schema.GroupKind
	for _, k := range registry {
		if _, ok := k.(replicaSetKind); ok && k.PodController() == replicaSet {
			out = append(out, k.GroupVersionKind().GroupKind())
		}
	}
	return out
}

// The Deployment controller's reasons on its Progressing condition
// (k8s.io/kubernetes/pkg/controller/deployment/util).
const (
	timedOutReason        = "ProgressDeadlineExceeded"
	newRSAvailableReason  = "NewReplicaSetAvailable"
	defaultProgressSecond = 600
)

// RolloutStatus applies `kubectl rollout status`'s rules for a Deployment: the controller
// has observed the spec, has not given up (Progressing=False, ProgressDeadlineExceeded),
// every replica is updated, no old replica is left, and every updated one is available.
func (deployment) RolloutStatus(w *Workload) RolloutStatus {
	return deploymentStatus(w.object.(*appsv1.Deployment))
}

func deploymentStatus(d *appsv1.Deployment) RolloutStatus {
	s := RolloutStatus{Deadline: defaultProgressSecond * time.Second}
	if p := d.Spec.ProgressDeadlineSeconds; p != nil {
		s.Deadline = time.Duration(*p) * time.Second
	}
	if d.Generation > d.Status.ObservedGeneration {
		s.Message = "waiting for deployment spec update to be observed"
		return s
	}
	var progressing *appsv1.DeploymentCondition
	for i, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing {
			progressing = &d.Status.Conditions[i]
		}
	}
	st := d.Status
	switch {
	case progressing != nil && progressing.Reason == timedOutReason:
		s.Failed, s.FailedAt = true, progressing.LastUpdateTime.Time
		s.Message = fmt.Sprintf("deployment %q exceeded its progress deadline (%s: %s; %d of %d updated replicas available)",
			d.Name, timedOutReason, progressing.Message, st.AvailableReplicas, st.UpdatedReplicas)
	case d.Spec.Replicas != nil && st.UpdatedReplicas < *d.Spec.Replicas:
		s.Message = fmt.Sprintf("waiting for deployment %q rollout to finish: %d out of %d new replicas have been updated", d.Name, st.UpdatedReplicas, *d.Spec.Replicas)
	case st.Replicas > st.UpdatedReplicas:
		s.Message = fmt.Sprintf("waiting for deployment %q rollout to finish: %d old replicas are pending termination", d.Name, st.Replicas-st.UpdatedReplicas)
	case st.AvailableReplicas < st.UpdatedReplicas:
		s.Message = fmt.Sprintf("waiting for deployment %q rollout to finish: %d of %d updated replicas are available", d.Name, st.AvailableReplicas, st.UpdatedReplicas)
	default:
		s.Done = true
		s.Message = fmt.Sprintf("deployment %q successfully rolled out: %d of %d updated replicas are available", d.Name, st.AvailableReplicas, st.UpdatedReplicas)
		if progressing != nil && progressing.Reason == newRSAvailableReason {
			s.DoneAt = progressing.LastUpdateTime.Time
		}
	}
	return s
}

// WriteState writes the state annotation alone, under the resourceVersion precondition.
func (deployment) WriteState(ctx context.Context, e *Env, w *Workload, state string, dryRun bool) error {
	patch, err := statePatch(w, state)
	if err != nil {
		return err
	}
	if _, err := e.Client.Deployments(w.Ref.Namespace).Patch(ctx, w.Ref.Name, types.StrategicMergePatchType, patch, patchOptions(dryRun)); err != nil {
		return fmt.Errorf("patch deployment %s/%s: %w", w.Ref.Namespace, w.Ref.Name, err)
	}
	return nil
}
