// Package knative proves the product's main claim on real components: Knative Serving
// v0.50.0 (built from its module) on a real node, Traefik's Knative provider as the ingress,
// kservice.yaml applied with only its image replaced (and, for func's image, func.yaml's
// settings for func's runtime added), and a real Alertmanager on the shipped
// configuration waking the function from zero to roll back a broken Deployment.
package knative

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
)

// kube is the cluster with its node and Knative, shared by the tests.
var kube *cluster.Cluster

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	tools := append(append(append([]string{"alertmanager"}, cluster.ControlPlaneTools...), cluster.NodeTools...), cluster.KnativeTools...)
	return cluster.PackageMain(m, "knative", tools, 8*time.Minute, cluster.Options{Knative: true},
		func(_ context.Context, c *cluster.Cluster) error { kube = c; return nil })
}
