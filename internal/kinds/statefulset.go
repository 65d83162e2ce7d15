package kinds

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sre-kit/alert-rollback/internal/kube"
)

// StatefulSet is the apps/v1 StatefulSet. Its history is the ControllerRevisions it
// controls (see revisionKind); its pods' controller is the StatefulSet itself.
var StatefulSet = statefulSet{}.GroupVersionKind().GroupKind()

type statefulSet struct{}

// statefulSets reads and writes StatefulSets through the shared ControllerRevision code.
var statefulSets = revisionKind{
	gk: StatefulSet,
	get: func(ctx context.Context, c kube.Client, ns, name string) (*object, error) {
		s, err := c.StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return &object{s, s.Spec.Selector, &s.Spec.Template, s.Status.UpdateRevision}, nil
	},
	patch: func(ctx context.Context, c kube.Client, ns, name string, data []byte, opts metav1.PatchOptions) error {
		_, err := c.StatefulSets(ns).Patch(ctx, name, types.StrategicMergePatchType, data, opts)
		return err
	},
	// k8s.io/kubernetes/pkg/controller/history labels and names the StatefulSet's
	// revisions, cutting the StatefulSet's name to 223 bytes.
	hashLabel: "controller.kubernetes.io/hash",
	maxName:   223,
}

func (statefulSet) GroupVersionKind() schema.GroupVersionKind {
	return appsv1.SchemeGroupVersion.WithKind("StatefulSet")
}

// Rules: the workload is read and patched; its ControllerRevisions are only ever listed.
func (statefulSet) Rules() []Rule {
	return []Rule{
		{Group: StatefulSet.Group, Resources: []string{"statefulsets"}, Verbs: []string{"get", "patch"}},
		{Group: StatefulSet.Group, Resources: []string{"controllerrevisions"}, Verbs: []string{"list"}},
	}
}

func (statefulSet) Label() string                   { return "statefulset" }
func (statefulSet) PodController() schema.GroupKind { return StatefulSet }

// FromPod is the pod's StatefulSet; a StatefulSet pod's controller-revision-hash is its
// ControllerRevision's name.
func (statefulSet) FromPod(_ context.Context, _ kube.Client, pod *corev1.Pod, owner *metav1.OwnerReference, _ *Reads) (Target, error) {
	return Target{Ref: RefOf(StatefulSet, pod.Namespace, owner.Name), Revision: pod.Labels[appsv1.ControllerRevisionHashLabelKey], UID: owner.UID}, nil
}

func (statefulSet) Load(ctx context.Context, e *Env, ns, name string, _ *Reads) (*Workload, error) {
	return statefulSets.load(ctx, e, ns, name)
}

func (statefulSet) ResourceVersion(ctx context.Context, e *Env, ns, name string) (string, error) {
	return statefulSets.resourceVersion(ctx, e, ns, name)
}

func (statefulSet) Restore(ctx context.Context, e *Env, w *Workload, to Revision, state string, dryRun bool) error {
	return statefulSets.restore(ctx, e, w, to, state, dryRun)
}

// RolloutStatus applies `kubectl rollout status`'s rules for a StatefulSet. With the
// OnDelete strategy the controller replaces no pod: an undo changes the template and
// nothing rolls out until someone deletes the pods, so it has failed. Otherwise: the spec
// observed, every replica ready, and the updated replicas past the partition (when there is
// one) or the current revision caught up with the update revision.
func (statefulSet) RolloutStatus(w *Workload) RolloutStatus {
	return statefulSetStatus(w.object.(*appsv1.StatefulSet))
}

func statefulSetStatus(s *appsv1.StatefulSet) RolloutStatus {
	out := RolloutStatus{Deadline: DefaultDeadline}
	st, strategy := s.Status, s.Spec.UpdateStrategy
	if strategy.Type != appsv1.RollingUpdateStatefulSetStrategyType && strategy.Type != "" {
		out.Failed = true
		out.Message = fmt.Sprintf("statefulset %q has the %s update strategy: the undo changed its template, but no pod is replaced until it is deleted (rollout status is only available for %s)",
			s.Name, strategy.Type, appsv1.RollingUpdateStatefulSetStrategyType)
		return out
	}
	if st.ObservedGeneration == 0 || s.Generation > st.ObservedGeneration {
		out.Message = "waiting for statefulset spec update to be observed"
		return out
	}
	if s.Spec.Replicas != nil && st.ReadyReplicas < *s.Spec.Replicas {
		out.Message = fmt.Sprintf("waiting for %d pods of statefulset %q to be ready: %d of %d ready, %d updated to revision %s",
			*s.Spec.Replicas-st.ReadyReplicas, s.Name, st.ReadyReplicas, *s.Spec.Replicas, st.UpdatedReplicas, st.UpdateRevision)
		return out
	}
	if ru := strategy.RollingUpdate; ru != nil {
		if s.Spec.Replicas != nil && ru.Partition != nil {
			if want := *s.Spec.Replicas - *ru.Partition; st.UpdatedReplicas < want {
				out.Message = fmt.Sprintf("waiting for partitioned roll out of statefulset %q to finish: %d out of %d new pods have been updated", s.Name, st.UpdatedReplicas, want)
				return out
			}
		}
		out.Done = true
		out.Message = fmt.Sprintf("partitioned roll out of statefulset %q complete: %d new pods have been updated, %d ready", s.Name, st.UpdatedReplicas, st.ReadyReplicas)
		return out
	}
	if st.UpdateRevision != st.CurrentRevision {
		out.Message = fmt.Sprintf("waiting for statefulset %q rolling update to complete: %d pods at revision %s", s.Name, st.UpdatedReplicas, st.UpdateRevision)
		return out
	}
	out.Done = true
	out.Message = fmt.Sprintf("statefulset %q rolling update complete: %d pods at revision %s, %d ready", s.Name, st.CurrentReplicas, st.CurrentRevision, st.ReadyReplicas)
	return out
}

func (statefulSet) WriteState(ctx context.Context, e *Env, w *Workload, state string, dryRun bool) error {
	return statefulSets.writeState(ctx, e, w, state, dryRun)
}
