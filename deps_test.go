package function

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestBinaryLeavesOutUnusedAPIGroups keeps cmd/rollback small: client-go's clientset and
// its scheme register every API group of k8s.io/api, a third of the binary (29.0 MB
// stripped with them; 19.1 MB without, measured). The function uses apps/v1, core/v1 and
// coordination/v1 alone, through internal/kube.
func TestBinaryLeavesOutUnusedAPIGroups(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goTool, "list", "-deps", "./cmd/rollback").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/rollback: %v\n%s", err, out)
	}
	allowedAPI := map[string]bool{"k8s.io/api/apps/v1": true, "k8s.io/api/core/v1": true, "k8s.io/api/coordination/v1": true}
	for _, pkg := range strings.Fields(string(out)) {
		switch {
		case pkg == "k8s.io/client-go/kubernetes", strings.HasPrefix(pkg, "k8s.io/client-go/kubernetes/"):
			t.Errorf("cmd/rollback imports %s: it registers every API group; use internal/kube", pkg)
		case pkg == "k8s.io/client-go/testing", pkg == "k8s.io/client-go/gentype":
			t.Errorf("cmd/rollback links %s: test code (fake clients, managed fields)", pkg)
		case strings.HasPrefix(pkg, "k8s.io/api/") && !allowedAPI[pkg]:
			t.Errorf("cmd/rollback links %s; want only apps/v1, core/v1 and coordination/v1 of k8s.io/api", pkg)
		}
	}
}
