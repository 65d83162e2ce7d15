// Package guards proves the fleet-wide guards on a real control plane: the rollback budget's
// Lease under concurrent takers, and the GitOps guard against Argo CD's and Flux's own CRDs
// (fetched from their pinned modules by `make tools`), each with the shipped RBAC.
package guards

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
	"github.com/sre-kit/alert-rollback/e2e/run"
)

// kube is the control plane every test here shares; each works in namespaces of its own.
var kube *cluster.Cluster

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	return cluster.PackageMain(m, "guards", cluster.ControlPlaneTools, 2*time.Minute, cluster.Options{},
		func(_ context.Context, c *cluster.Cluster) error { kube = c; return nil })
}

// repoFile is a file of the repository, from this package's folder.
func repoFile(name string) string { return filepath.Join("..", "..", name) }

// install applies the function's identity from kservice.yaml to a new namespace ns, as
// `func deploy`'s preparation step does: the objects labelled component=rbac (the
// ServiceAccount, its Role and binding, and the budget's Lease), from the file without the
// Knative Service (no Knative CRD is installed here).
func install(t *testing.T, c *cluster.Cluster, ns string) {
	t.Helper()
	ctx := context.Background()
	if err := c.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	rbac, err := run.RBACManifest(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if out, err := c.Kubectl(ctx, "apply", "-n", ns, "-l", "app.kubernetes.io/component=rbac", "-f", rbac); err != nil {
		t.Fatalf("apply kservice.yaml's RBAC to %s: %v: %s", ns, err, out)
	}
}

// clientsOf returns new clients acting as the function's ServiceAccount of ns, with only
// the permissions the shipped RBAC gives it: one set per function replica.
func clientsOf(t *testing.T, c *cluster.Cluster, ns string) (kubernetes.Interface, dynamic.Interface) {
	t.Helper()
	cfg, err := c.ConfigFor(context.Background(), ns, "alert-rollback")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, dyn
}

// applyCRDs applies the GitOps tools' CRDs (server-side: Argo CD's is too large for the
// last-applied annotation) and waits until the apiserver serves them.
func applyCRDs(t *testing.T, c *cluster.Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, f := range []struct{ file, name string }{
		{"crds/argocd-application.yaml", "applications.argoproj.io"},
		{"crds/flux-kustomization.yaml", "kustomizations.kustomize.toolkit.fluxcd.io"},
		{"crds/flux-helmrelease.yaml", "helmreleases.helm.toolkit.fluxcd.io"},
	} {
		path := cluster.RequireFile(t, f.file)
		if out, err := c.Kubectl(ctx, "apply", "--server-side", "-f", path); err != nil {
			t.Fatalf("apply %s: %v: %s", f.file, err, out)
		}
		if err := c.WaitEstablished(ctx, f.name); err != nil {
			t.Fatal(err)
		}
	}
}

// get is a shorthand for reading an object the test made, as the admin.
var get = metav1.GetOptions{}
