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

// DaemonSet is the apps/v1 DaemonSet. Its history is the ControllerRevisions it controls
// (see revisionKind); its pods' controller is the DaemonSet itself.
var DaemonSet = daemonSet{}.GroupVersionKind().GroupKind()

type daemonSet struct{}

// daemonSets reads and writes DaemonSets through the shared ControllerRevision code.
var daemonSets = revisionKind{
	gk: DaemonSet,
	get: func(ctx context.Context, c kube.Client, ns, name string) (*object, error) {
		d, err := c.DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return &object{d, d.Spec.Selector, &d.Spec.Template, ""}, nil
	},
	patch: func(ctx context.Context, c kube.Client, ns, name string, data []byte, opts metav1.PatchOptions) error {
		_, err := c.DaemonSets(ns).Patch(ctx, name, types.StrategicMergePatchType, data, opts)
		return err
	},
	// The DaemonSet controller labels its revisions with the label its pods carry too.
	hashLabel: appsv1.ControllerRevisionHashLabelKey,
}

func (daemonSet) GroupVersionKind() schema.GroupVersionKind {
	return appsv1.SchemeGroupVersion.WithKind("DaemonSet")
}

// Rules: the workload is read and patched; its ControllerRevisions are only ever listed.
func (daemonSet) Rules() []Rule {
	return []Rule{
		{Group: DaemonSet.Group, Resources: []string{"daemonsets"}, Verbs: []string{"get", "patch"}},
		{Group: DaemonSet.Group, Resources: []string{"controllerrevisions"}, Verbs: []string{"list"}},
	}
}

func (daemonSet) Label() string                   { return "daemonset" }
func (daemonSet) PodController() schema.GroupKind { return DaemonSet }

// FromPod is the pod's DaemonSet. A DaemonSet pod's controller-revision-hash is the hash
// alone; the ControllerRevision is named <daemonset>-<hash>.
func (daemonSet) FromPod(_ context.Context, _ kube.Client, pod *corev1.Pod, owner *metav1.OwnerReference, _ *Reads) (Target, error) {
	rev := ""
	if hash := pod.Labels[appsv1.ControllerRevisionHashLabelKey]; hash != "" {
		rev = owner.Name + "-" + hash
	}
	return Target{Ref: RefOf(DaemonSet, pod.Namespace, owner.Name), Revision: rev, UID: owner.UID}, nil
}

func (daemonSet) Load(ctx context.Context, e *Env, ns, name string, _ *Reads) (*Workload, error) {
	return daemonSets.load(ctx, e, ns, name)
}

func (daemonSet) ResourceVersion(ctx context.Context, e *Env, ns, name string) (string, error) {
	return daemonSets.resourceVersion(ctx, e, ns, name)
}

func (daemonSet) Restore(ctx context.Context, e *Env, w *Workload, to Revision, state string, dryRun bool) error {
	return daemonSets.restore(ctx, e, w, to, state, dryRun)
}

// RolloutStatus applies `kubectl rollout status`'s rules for a DaemonSet: with the OnDelete
// strategy nothing rolls out until the pods are deleted (failed, as for a StatefulSet);
// otherwise the spec observed, every scheduled pod updated and available.
func (daemonSet) RolloutStatus(w *Workload) RolloutStatus {
	return daemonSetStatus(w.object.(*appsv1.DaemonSet))
}

func daemonSetStatus(d *appsv1.DaemonSet) RolloutStatus {
	out := RolloutStatus{Deadline: DefaultDeadline}
	st, strategy := d.Status, d.Spec.UpdateStrategy
	if strategy.Type != appsv1.RollingUpdateDaemonSetStrategyType && strategy.Type != "" {
		out.Failed = true
		out.Message = fmt.Sprintf("daemon set %q has the %s update strategy: the undo changed its template, but no pod is replaced until it is deleted (rollout status is only available for %s)",
			d.Name, strategy.Type, appsv1.RollingUpdateDaemonSetStrategyType)
		return out
	}
	if d.Generation > st.ObservedGeneration {
		out.Message = "waiting for daemon set spec update to be observed"
		return out
	}
	switch {
	case st.UpdatedNumberScheduled < st.DesiredNumberScheduled:
		out.Message = fmt.Sprintf("waiting for daemon set %q rollout to finish: %d out of %d new pods have been updated", d.Name, st.UpdatedNumberScheduled, st.DesiredNumberScheduled)
	case st.NumberAvailable < st.DesiredNumberScheduled:
		out.Message = fmt.Sprintf("waiting for daemon set %q rollout to finish: %d of %d updated pods are available", d.Name, st.NumberAvailable, st.DesiredNumberScheduled)
	default:
		out.Done = true
		out.Message = fmt.Sprintf("daemon set %q successfully rolled out: %d of %d updated pods are available", d.Name, st.NumberAvailable, st.DesiredNumberScheduled)
	}
	return out
}

func (daemonSet) WriteState(ctx context.Context, e *Env, w *Workload, state string, dryRun bool) error {
	return daemonSets.writeState(ctx, e, w, state, dryRun)
}
