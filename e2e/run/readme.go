package run

import (
	"fmt"
	"os"
	"regexp"
	"strings"
)

// readmeMatch is the ROLLBACK_MATCH line of the README's kube-prometheus section, as a
// kservice.yaml env entry: `value: '<matchers>'` right after `- name: ROLLBACK_MATCH`.
var readmeMatch = regexp.MustCompile(`(?m)^\s*- name: ROLLBACK_MATCH\n\s*value: '([^'\n]+)'$`)

// ReadmeMatcher returns the ROLLBACK_MATCH the README's "Use it with kube-prometheus" section
// tells users to set, so the tests run the function with exactly what the README says.
func ReadmeMatcher() (string, error) {
	path, err := RepoFile("README.md")
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	_, section, ok := strings.Cut(string(b), "\n## Use it with kube-prometheus\n")
	if !ok {
		return "", fmt.Errorf("%s has no section \"Use it with kube-prometheus\"", path)
	}
	if next := strings.Index(section, "\n## "); next >= 0 {
		section = section[:next]
	}
	m := readmeMatch.FindAllStringSubmatch(section, -1)
	if len(m) != 1 {
		return "", fmt.Errorf("%s: %d ROLLBACK_MATCH values in \"Use it with kube-prometheus\"; want exactly 1", path, len(m))
	}
	return m[0][1], nil
}
