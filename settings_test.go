package function

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sre-kit/alert-rollback/internal/readme"
)

// settingName is a ROLLBACK_* variable, spelt whole: "ROLLBACK_SERVER_*" in a comment or
// "(ROLLBACK_BUDGET)" inside a message is not a read.
var settingName = regexp.MustCompile(`^ROLLBACK_[A-Z0-9_]*[A-Z0-9]$`)

// TestReadmeSettings ties the README's settings table to the variables the code reads:
// every ROLLBACK_* name the module's code spells out (config.go, cmd/rollback's server,
// the memory limit) has a row, and every ROLLBACK_* row is read somewhere. A setting
// nobody can find, or a documented one that does nothing, is a defect either way.
func TestReadmeSettings(t *testing.T) {
	code := settingsInCode(t, ".")
	// A removed setting is spelt in the code only to refuse it (TestConfigRemovedSettings).
	for name := range removedSettings {
		delete(code, name)
	}
	readme := readmeSettings(t, "README.md")
	for _, name := range slices.Sorted(maps.Keys(code)) {
		if !readme[name] {
			t.Errorf("%s (read in %s) has no row in README.md's settings table", name, strings.Join(code[name], ", "))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(readme)) {
		if _, ok := code[name]; !ok {
			t.Errorf("README.md's settings table lists %s, which no code of this module reads", name)
		}
	}
}

// settingsInCode finds the string literals that are exactly a ROLLBACK_* name in the
// module's non-test Go files (e2e/ and tools/ are modules of their own), with the files
// that spell each.
func settingsInCode(t *testing.T, root string) map[string][]string {
	t.Helper()
	found := map[string][]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || isModule(path)) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			if s, err := strconv.Unquote(lit.Value); err == nil && settingName.MatchString(s) && !slices.Contains(found[s], path) {
				found[s] = append(found[s], path)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatalf("read the module's code: %v", err)
	}
	if len(found) == 0 {
		t.Fatalf("found no ROLLBACK_* names in the module's code")
	}
	return found
}

// isModule reports whether dir holds a go.mod: another module (e2e, tools/*).
func isModule(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "go.mod"))
	return err == nil
}

// readmeSettings reads the ROLLBACK_* names in the first column of the table under
// "## Settings".
func readmeSettings(t *testing.T, path string) map[string]bool {
	t.Helper()
	rows, err := readme.Table(path, "## Settings")
	if err != nil {
		t.Fatal(err)
	}
	code := regexp.MustCompile("`([^`]+)`")
	names := map[string]bool{}
	for _, row := range rows {
		for _, m := range code.FindAllStringSubmatch(row[0], -1) {
			if settingName.MatchString(m[1]) {
				if names[m[1]] {
					t.Errorf("%s: %s has two rows in the settings table", path, m[1])
				}
				names[m[1]] = true
			}
		}
	}
	if len(names) == 0 {
		t.Fatalf("%s: no ROLLBACK_* rows in the settings table", path)
	}
	return names
}
