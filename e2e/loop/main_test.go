// Package loop proves the whole loop on real components, with nothing injected: a bad
// revision applied with kubectl; kube-state-metrics v2.20.0 watching the apiserver; a real
// Prometheus v0.316.0 scraping it and evaluating deploy/prometheus's rules (only their
// `for:` and the intervals shortened); Alertmanager on the shipped configuration (only its
// url and credentials filled in); Knative waking the function from zero; the undo; the
// good revision Ready; the alert resolved; the function back at zero. It also checks that
// every series and label the shipped rules use exists in what kube-state-metrics really
// exports, as Prometheus itself parses the rules.
package loop

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
)

// kube is the cluster with its node and Knative.
var kube *cluster.Cluster

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	var tools []string
	for _, set := range [][]string{cluster.ControlPlaneTools, cluster.NodeTools, cluster.KnativeTools, cluster.LoopTools} {
		tools = append(tools, set...)
	}
	return cluster.PackageMain(m, "loop", tools, 8*time.Minute, cluster.Options{Knative: true, Audit: true},
		func(_ context.Context, c *cluster.Cluster) error { kube = c; return nil })
}
