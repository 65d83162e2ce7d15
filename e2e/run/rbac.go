package run

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// RBACManifest writes kservice.yaml without its Knative Service into dir, and returns the
// file's path: the function's ServiceAccount, Role, RoleBinding and the budget's Lease, for
// a control plane without Knative's CRDs (kubectl must know every kind of a file it
// applies, even those a label selector leaves out).
func RBACManifest(dir string) (string, error) {
	src, err := RepoFile("kservice.yaml")
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(src)
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
