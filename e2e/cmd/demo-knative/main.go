// Command demo-knative plays the product's main claim on a real node with Knative Serving
// (`make demo-knative`): the function from kservice.yaml scales to zero, a real Alertmanager
// sends the seed's alert to its cluster-local address, the function wakes (0 -> 1), rolls
// the broken Deployment back, and scales to zero again; a later alert wakes it and is skipped.
// It prints the function's pod count as it changes, and ends with one summary line that
// other tools read:
//
//	knative: pods 0 -> 1 -> 0; cold answer <ms> ms; warm answer <ms> ms; <action>
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
	"github.com/sre-kit/alert-rollback/e2e/run"
)

func main() {
	if err := demo(); err != nil {
		fmt.Fprintln(os.Stderr, "demo-knative failed:", err)
		os.Exit(1)
	}
}

func demo() error {
	began := time.Now()
	logf := func(format string, args ...any) {
		fmt.Printf("[%5.1fs] %s\n", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	dir, finish, err := cluster.LogDir("rollback-demo-knative-")
	if err != nil {
		return err
	}
	ok := false
	defer func() { finish(ok) }()

	logf("starting the control plane, a real node and Knative Serving (private network namespace)")
	kube, err := cluster.Start(ctx, cluster.Options{Dir: filepath.Join(dir, "cluster"), Log: os.Stdout, Knative: true})
	if err != nil {
		return err
	}
	stopped := false
	stopKube := func() error {
		if stopped {
			return nil
		}
		stopped = true
		logf("stopping everything")
		return kube.Stop()
	}
	defer stopKube()
	story := &run.KnativeStory{
		Kube: kube, Dir: dir, KService: "../kservice.yaml", Image: cluster.RollbackImage,
		Namespace: "demo", Logf: logf, EndAtZero: true,
	}
	res, err := story.Run(ctx)
	if err != nil {
		return err
	}
	logf("pod start %s (API timestamps, whole seconds); second cold answer %d ms; kservice.yaml Ready in %d ms", res.PodStartText(), res.ColdAgain.Milliseconds(), res.Ready.Milliseconds())
	if err := stopKube(); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	ok = true
	// The last line, for tools that read it.
	fmt.Printf("knative: pods %s; cold answer %d ms; warm answer %d ms; %s\n",
		firstCycle(res.Pods[res.Woken:]), res.ColdAnswer.Milliseconds(), res.WarmAnswer.Milliseconds(), res.Action)
	return nil
}

// firstCycle is the pod counts from the first time at zero (when the alert fired) to the
// next time at zero, "0 -> 1 -> 0" when one pod served the alert.
func firstCycle(pods []int) string {
	start := -1
	for i, n := range pods {
		if n == 0 {
			start = i
			break
		}
	}
	if start < 0 {
		return fmt.Sprint(pods)
	}
	var out []string
	for i := start; i < len(pods); i++ {
		out = append(out, fmt.Sprint(pods[i]))
		if i > start && pods[i] == 0 {
			break
		}
	}
	return strings.Join(out, " -> ")
}
