package faults

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
	"github.com/sre-kit/alert-rollback/e2e/run"
)

// kube is the control plane of this package's tests. It is their own: they stop and restart
// its etcd and kube-apiserver, which no other package's tests should have to live through.
var kube *cluster.Cluster

// rbacFile is kservice.yaml without its Knative Service: the function's ServiceAccount, Role
// and RoleBinding, applied to every test namespace.
var rbacFile string

var tools = append([]string{"rollback", "alertmanager"}, cluster.ControlPlaneTools...)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if os.Getenv("ROLLBACK_REQUIRE_TOOLS") != "1" {
		for _, name := range tools {
			if _, err := cluster.ToolPath(name); err != nil {
				// The proxy's own tests need no tools; TestFaults skips, saying why.
				return m.Run()
			}
		}
	}
	return cluster.PackageMain(m, "fault", tools, 2*time.Minute, cluster.Options{},
		func(ctx context.Context, c *cluster.Cluster) error {
			kube = c
			if err := c.CreateNode(ctx, "node-1"); err != nil {
				return err
			}
			var err error
			rbacFile, err = run.RBACManifest(c.Dir)
			return err
		})
}
