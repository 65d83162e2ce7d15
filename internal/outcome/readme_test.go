package outcome

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sre-kit/alert-rollback/internal/readme"
	"github.com/sre-kit/alert-rollback/internal/undo"
)

// TestReadmeReasonTable ties the README's reason-code table to the Reason constants: users
// match dashboards and alerts on these codes, so a code the README does not list, or one
// it lists that the function never gives, is a broken promise. The row also says the
// action and, for failures, whether Alertmanager retries; both must be what the code does.
func TestReadmeReasonTable(t *testing.T) {
	table := readmeReasons(t, "../../README.md")
	consts := reasonConstants(t)

	for _, r := range consts {
		if _, ok := table[r]; !ok {
			t.Errorf("Reason %q is not in README.md's reason-code table", r)
		}
	}
	for r := range table {
		if !slices.Contains(consts, r) {
			t.Errorf("README.md's reason-code table lists %q, which is no Reason constant of package outcome", r)
		}
	}

	for _, c := range classes {
		if row, ok := table[c.reason]; ok && row.action != c.action {
			t.Errorf("README.md lists %q under %q; Classify gives %q for %v", c.reason, row.action, c.action, c.err)
		}
	}
	for _, v := range []undo.Result{undo.Healed, undo.NotHealed} {
		if action, reason := Verdict(v); table[reason].action != action {
			t.Errorf("README.md lists %q under %q; Verdict gives %q for %s", reason, table[reason].action, action, v)
		}
	}
	if _, reason := Classify(nil); table[reason].action != RolledBack {
		t.Errorf("README.md lists %q under %q; want %q", reason, table[reason].action, RolledBack)
	}
	for r, row := range table {
		if got := Retryable(r); got != row.retryable {
			t.Errorf("Retryable(%q) = %v; README.md's row %q says %v", r, got, row.heading, row.retryable)
		}
	}
}

type reasonRow struct {
	heading   string // the first cell as written, such as "`failed` (retryable: 503)"
	action    Action
	retryable bool
}

// readmeReasons reads the table after "**Reason codes.**": the first cell names the action
// (and for failures whether they are retried), the second the codes, each in backticks.
func readmeReasons(t *testing.T, path string) map[Reason]reasonRow {
	t.Helper()
	rows, err := readme.Table(path, "**Reason codes.**")
	if err != nil {
		t.Fatal(err)
	}
	code := regexp.MustCompile("`([^`]+)`")
	table := map[Reason]reasonRow{}
	n := 0
	for _, cells := range rows {
		if len(cells) != 2 {
			t.Fatalf("%s: reason-code row %q: want 2 cells, got %d", path, cells, len(cells))
		}
		m := code.FindStringSubmatch(cells[0])
		if m == nil {
			continue // the header row
		}
		row := reasonRow{heading: cells[0], action: Action(m[1]), retryable: strings.Contains(cells[0], "retryable")}
		n++
		for _, c := range code.FindAllStringSubmatch(cells[1], -1) {
			r := Reason(c[1])
			if prev, dup := table[r]; dup {
				t.Errorf("%s lists %q twice, under %q and %q", path, r, prev.heading, cells[0])
			}
			table[r] = row
		}
	}
	if n == 0 || len(table) == 0 {
		t.Fatalf("%s: found no rows in the reason-code table", path)
	}
	return table
}

// reasonConstants lists the values of the constants declared with type Reason in the
// package's source. Reflection cannot enumerate constants, so the source is the list.
func reasonConstants(t *testing.T) []Reason {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var out []Reason
	for _, file := range files {
		if !strings.HasSuffix(file, "_test.go") {
			out = append(out, reasonConstantsIn(t, file)...)
		}
	}
	if len(out) == 0 {
		t.Fatalf("package outcome declares no Reason constants")
	}
	return out
}

func reasonConstantsIn(t *testing.T, file string) []Reason {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatalf("parse %s: %v", file, err)
	}
	var out []Reason
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, s := range gd.Specs {
			vs := s.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Reason" {
				continue
			}
			for i, v := range vs.Values {
				lit, ok := v.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Fatalf("%s: Reason %s is not a string literal", file, vs.Names[i].Name)
				}
				s, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatalf("%s: %s: %v", file, vs.Names[i].Name, err)
				}
				out = append(out, Reason(s))
			}
		}
	}
	return out
}
