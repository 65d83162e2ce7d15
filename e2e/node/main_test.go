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
	"path/filepath"
	"testing"
	"time"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
)

// kube is the cluster with its node, shared by the tests; each works in its own namespace.
var kube *cluster.Cluster

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) (code int) {
	tools := append(append([]string{"knative/serving-crds.yaml"}, cluster.ControlPlaneTools...), cluster.NodeTools...)
	for _, name := range tools {
		if _, err := cluster.ToolPath(name); err != nil {
			return missing(err)
		}
	}
	if os.Geteuid() != 0 {
		return missing(fmt.Errorf("a real node needs root"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "rollback-node-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	kube, err = cluster.Start(ctx, cluster.Options{Dir: filepath.Join(dir, "cluster"), Log: os.Stderr, Node: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	code = 1
	defer func() {
		if err := kube.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL: stop the cluster:", err)
			code = 1
		}
		if code == 0 {
			os.RemoveAll(dir)
		} else {
			fmt.Fprintf(os.Stderr, "logs of the failed run kept in %s\n", dir)
		}
	}()
	// kubectl maps every document of kservice.yaml, even those a label selector leaves out:
	// the Knative Service needs its CRD (Knative's own, from the module make unpacked).
	crds, _ := cluster.ToolPath("knative/serving-crds.yaml")
	if out, err := kube.Kubectl(ctx, "apply", "--server-side", "-f", crds); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: apply Knative's CRDs: %v: %s\n", err, out)
		return 1
	}
	if out, err := kube.Kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s", "crd/services.serving.knative.dev"); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: Knative's Service CRD: %v: %s\n", err, out)
		return 1
	}
	code = m.Run()
	return code
}

// missing fails under `make test` (ROLLBACK_REQUIRE_TOOLS=1) and skips otherwise.
func missing(err error) int {
	if os.Getenv("ROLLBACK_REQUIRE_TOOLS") == "1" {
		fmt.Fprintf(os.Stderr, "FAIL: %v: run `make test` (as root) to build and install what the node needs\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "skipping the real-node tests: %v; run `make test` to build the tools and run them\n", err)
	return 0
}
