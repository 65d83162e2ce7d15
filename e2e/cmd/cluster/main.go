// Command cluster runs the local control plane of the tests and the demo until interrupted,
// for trying the function by hand (`make cluster`): it prints the admin kubeconfig's path,
// a KUBECONFIG line to copy, and stops everything on Ctrl-C. With -knative
// (`make cluster KNATIVE=1`) it runs a real node with Knative Serving in a private network
// namespace instead, and prints how to use it from inside that namespace.
package main

import (
	"context"
	"flag"
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
	knative := flag.Bool("knative", false, "a real node with Knative Serving, in a private network namespace")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "rollback-cluster-")
	if err != nil {
		return err
	}
	start, cancel := context.WithTimeout(ctx, 8*time.Minute)
	defer cancel()
	c, err := cluster.Start(start, cluster.Options{Dir: filepath.Join(dir, "cluster"), Log: os.Stdout, Knative: *knative})
	if err != nil {
		return err
	}
	defer func() {
		if err := c.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop:", err)
		}
		os.RemoveAll(dir)
	}()
	if *knative {
		kubectl, err := cluster.ToolPath("kubectl")
		if err != nil {
			return err
		}
		fmt.Printf("\nNode %s (%s) with Knative Serving v0.50.0 and Traefik, in network namespace %s.\n", cluster.NodeName, cluster.NodeIP, c.Netns)
		fmt.Printf("Its addresses exist only inside that namespace. Use it from another shell, as root:\n\n")
		fmt.Printf("  export KUBECONFIG=%s\n", c.Kubeconfig)
		fmt.Printf("  ip netns exec %s %s get ksvc,pods -A\n\n", c.Netns, kubectl)
		fmt.Printf("Images there: %s, %s, %s. Ctrl-C stops it.\n", cluster.RollbackImage, cluster.FuncImage, cluster.AppImage)
		<-ctx.Done()
		fmt.Println("stopping")
		return nil
	}
	if err := c.CreateNode(start, "local-node"); err != nil {
		return err
	}
	fmt.Printf("\nA Node named local-node (4 CPUs, 8Gi, no kubelet) takes pods.\n")
	fmt.Printf("Use it from another shell:\n\n  export KUBECONFIG=%s\n\nCtrl-C stops it.\n", c.Kubeconfig)
	<-ctx.Done()
	fmt.Println("stopping")
	return nil
}
