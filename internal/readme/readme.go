// Package readme reads the tables of the README, so that tests can hold the code to what it
// documents (settings, reason codes) and the two cannot drift apart.
package readme

import (
	"fmt"
	"os"
	"strings"
)

// Table returns the rows of the first Markdown table after the line starting with marker
// ("## Settings", "**Reason codes.**") in the file at path: each row's cells, trimmed, the
// header row included and the |---| line left out.
func Table(path, marker string) ([][]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	i := strings.Index(string(b), "\n"+marker)
	if i < 0 {
		return nil, fmt.Errorf("%s: no %q", path, marker)
	}
	var rows [][]string
	for line := range strings.SplitSeq(string(b[i+1:]), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") {
			if len(rows) > 0 {
				break // the table ended
			}
			continue
		}
		// A cell may hold an escaped pipe, "\|" (a regular expression's alternation, say).
		var cells []string
		for c := range strings.SplitSeq(strings.ReplaceAll(strings.Trim(line, "|"), `\|`, "\x00"), "|") {
			cells = append(cells, strings.ReplaceAll(strings.TrimSpace(c), "\x00", "|"))
		}
		if strings.Trim(strings.Join(cells, ""), "-: ") == "" {
			continue // the |---| line
		}
		rows = append(rows, cells)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%s: no table after %q", path, marker)
	}
	return rows, nil
}
