// Package knative proves the product's main claim on real components: Knative Serving
// v0.50.0 (built from its module) on a real node, Traefik's Knative provider as the ingress,
// kservice.yaml applied with only its image replaced, and a real Alertmanager on the shipped
// configuration waking the function from zero to roll back a broken Deployment.
package knative

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
)

// kube is the cluster with its node and Knative, shared by the tests.
var kube *cluster.Cluster

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) (code int) {
	tools := append(append(append([]string{"alertmanager"}, cluster.ControlPlaneTools...), cluster.NodeTools...), cluster.KnativeTools...)
	for _, name := range tools {
		if _, err := cluster.ToolPath(name); err != nil {
			return missing(err)
		}
	}
	if os.Geteuid() != 0 {
		return missing(fmt.Errorf("a real node needs root"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "rollback-knative-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	kube, err = cluster.Start(ctx, cluster.Options{Dir: filepath.Join(dir, "cluster"), Log: os.Stderr, Knative: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		fmt.Fprintf(os.Stderr, "logs of the failed run kept in %s\n", dir)
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
	code = m.Run()
	return code
}

// missing fails under `make test` (ROLLBACK_REQUIRE_TOOLS=1) and skips otherwise.
func missing(err error) int {
	if os.Getenv("ROLLBACK_REQUIRE_TOOLS") == "1" {
		fmt.Fprintf(os.Stderr, "FAIL: %v: run `make test` (as root) to build and install what Knative on the node needs\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "skipping the Knative tests: %v; run `make test` to build the tools and run them\n", err)
	return 0
}
