package readme

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestTable(t *testing.T) {
	doc := "# T\n\n## Settings\n\nText.\n\n| a | b |\n|---|:-:|\n| `X` | one |\n| `Y` | two \\| three |\n\nAfter.\n\n| c |\n|---|\n| z |\n"
	path := filepath.Join(t.TempDir(), "README.md")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	rows, err := Table(path, "## Settings")
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"a", "b"}, {"`X`", "one"}, {"`Y`", "two | three"}}
	if !slices.EqualFunc(rows, want, slices.Equal) {
		t.Fatalf("Table() = %q; want %q (the first table only, without its |---| line)", rows, want)
	}
	if _, err := Table(path, "## Nothing"); err == nil {
		t.Fatal("Table() of a missing marker: no error")
	}
}
