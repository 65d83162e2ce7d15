package cluster

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// Kubectl runs the pinned kubectl as admin with args and returns its standard
// output. Its error includes kubectl's standard error, which is where kubectl
// says what went wrong.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	path, err := ToolPath("kubectl")
	if err != nil {
		return "", err
	}
	var stdout, stderr bytes.Buffer
	argv := append([]string{path, "--kubeconfig=" + c.Kubeconfig}, args...)
	if c.Netns != "" {
		// The apiserver listens inside the node's network namespace only.
		argv = append([]string{"nsenter", "--net=/run/netns/" + c.Netns, "--"}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
