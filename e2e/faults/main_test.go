package faults

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
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
			rbacFile, err = writeRBAC(c.Dir)
			return err
		})
}

// writeRBAC writes kservice.yaml's documents but the Knative Service (no Knative here) into
// dir, and returns the file's path.
func writeRBAC(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join("..", "..", "kservice.yaml"))
	if err != nil {
		return "", err
	}
	var keep []string
	for _, doc := range strings.Split(string(b), "\n---") {
		if !strings.Contains(doc, "apiVersion: serving.knative.dev/") {
			keep = append(keep, doc)
		}
	}
	if len(keep) < 3 {
		return "", fmt.Errorf("kservice.yaml: %d documents besides the Knative Service; want its ServiceAccount, Role and RoleBinding", len(keep))
	}
	path := filepath.Join(dir, "kservice-rbac.yaml")
	return path, os.WriteFile(path, []byte(strings.Join(keep, "\n---")), 0o644)
}
