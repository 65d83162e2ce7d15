package run

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestShortenFor(t *testing.T) {
	rules := `groups:
  - name: g
    rules:
      - alert: Slow
        expr: up == 0
        # for: 10m in a comment stays
        for: 10m
        keep_firing_for: 5m
      - alert: Quick
        expr: up == 0
        for: 2s
      - alert: NoFor
        expr: up == 0
`
	tests := []struct {
		name     string
		max      time.Duration
		wantFors []string
		want     []ShortenedFor
	}{
		{"longer ones shortened", 3 * time.Second, []string{"3s", "2s"}, []ShortenedFor{{Alert: "Slow", From: "10m", To: "3s"}}},
		{"nothing longer", time.Hour, []string{"10m", "2s"}, nil},
		{"every one", time.Second, []string{"1s", "1s"}, []ShortenedFor{{"Slow", "10m", "1s"}, {"Quick", "2s", "1s"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, changed, err := ShortenFor([]byte(rules), tt.max)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, changed); diff != "" {
				t.Errorf("ShortenFor changes (-want +got):\n%s", diff)
			}
			fors := regexp.MustCompile(`(?m)^\s+for: (\S+)$`).FindAllStringSubmatch(string(out), -1)
			var got []string
			for _, m := range fors {
				got = append(got, m[1])
			}
			if diff := cmp.Diff(tt.wantFors, got); diff != "" {
				t.Errorf("for: values (-want +got):\n%s", diff)
			}
			// Nothing else changes: the same lines but the for: ones.
			in, res := strings.Split(rules, "\n"), strings.Split(string(out), "\n")
			if len(in) != len(res) {
				t.Fatalf("%d lines; want %d", len(res), len(in))
			}
			for i := range in {
				if in[i] != res[i] && !strings.HasPrefix(strings.TrimSpace(in[i]), "for:") {
					t.Errorf("line %d changed: %q -> %q", i+1, in[i], res[i])
				}
			}
		})
	}
}

// TestShortenForShippedRules: every rule that ships gets a short for: in the loop.
func TestShortenForShippedRules(t *testing.T) {
	files, err := ShippedRuleFiles()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out, _, err := ShortenFor(b, LoopFor)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`(?m)^\s+for: (\S+)\s*$`).FindAllStringSubmatch(string(out), -1) {
			if d, err := time.ParseDuration(m[1]); err != nil || d > LoopFor {
				t.Errorf("%s: for: %s left in the loop's rules; want at most %s", f, m[1], LoopFor)
			}
		}
	}
}

func TestTemplateLabels(t *testing.T) {
	tests := []struct {
		name, text string
		want       []string
	}{
		{"dot", "Pod {{ $labels.namespace }}/{{ $labels.pod }} and {{$labels.pod}}", []string{"namespace", "pod"}},
		{"index", `{{ index $labels "owner_kind" }}`, []string{"owner_kind"}},
		{"none", "{{ $value }} no labels", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, TemplateLabels(tt.text)); diff != "" {
				t.Errorf("TemplateLabels(%q) (-want +got):\n%s", tt.text, diff)
			}
		})
	}
}

// TestTimelineSummary: the demo's last line, exactly as the issue spells it.
func TestTimelineSummary(t *testing.T) {
	start := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return start.Add(time.Duration(s * float64(time.Second))) }
	tl := Timeline{Alert: "KubePodUnschedulable", Deployment: "checkout-api", Start: start, Steps: []Step{
		{Name: StepFailing, At: at(1)}, {Name: StepPending, At: at(2)}, {Name: StepFiring, At: at(5)},
		{Name: StepNotified, At: at(15)}, {Name: StepWoken, At: at(15.2)}, {Name: StepAnswer, At: at(18.9)},
		{Name: StepReady, At: at(19.4)}, {Name: StepResolved, At: at(21.05)}, {Name: StepZero, At: at(40)},
	}}
	want := "loop: bad rollout -> healthy in 21.1 s (firing 5.0 s, rolled back 18.9 s, Ready 19.4 s, resolved 21.1 s)"
	if got := tl.Summary(); got != want {
		t.Errorf("Summary() = %q; want %q", got, want)
	}
	svg := string(tl.SVG())
	if n := strings.Count(svg, "<rect x="); n != len(Phases) {
		t.Errorf("SVG has %d bars; want one per phase (%d)", n, len(Phases))
	}
	if strings.Contains(svg, "not measured") {
		t.Errorf("SVG says a phase was not measured; every step is set")
	}
}
