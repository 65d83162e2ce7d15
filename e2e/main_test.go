// Package e2e proves the function on real components: a real kube-apiserver, etcd,
// controller-manager and scheduler (package cluster), the real kubectl, the function's own
// built binary and a real Alertmanager (package run). `make test` builds them all first and
// sets ROLLBACK_REQUIRE_TOOLS=1, so a missing one fails the run instead of skipping it.
package e2e

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

// kube is the control plane every test here shares; each test works in its own namespace.
var kube *cluster.Cluster

// tools every test in this package needs.
var tools = append([]string{"rollback", "alertmanager"}, cluster.ControlPlaneTools...)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	// The audit log lets tests count the API requests the function makes.
	return cluster.PackageMain(m, "end-to-end", tools, 2*time.Minute, cluster.Options{Audit: true},
		func(ctx context.Context, c *cluster.Cluster) error { kube = c; return prepare(ctx) })
}

// prepare gives the cluster a schedulable Node and Knative's Service CRD, once.
func prepare(ctx context.Context) error {
	if err := kube.CreateNode(ctx, "node-1"); err != nil {
		return err
	}
	crd, err := cluster.SharedFile("knative/service-crd.yaml")
	if err != nil {
		return err
	}
	if out, err := kube.Kubectl(ctx, "apply", "-f", crd); err != nil {
		return fmt.Errorf("apply Knative's Service CRD: %v: %s", err, out)
	}
	if err := kube.WaitEstablished(ctx, "services.serving.knative.dev"); err != nil {
		return fmt.Errorf("Knative's Service CRD: %w", err)
	}
	return nil
}

// repoFile is a file of the repository, from the e2e folder.
func repoFile(name string) string { return filepath.Join("..", name) }

// namespaceFor turns a test name into a namespace name of its own.
func namespaceFor(t testing.TB) string {
	r := strings.NewReplacer("/", "-", "_", "-", " ", "-")
	ns := strings.ToLower(r.Replace(t.Name()))
	if len(ns) > 50 {
		ns = ns[:50]
	}
	return strings.Trim(ns, "-")
}
