package cluster

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// CreateNamespace creates the namespace name and waits until the
// controller-manager has made its default ServiceAccount: until then the
// ReplicaSet controller's pods are refused, and a test would see a rollout that
// silently never starts.
func (c *Cluster) CreateNamespace(ctx context.Context, name string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := c.Clientset.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := c.Clientset.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("namespace %s: no default ServiceAccount: %w", name, err)
	}
	return nil
}

// CreateNode creates a Node the scheduler will bind pods to, though no kubelet
// stands behind it: 4 CPUs, 8Gi of memory, room for 110 pods, Ready. Pods on it
// are scheduled (PodScheduled=True) but never run. A pod asking for more than it
// has stays Pending with PodScheduled=False, reason Unschedulable.
func (c *Cluster) CreateNode(ctx context.Context, name string) error {
	nodes := c.Clientset.CoreV1().Nodes()
	node, err := nodes.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create node %s: %w", name, err)
	}

	// A kubelet would report what the node has and that it is Ready; here the
	// status subresource is written directly. No node-lifecycle controller runs,
	// so nothing marks it NotReady later for missing heartbeats.
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("4"),
		corev1.ResourceMemory: resource.MustParse("8Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	now := metav1.Now()
	node.Status.Capacity = capacity
	node.Status.Allocatable = capacity
	node.Status.Conditions = []corev1.NodeCondition{{
		Type:               corev1.NodeReady,
		Status:             corev1.ConditionTrue,
		Reason:             "KubeletReady",
		Message:            "no kubelet: made ready by the test harness",
		LastHeartbeatTime:  now,
		LastTransitionTime: now,
	}}
	if node, err = nodes.UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("node %s: set status: %w", name, err)
	}

	// The apiserver taints every new Node not-ready; a kubelet's Ready status
	// would have the node-lifecycle controller lift it. Lift it here.
	node.Spec.Taints = slices.DeleteFunc(node.Spec.Taints, func(t corev1.Taint) bool {
		return t.Key == corev1.TaintNodeNotReady
	})
	if _, err := nodes.Update(ctx, node, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("node %s: remove the %s taint: %w", name, corev1.TaintNodeNotReady, err)
	}
	return nil
}
