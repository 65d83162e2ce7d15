package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// PackageMain is the TestMain of a package whose tests share one cluster started with opts.
// A missing tool, or no root for a node, fails under `make test` (ROLLBACK_REQUIRE_TOOLS=1)
// and skips the package otherwise, saying why. Once the cluster is up, ready gets it (to
// keep it, and to prepare what every test needs) before the tests run. The cluster is
// stopped at the end; its logs are kept when anything failed.
func PackageMain(m *testing.M, name string, tools []string, timeout time.Duration, opts Options, ready func(context.Context, *Cluster) error) (code int) {
	for _, tool := range tools {
		if _, err := ToolPath(tool); err != nil {
			return missingTool(name, err)
		}
	}
	if (opts.Node || opts.Knative) && os.Geteuid() != 0 {
		return missingTool(name, fmt.Errorf("a real node needs root"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	dir, finish, err := LogDir("rollback-" + name + "-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	opts.Dir, opts.Log = filepath.Join(dir, "cluster"), os.Stderr
	c, err := Start(ctx, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		finish(false)
		return 1
	}
	code = 1
	defer func() {
		if err := c.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL: stop the cluster:", err)
			code = 1
		}
		finish(code == 0)
	}()
	if err := ready(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	return m.Run()
}

func missingTool(name string, err error) int {
	if os.Getenv("ROLLBACK_REQUIRE_TOOLS") == "1" {
		fmt.Fprintf(os.Stderr, "FAIL: %v: run `make test` (as root for a node) to build and install what the %s tests need\n", err, name)
		return 1
	}
	fmt.Fprintf(os.Stderr, "skipping the %s tests: %v; run `make test` to build the tools and run them\n", name, err)
	return 0
}

// WaitEstablished waits until the CRD name is Established. It polls rather than using
// `kubectl wait`, which fails at once, instead of waiting, while a new CRD has no
// conditions yet.
func (c *Cluster) WaitEstablished(ctx context.Context, name string) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		last, _ = c.Kubectl(ctx, "get", "crd/"+name, "-o", `jsonpath={.status.conditions[?(@.type=="Established")].status}`)
		return strings.TrimSpace(last) == "True", nil
	})
	if err != nil {
		return fmt.Errorf("CRD %s not Established (last %q): %w", name, last, err)
	}
	return nil
}
