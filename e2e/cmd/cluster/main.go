// Command cluster runs the local control plane of the tests and the demo until interrupted,
// for trying the function by hand (`make cluster`): it prints the admin kubeconfig's path,
// a KUBECONFIG line to copy, and stops everything on Ctrl-C.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "rollback-cluster-")
	if err != nil {
		return err
	}
	start, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	c, err := cluster.Start(start, cluster.Options{Dir: filepath.Join(dir, "cluster"), Log: os.Stdout})
	if err != nil {
		return err
	}
	defer func() {
		_ = c.Stop()
		os.RemoveAll(dir)
	}()
	if err := c.CreateNode(start, "local-node"); err != nil {
		return err
	}
	fmt.Printf("\nA Node named local-node (4 CPUs, 8Gi, no kubelet) takes pods.\n")
	fmt.Printf("Use it from another shell:\n\n  export KUBECONFIG=%s\n\nCtrl-C stops it.\n", c.Kubeconfig)
	<-ctx.Done()
	fmt.Println("stopping")
	return nil
}
