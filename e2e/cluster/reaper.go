package cluster

import (
	"context"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// reapInterval is how often deleted pods are finished off.
const reapInterval = 200 * time.Millisecond

// reapDeletedPods stands in for the kubelet's last step. Without a kubelet, a pod bound to a
// Node and then deleted (every rollout deletes the old ReplicaSet's pods) stays Terminating
// for ever and keeps its CPU request and its pod slot on the Node, so after enough rollouts
// nothing fits any more. A kubelet would confirm the deletion once the containers stopped;
// this confirms it at once (grace period 0). It runs until ctx ends.
func (c *Cluster) reapDeletedPods(ctx context.Context) {
	zero := int64(0)
	t := time.NewTicker(reapInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pods, err := c.Clientset.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{ResourceVersion: "0"})
		if err != nil {
			continue // the apiserver may be stopping; try again next tick
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil {
				_ = c.Clientset.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name,
					metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &p.UID}})
			}
		}
	}
}
