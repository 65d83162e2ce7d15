package loop

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
	"github.com/sre-kit/alert-rollback/e2e/run"
)

// TestLoop plays both bad rollouts through the whole loop, then checks the shipped rules
// against the series the real kube-state-metrics exported meanwhile, and what the function
// reported (CloudEvents, OTLP counters) once it sends them.
func TestLoop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	dir := filepath.Join(filepath.Dir(kube.Dir), "loop")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := run.StartLoop(ctx, run.LoopOptions{
		Kube: kube, Dir: dir, KService: "../../kservice.yaml", Image: cluster.RollbackImage,
		Namespace: "loop", Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	if len(l.Shortened) == 0 {
		t.Errorf("no rule's for: was shortened; the loop would wait minutes")
	}

	for _, s := range run.LoopScenarios() {
		t.Run(s.Alert, func(t *testing.T) {
			tl, err := l.Run(ctx, s)
			for _, line := range tl.Lines() {
				fmt.Println(line)
			}
			if err != nil {
				t.Fatal(err)
			}
			fmt.Println(tl.Summary())
			fmt.Println(tl.FunctionShare())
		})
	}

	t.Run("shipped rules use real series", func(t *testing.T) {
		// The crash-loop rule's series appears only minutes into a crash loop: wait for it
		// (bounded) rather than let a fast run check before it exists.
		took, err := l.WaitCrashLoopBackOff(ctx, 6*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("the crash-looping pod's CrashLoopBackOff reached Prometheus %s after the pod was created", took.Round(time.Second))
		rules := loadedRules(ctx, t, l)
		checked := 0
		for _, r := range rules {
			// The rules that ask for an undo read kube-state-metrics: everything they
			// use, values included, must have existed during the loop. The function's
			// own health rules read what it pushes over OTLP; an event they count (an
			// undo that did not heal) need not have happened, so only their names and
			// labels are checked.
			strict := r.Labels["severity"] == "rollback"
			problems, err := l.Prometheus.CheckRule(ctx, r, l.Began, strict)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range problems {
				t.Errorf("%s (%s): %s", p.Rule, filepath.Base(r.File), p.Problem)
			}
			checked++
		}
		t.Logf("%d rules checked against Prometheus's series", checked)
	})
	t.Run("rule check catches rules over series that do not exist", func(t *testing.T) {
		testMutations(ctx, t, l)
	})
	t.Run("CloudEvents", func(t *testing.T) {
		if missing := l.Receiver.Missing(ctx); len(missing) > 0 {
			t.Errorf("no CloudEvent for %s at the receiver; got %d events: %v", strings.Join(missing, ", "), len(l.Receiver.Events()), l.Receiver.Events())
		}
	})
	t.Run("OTLP counters", func(t *testing.T) {
		series, err := l.FunctionSeries(ctx, l.Namespace, "rolled-back")
		if err != nil {
			t.Fatalf("no series in Prometheus from the function's OTLP counters with action rolled-back in %s: %v", l.Namespace, err)
		}
		t.Logf("the function's counters in Prometheus: %v", series)
	})
}

// loadedRules are the alerting rules Prometheus loaded, each of them healthy.
func loadedRules(ctx context.Context, t *testing.T, l *run.Loop) []run.LoadedRule {
	t.Helper()
	rules, err := l.Prometheus.Rules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) == 0 {
		t.Fatal("Prometheus loaded no alerting rules")
	}
	for _, r := range rules {
		if r.Health == "err" {
			t.Errorf("rule %s: %s", r.Name, r.LastError)
		}
	}
	return rules
}

// testMutations proves the rule check fails for each way a rule can use what does not
// exist: each shipped rule, changed in one place, must be reported.
func testMutations(ctx context.Context, t *testing.T, l *run.Loop) {
	byName := map[string]run.LoadedRule{}
	for _, r := range loadedRules(ctx, t, l) {
		byName[r.Name] = r
	}
	const (
		unschedulable = "KubePodUnschedulable"
		stuck         = "AlertRollbackDeploymentRolloutStuck"
		crashLooping  = "AlertRollbackPodCrashLooping"
	)
	tests := []struct {
		name, rule string
		// old is replaced by new in the query, or with annotation set in that annotation.
		old, new, annotation string
		// names only: checked as the function's own health rules are (metric and label
		// names, not values).
		namesOnly bool
	}{
		{"metric that does not exist", unschedulable, "kube_pod_status_unschedulable", "kube_pod_status_unschedulable_typo", "", false},
		{"matcher value no series has", stuck, `condition="Progressing"`, `condition="Progresing"`, "", false},
		{"matcher label no series has", stuck, `status="false"`, `state="false"`, "", false},
		{"by() label no series has", stuck, "by (namespace, deployment)", "by (namespace, deploy)", "", false},
		{"on() label one side lacks", crashLooping, "on (namespace, pod)", "on (namespace, pod_name)", "", false},
		{"group_left() label the other side lacks", crashLooping, "group_left (owner_kind)", "group_left (owner)", "", false},
		{"annotation label the expression drops", unschedulable, "$labels.pod", "$labels.container", "summary", false},
		{"names only: metric that does not exist", stuck, "kube_deployment_status_condition", "kube_deployment_status_conditions", "", true},
		{"names only: matcher label no series has", stuck, `status="false"`, `state="false"`, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := byName[tt.rule]
			if !ok {
				t.Fatalf("rule %s not loaded", tt.rule)
			}
			r.Annotations = copyMap(r.Annotations)
			text := r.Query
			if tt.annotation != "" {
				text = r.Annotations[tt.annotation]
			}
			if !strings.Contains(text, tt.old) {
				t.Fatalf("rule %s has no %q to change in %q", tt.rule, tt.old, text)
			}
			text = strings.Replace(text, tt.old, tt.new, 1)
			if tt.annotation != "" {
				r.Annotations[tt.annotation] = text
			} else {
				r.Query = text
			}
			problems, err := l.Prometheus.CheckRule(ctx, r, l.Began, !tt.namesOnly)
			if err != nil {
				t.Fatal(err)
			}
			if len(problems) == 0 {
				t.Fatalf("CheckRule(%s with %q for %q) found nothing; want a problem", tt.rule, tt.new, tt.old)
			}
			t.Logf("%s with %q: %v", tt.rule, tt.new, problems)
		})
	}
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
