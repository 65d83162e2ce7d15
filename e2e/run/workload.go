package run

import (
	"context"
	"fmt"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// PollTimeout bounds every wait on the controllers; they answer in well under a second.
const PollTimeout = 60 * time.Second

// Container is the single container of the test workloads: an image (never pulled: there
// is no kubelet) and a CPU request, which decides whether the scheduler can place it.
func Container(image, cpu string) corev1.Container {
	return corev1.Container{
		Name:  "app",
		Image: image,
		Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse(cpu),
		}},
	}
}

func template(name string, c corev1.Container) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{c}},
	}
}

// Deployment returns a Deployment of app name with one replica.
func Deployment(ns, name string, c corev1.Container) *appsv1.Deployment {
	one := int32(1)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: template(name, c),
		},
	}
}

// StatefulSet returns a StatefulSet of app name with one replica.
func StatefulSet(ns, name string, c corev1.Container) *appsv1.StatefulSet {
	one := int32(1)
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.StatefulSetSpec{
			Replicas: &one, ServiceName: name,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: template(name, c),
		},
	}
}

// DaemonSet returns a DaemonSet of app name.
func DaemonSet(ns, name string, c corev1.Container) *appsv1.DaemonSet {
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: template(name, c),
		},
	}
}

// UpdateDeployment changes a Deployment (a new rollout when the template changes) and
// waits until the controller has recorded revision want.
func UpdateDeployment(ctx context.Context, cs kubernetes.Interface, ns, name string, want int64, change func(*appsv1.Deployment)) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		change(d)
		_, err = cs.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return err
	}
	return WaitDeploymentRevision(ctx, cs, ns, name, want)
}

// WaitDeploymentRevision waits until the Deployment is at revision want and the controller
// has seen its latest generation.
func WaitDeploymentRevision(ctx context.Context, cs kubernetes.Interface, ns, name string, want int64) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, PollTimeout, true, func(ctx context.Context) (bool, error) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		last = d.Annotations["deployment.kubernetes.io/revision"]
		return last == strconv.FormatInt(want, 10) && d.Status.ObservedGeneration >= d.Generation, nil
	})
	if err != nil {
		return fmt.Errorf("deployment %s/%s at revision %q, want %d: %w", ns, name, last, want, err)
	}
	return nil
}

// ReplicaSetOfRevision returns the Deployment's ReplicaSet at revision rev.
func ReplicaSetOfRevision(ctx context.Context, cs kubernetes.Interface, ns, deployment string, rev int64) (*appsv1.ReplicaSet, error) {
	list, err := cs.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range list.Items {
		rs := &list.Items[i]
		owner := metav1.GetControllerOf(rs)
		if owner != nil && owner.Name == deployment && rs.Annotations["deployment.kubernetes.io/revision"] == strconv.FormatInt(rev, 10) {
			return rs, nil
		}
	}
	return nil, fmt.Errorf("deployment %s/%s has no ReplicaSet at revision %d", ns, deployment, rev)
}

// WaitPod waits for a pod controlled by the owner (a ReplicaSet, StatefulSet or DaemonSet
// UID) whose PodScheduled condition has status and, if given, reason; it returns its name.
func WaitPod(ctx context.Context, cs kubernetes.Interface, ns string, owner metav1.Object, status corev1.ConditionStatus, reason string) (string, error) {
	var name string
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, PollTimeout, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, p := range pods.Items {
			if ref := metav1.GetControllerOf(&p); ref == nil || ref.UID != owner.GetUID() {
				continue
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodScheduled && c.Status == status && (reason == "" || c.Reason == reason) {
					name = p.Name
					return true, nil
				}
			}
		}
		return false, nil
	})
	if err != nil {
		return "", fmt.Errorf("no pod of %s with PodScheduled=%s %s: %w", owner.GetName(), status, reason, err)
	}
	return name, nil
}

// Events lists the events recorded on the object kind/name, with reason if given, oldest
// first.
func Events(ctx context.Context, cs kubernetes.Interface, ns, kind, name, reason string) ([]corev1.Event, error) {
	sel := fields.Set{"involvedObject.kind": kind, "involvedObject.name": name}
	if reason != "" {
		sel["reason"] = reason
	}
	list, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: sel.AsSelector().String()})
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

// WaitEvents waits until at least n events match, and returns them.
func WaitEvents(ctx context.Context, cs kubernetes.Interface, ns, kind, name, reason string, n int) ([]corev1.Event, error) {
	var got []corev1.Event
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		var err error
		got, err = Events(ctx, cs, ns, kind, name, reason)
		return len(got) >= n, err
	})
	if err != nil {
		return got, fmt.Errorf("%d %s events on %s %s/%s, want %d: %w", len(got), reason, kind, ns, name, n, err)
	}
	return got, nil
}

// WaitControllerRevision waits until the newest ControllerRevision the StatefulSet or
// DaemonSet named owner controls is revision want.
func WaitControllerRevision(ctx context.Context, cs kubernetes.Interface, ns, owner string, want int64) error {
	var newest int64
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, PollTimeout, true, func(ctx context.Context) (bool, error) {
		list, err := cs.AppsV1().ControllerRevisions(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		newest = 0
		for _, cr := range list.Items {
			if ref := metav1.GetControllerOf(&cr); ref != nil && ref.Name == owner && cr.Revision > newest {
				newest = cr.Revision
			}
		}
		return newest == want, nil
	})
	if err != nil {
		return fmt.Errorf("%s/%s newest ControllerRevision is %d, want %d: %w", ns, owner, newest, want, err)
	}
	return nil
}
