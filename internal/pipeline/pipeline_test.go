package pipeline

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/sre-kit/alert-rollback/internal/alert"
	"github.com/sre-kit/alert-rollback/internal/fixture"
	"github.com/sre-kit/alert-rollback/internal/kinds"
	"github.com/sre-kit/alert-rollback/internal/kube/clientset"
	"github.com/sre-kit/alert-rollback/internal/outcome"
	"github.com/sre-kit/alert-rollback/internal/target"
	"github.com/sre-kit/alert-rollback/internal/undo"
)

// events counts the Events recorded on workloads, by reason code.
type events struct {
	mu sync.Mutex
	n  map[outcome.Reason]int
}

func (e *events) Record(_ kinds.Ref, _ types.UID, r outcome.Result) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n[r.Reason]++
}
func (e *events) RecordRelated(corev1.ObjectReference, outcome.Result) {}
func (e *events) Shutdown()                                            {}

func newPipeline(t *testing.T, c *fake.Clientset, cfg Config) (*Pipeline, *events) {
	t.Helper()
	client := clientset.Wrap(c)
	m, err := alert.ParseMatcher(`severity="rollback"`)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Match = m
	ev := &events{n: map[outcome.Reason]int{}}
	r := &target.Resolver{Client: client, OwnNamespace: ownNamespace}
	u := undo.New(client, undo.Options{})
	return New(cfg, zap.NewNop().Sugar(), r, u, ev), ev
}

func firing(i int, kv ...string) alert.Alert {
	a := alert.Alert{Status: "firing", Fingerprint: fmt.Sprintf("%016x", i),
		Labels:   map[string]string{"alertname": "KubePodUnschedulable", "severity": "rollback", "namespace": ownNamespace},
		StartsAt: fixture.AlertStart}
	for i := 0; i+1 < len(kv); i += 2 {
		a.Labels[kv[i]] = kv[i+1]
	}
	return a
}

// TestRun: a notification goes through every step of the pipeline in one pass: the alerts
// that count, their workloads, the blast radius, the undo, the memory of what was handled
// (a copy costs no API call and no Event) and the report.
func TestRun(t *testing.T) {
	objects := func() []runtime.Object {
		var objs []runtime.Object
		for _, name := range []string{"web", "api"} {
			d, rss := fixture.Deployment(ownNamespace, name, name+":v1", name+":v2")
			objs = append(append(objs, d), fixture.Objects(rss...)...)
		}
		return objs
	}
	web, api := firing(1, "deployment", "web"), firing(2, "deployment", "api")
	ignored := firing(3, "deployment", "web")
	ignored.Labels["severity"] = "info"
	tests := []struct {
		name        string
		cfg         Config
		first, then []alert.Alert
		want        []string // reason codes of the last notification's results
		wantIgnored int
		// wantPatched is what the last notification's patches write, decoded from their
		// bytes: namespace/name -> the image of the restored template.
		wantPatched map[string]string
		wantEvents  map[outcome.Reason]int
	}{
		{
			name: "one workload rolled back", cfg: Config{MaxAlerts: 10, MaxTargets: 10},
			first: []alert.Alert{web, ignored}, want: []string{"rolled-back"}, wantIgnored: 1, wantPatched: map[string]string{ownNamespace + "/web": "web:v1"},
			wantEvents: map[outcome.Reason]int{"rolled-back": 1},
		},
		{
			name: "a copy is answered from memory", cfg: Config{MaxAlerts: 10, MaxTargets: 10},
			first: []alert.Alert{web}, then: []alert.Alert{web}, want: []string{"already-handled"}, wantPatched: map[string]string{},
			wantEvents: map[outcome.Reason]int{"rolled-back": 1},
		},
		{
			name: "over the blast radius nothing is undone", cfg: Config{MaxAlerts: 10, MaxTargets: 1},
			first: []alert.Alert{web, api}, want: []string{"too-many-targets", "too-many-targets"}, wantPatched: map[string]string{},
			wantEvents: map[outcome.Reason]int{},
		},
		{
			name: "over the alert limit nothing is looked up", cfg: Config{MaxAlerts: 1, MaxTargets: 10},
			first: []alert.Alert{web, api}, want: []string{"too-many-alerts"}, wantPatched: map[string]string{},
			wantEvents: map[outcome.Reason]int{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fixture.Clientset(objects()...)
			p, ev := newPipeline(t, c, tt.cfg)
			resp := p.Run(context.Background(), &alert.Message{Alerts: tt.first})
			if tt.then != nil {
				c.ClearActions()
				resp = p.Run(context.Background(), &alert.Message{Alerts: tt.then})
				if n := len(c.Actions()); n != 0 {
					t.Errorf("the copy made %d API calls; want none: it is answered from memory", n)
				}
			}
			var got []string
			for _, r := range resp.Results {
				got = append(got, string(r.Reason))
			}
			if !cmp.Equal(got, tt.want) || resp.Ignored != tt.wantIgnored {
				t.Errorf("Run() = %v, %d ignored; want %v, %d ignored", got, resp.Ignored, tt.want, tt.wantIgnored)
			}
			changes, err := fixture.Changes(objects(), c.Actions())
			if err != nil {
				t.Fatal(err)
			}
			patched := map[string]string{}
			for _, ch := range changes {
				patched[ch.Key] = ch.Image
				if diff := cmp.Diff([]string{"metadata.annotations", "spec.template"}, ch.Fields); diff != "" {
					t.Errorf("patch of %s changed (-want +got):\n%s", ch.Key, diff)
				}
			}
			if diff := cmp.Diff(tt.wantPatched, patched); diff != "" {
				t.Errorf("patches (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantEvents, ev.n); diff != "" {
				t.Errorf("Events (-want +got):\n%s", diff)
			}
		})
	}
}
