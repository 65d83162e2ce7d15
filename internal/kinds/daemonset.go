package kinds

import (
	"context"

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
