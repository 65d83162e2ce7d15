// Command demo-loop plays the whole loop on a real node with Knative Serving (`make
// demo-loop`): kube-state-metrics, Prometheus with the shipped rules, Alertmanager with the
// shipped configuration, and the function at zero. It applies two bad revisions with
// kubectl and from then on only watches the components heal them, printing each step's
// time since the bad rollout. It writes each timeline as an SVG (one bar per phase), and
// ends with one line for KubePodUnschedulable that other tools read:
//
//	loop: bad rollout -> healthy in <s> s (firing <s> s, rolled back <s> s, Ready <s> s, resolved <s> s)
package main

import (
	"context"
	"flag"
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
	svg := flag.String("svg", "loop.svg", "where to write KubePodUnschedulable's timeline as an SVG (the stuck rollout's goes beside it, -stuck.svg)")
	flag.Parse()
	if err := demo(*svg); err != nil {
		fmt.Fprintln(os.Stderr, "demo-loop failed:", err)
		os.Exit(1)
	}
}

func demo(svg string) error {
	began := time.Now()
	logf := func(format string, args ...any) {
		fmt.Printf("[%5.1fs] %s\n", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	dir, finish, err := cluster.LogDir("rollback-demo-loop-")
	if err != nil {
		return err
	}
	ok := false
	defer func() { finish(ok) }()

	logf("starting the control plane, a real node and Knative Serving (private network namespace)")
	kube, err := cluster.Start(ctx, cluster.Options{Dir: filepath.Join(dir, "cluster"), Log: os.Stdout, Knative: true, Audit: true})
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
	loopDir := filepath.Join(dir, "loop")
	if err := os.MkdirAll(loopDir, 0o755); err != nil {
		return err
	}
	l, err := run.StartLoop(ctx, run.LoopOptions{
		Kube: kube, Dir: loopDir, KService: "../kservice.yaml", Image: cluster.RollbackImage,
		Namespace: "demo", Logf: logf,
	})
	if err != nil {
		return err
	}
	defer l.Stop()

	var timelines []run.Timeline
	for _, s := range run.LoopScenarios() {
		tl, err := l.Run(ctx, s)
		if err != nil {
			return err
		}
		timelines = append(timelines, tl)
		path := svg
		if len(timelines) > 1 {
			path = strings.TrimSuffix(svg, ".svg") + "-stuck.svg"
		}
		if err := os.WriteFile(path, tl.SVG(), 0o644); err != nil {
			return err
		}
		fmt.Println()
		for _, line := range tl.Lines() {
			fmt.Println(line)
		}
		fmt.Println(tl.FunctionShare())
		abs, _ := filepath.Abs(path)
		fmt.Printf("timeline written to %s\n\n", abs)
	}
	l.Stop()
	if err := stopKube(); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	ok = true
	// The stuck rollout's line first, then the last line, for tools that read it.
	stuck, first := timelines[1], timelines[0]
	fmt.Printf("%s (%s)\n", strings.Replace(stuck.Summary(), "loop:", "loop "+stuck.Alert+":", 1), stuck.Deployment)
	fmt.Println(first.Summary())
	return nil
}
