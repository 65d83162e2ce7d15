// Package clientset lets client-go's clientset (a fake one, in unit tests, or the admin
// client of the end-to-end tests) stand in for a kube.Client. The function itself never
// imports it: the clientset registers every API group, which is what package kube avoids.
package clientset

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/sre-kit/alert-rollback/internal/kube"
)

// Wrap returns cs as a kube.Client, with no dynamic client.
func Wrap(cs kubernetes.Interface) kube.Client { return wrapped{cs: cs} }

// WrapDynamic returns cs and dyn (a fake dynamic client, say) as a kube.Client.
func WrapDynamic(cs kubernetes.Interface, dyn dynamic.Interface) kube.Client {
	return wrapped{cs: cs, dyn: dyn}
}

type wrapped struct {
	cs  kubernetes.Interface
	dyn dynamic.Interface
}

func (w wrapped) Dynamic() dynamic.Interface { return w.dyn }

func (w wrapped) Deployments(ns string) kube.Object[*appsv1.Deployment, *appsv1.DeploymentList] {
	return w.cs.AppsV1().Deployments(ns)
}

func (w wrapped) ReplicaSets(ns string) kube.Object[*appsv1.ReplicaSet, *appsv1.ReplicaSetList] {
	return w.cs.AppsV1().ReplicaSets(ns)
}

func (w wrapped) StatefulSets(ns string) kube.Object[*appsv1.StatefulSet, *appsv1.StatefulSetList] {
	return w.cs.AppsV1().StatefulSets(ns)
}

func (w wrapped) DaemonSets(ns string) kube.Object[*appsv1.DaemonSet, *appsv1.DaemonSetList] {
	return w.cs.AppsV1().DaemonSets(ns)
}

func (w wrapped) ControllerRevisions(ns string) kube.Object[*appsv1.ControllerRevision, *appsv1.ControllerRevisionList] {
	return w.cs.AppsV1().ControllerRevisions(ns)
}

func (w wrapped) Pods(ns string) kube.Object[*corev1.Pod, *corev1.PodList] {
	return w.cs.CoreV1().Pods(ns)
}

func (w wrapped) Events(ns string) kube.Events { return w.cs.CoreV1().Events(ns) }

func (w wrapped) Leases(ns string) kube.Leases { return w.cs.CoordinationV1().Leases(ns) }
