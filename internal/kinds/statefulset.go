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
