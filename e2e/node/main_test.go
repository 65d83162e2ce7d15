// Package node proves the function on a real node: the control plane of package cluster with
// containerd, runc, the bridge CNI, the kubelet, kube-proxy and CoreDNS, all in a private
// network namespace. The function runs as a pod from its own images (kservice.yaml's
// ./cmd/rollback and func's scaffold), with the token the kubelet mounts, and rolls back
// workloads whose pods really run (and really crash).
package node

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
)

// kube is the cluster with its node, shared by the tests; each works in its own namespace.
var kube *cluster.Cluster

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	tools := append(append([]string{"knative/serving-crds.yaml"}, cluster.ControlPlaneTools...), cluster.NodeTools...)
	return cluster.PackageMain(m, "node", tools, 4*time.Minute, cluster.Options{Node: true}, func(ctx context.Context, c *cluster.Cluster) error {
		kube = c
		// kubectl maps every document of kservice.yaml, even those a label selector leaves out:
		// the Knative Service needs its CRD (Knative's own, from the module make unpacked).
		crds, _ := cluster.ToolPath("knative/serving-crds.yaml")
		if out, err := kube.Kubectl(ctx, "apply", "--server-side", "-f", crds); err != nil {
			return fmt.Errorf("apply Knative's CRDs: %v: %s", err, out)
		}
		return kube.WaitEstablished(ctx, "services.serving.knative.dev")
	})
}
