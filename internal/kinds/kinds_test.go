package kinds

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// TestFor: the registry answers by group and kind, so a kind of another group with the same
// name (OpenKruise's StatefulSet) is no kind of it.
func TestFor(t *testing.T) {
	tests := []struct {
		name string
		gk   schema.GroupKind
		want bool
	}{
		{"Deployment", Deployment, true},
		{"StatefulSet", StatefulSet, true},
		{"DaemonSet", DaemonSet, true},
		{"Rollout", Rollout, true},
		{"another group's Rollout", schema.GroupKind{Group: "apps", Kind: Rollout.Kind}, false},
		{"another group's StatefulSet", schema.GroupKind{Group: "apps.kruise.io", Kind: StatefulSet.Kind}, false},
		{"no group", schema.GroupKind{Kind: Deployment.Kind}, false},
		{"a ReplicaSet", replicaSet, false},
		{"Knative Service", KnativeService, true},
		{"a core Service", schema.GroupKind{Kind: KnativeService.Kind}, false},
		{"a Knative Revision", knativeRevision, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, ok := For(tt.gk)
			if ok != tt.want {
				t.Fatalf("For(%v) = %v, %v; want found %v", tt.gk, k, ok, tt.want)
			}
			if ok && k.GroupVersionKind().GroupKind() != tt.gk {
				t.Errorf("For(%v) = %v", tt.gk, k.GroupVersionKind())
			}
		})
	}
}

// TestMessages: the words the registry makes for messages are those the answers, Events and
// README have always said.
func TestMessages(t *testing.T) {
	tests := []struct{ name, got, want string }{
		{"Names", Names(), "Deployment, StatefulSet, DaemonSet, Service (serving.knative.dev) or Rollout (argoproj.io)"},
		{"Labels", Labels(), "deployment, statefulset, daemonset, knative_service or rollout"},
		{"ErrUnsupportedOwner", ErrUnsupportedOwner.Error(), "not controlled by an apps/v1 Deployment, StatefulSet or DaemonSet or serving.knative.dev/v1 Service or argoproj.io/v1alpha1 Rollout"},
		{"APIVersion of a Knative Service", RefOf(KnativeService, "ns", "x").APIVersion(), "serving.knative.dev/v1"},
		{"APIVersion of a Rollout", RefOf(Rollout, "ns", "x").APIVersion(), "argoproj.io/v1alpha1"},
		{"APIVersion", RefOf(DaemonSet, "ns", "x").APIVersion(), "apps/v1"},
		{"String", RefOf(StatefulSet, "ns", "x").String(), "StatefulSet ns/x"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %q; want %q", tt.name, tt.got, tt.want)
		}
	}
}

// TestNoKindLiterals: outside this package (the kinds' files and the registry), no source
// file of the function spells a kind or an API group of a kind as a string literal: a new
// kind is added here, and the rest of the code asks the registry.
func TestNoKindLiterals(t *testing.T) {
	words := []string{"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Rollout", "apps/v1", "serving.knative.dev"}
	root := filepath.Join("..", "..")
	skip := map[string]bool{"e2e": true, "tools": true, "testdata": true, filepath.Join("internal", "kinds"): true,
		filepath.Join("internal", "fixture"): true}
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if skip[rel] || strings.HasPrefix(d.Name(), ".") && rel != "." {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			return err
		}
		checked++
		ast.Inspect(f, func(n ast.Node) bool {
			if _, ok := n.(*ast.ImportSpec); ok {
				return false
			}
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, _ := strconv.Unquote(lit.Value)
			if s == "apps" || slices.ContainsFunc(words, func(w string) bool { return regexp.MustCompile(`\b` + w + `\b`).MatchString(s) }) {
				t.Errorf("%s: string literal %s names a kind or its group; ask package kinds", rel, lit.Value)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 20 {
		t.Fatalf("checked %d files; the walk missed the module", checked)
	}
}
