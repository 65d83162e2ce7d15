package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ControlPlaneTools are the binaries Start runs, plus kubectl, which Cluster.Kubectl
// runs; all are built together by `make tools` from one pinned module.
var ControlPlaneTools = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"}

// LoopTools are what the whole loop (e2e/loop, make demo-loop) runs besides the node and
// Knative: the Prometheus server (built with promtool) and kube-state-metrics.
var LoopTools = []string{"prometheus", "kube-state-metrics", "alertmanager"}

// ToolPath returns the absolute path of the pinned binary name. The tools are
// looked up in $ROLLBACK_TOOLS_DIR (which the Makefile sets) or else in the
// repository's .bin folder, never on $PATH: a kubectl or etcd of another version
// there would make the tests measure the wrong thing.
func ToolPath(name string) (string, error) {
	path, err := lookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w: run `make tools` in the repository root to build it", err)
	}
	return path, nil
}

// lookPath returns the tool's path, or an error saying where it is missing.
func lookPath(name string) (string, error) {
	dir, err := toolsDir()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	info, err := os.Stat(path)
	// Programs must be executable; image tarballs and YAMLs are plain files.
	program := !strings.HasSuffix(name, ".tar") && !strings.HasSuffix(name, ".yaml")
	if err != nil || info.IsDir() || (program && info.Mode()&0o111 == 0) {
		return "", fmt.Errorf("%s is not built in %s", name, dir)
	}
	return path, nil
}

// Require stops the test early when a tool it needs is missing. Under `make test`
// (ROLLBACK_REQUIRE_TOOLS=1) that is a failure, so CI cannot pass by skipping;
// a plain `go test` skips instead, so a developer without the tools still gets
// the fast tests.
func Require(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := lookPath(name); err != nil {
			if os.Getenv("ROLLBACK_REQUIRE_TOOLS") == "1" {
				t.Fatalf("%v: run `make tools` in the repository root to build it", err)
			}
			t.Skipf("skipping: %v; run `make test` to build the tools and run it", err)
		}
	}
}

// toolsDir is $ROLLBACK_TOOLS_DIR, or <repo root>/.bin, where the repository root is
// the nearest folder above the working directory that holds a Makefile and tools/
// (go test runs in the package's folder, so a relative default would not do).
func toolsDir() (string, error) {
	if dir := os.Getenv("ROLLBACK_TOOLS_DIR"); dir != "" {
		return filepath.Abs(dir)
	}
	root, err := RepoRoot()
	if err != nil {
		return "", fmt.Errorf("%w: set ROLLBACK_TOOLS_DIR to the folder holding the tools", err)
	}
	return filepath.Join(root, ".bin"), nil
}

func isFile(path string) bool {
	info, err := os.Stat(path)
	return err == nil && !info.IsDir()
}

func isDir(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.IsDir()
}

// RequireFile returns the path of a file `make tools` puts beside the binaries (such as
// crds/argocd-application.yaml), stopping t as Require does when it is missing.
func RequireFile(t testing.TB, name string) string {
	t.Helper()
	dir, err := toolsDir()
	if err == nil {
		path := filepath.Join(dir, name)
		if isFile(path) {
			return path
		}
		err = fmt.Errorf("%s is not in %s", name, dir)
	}
	if os.Getenv("ROLLBACK_REQUIRE_TOOLS") == "1" {
		t.Fatalf("%v: run `make tools` in the repository root to fetch it", err)
	}
	t.Skipf("skipping: %v; run `make test` to fetch it and run this", err)
	return ""
}
