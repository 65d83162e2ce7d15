package faults

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
	"github.com/sre-kit/alert-rollback/e2e/fixture"
	"github.com/sre-kit/alert-rollback/e2e/run"
	"github.com/sre-kit/alert-rollback/internal/outcome"
)

// want is an acceptable result of an answer: its action and reason code.
type want struct {
	action outcome.Action
	reason outcome.Reason
}

var (
	rolledBack     = want{outcome.RolledBack, outcome.ReasonRolledBack}
	alreadyHandled = want{outcome.Skipped, outcome.ReasonAlreadyHandled}
)

// The function's own timeouts are short here, so a hung call fails in seconds.
const apiTimeout = "2s"

var (
	patchDeployment = Is(http.MethodPatch, "deployments")
	anyGet          = Is(http.MethodGet, "")
)

// TestFaults drives the built function through faults between it and the kube-apiserver,
// and through restarts of the apiserver, of etcd and of the function itself, in the middle
// of a notification, with a real Alertmanager retrying (group_interval 1s, repeat 2s). In
// every case the broken Deployment ends undone exactly once or not at all (never twice,
// never back and forth), a fault a retry gets past is answered 5xx (or not at all) and a
// final one 2xx/4xx, and no version of the Deployment the apiserver shows carries a state
// annotation that disagrees with its template.
func TestFaults(t *testing.T) {
	cluster.Require(t, tools...)
	tests := []struct {
		name string
		// settings are added to the function's environment.
		settings map[string]string
		// alerts is how many alerts, one per pod of the bad revision, fire together (1 if 0).
		alerts int
		// replicas is how many function processes take turns at the deliveries (1 if 0).
		replicas int
		// inject arms the fault before the alert fires.
		inject func(h *harness, c *faultRun)
		// heal runs once, after the first delivery and before Alertmanager gets its answer.
		heal func(h *harness, c *faultRun)
		// retryable: the first delivery meets the fault, and a retry gets past it, so it must
		// not get a final answer (2xx or 4xx): Alertmanager would never send it again.
		retryable bool
		// wantStatus and want are the first final answer's status and result.
		wantStatus int
		want       []want
		undos      int
	}{
		{
			name: "latency 250ms on every answer",
			inject: func(h *harness, c *faultRun) {
				c.must(h.proxy.Toxic("latency", "downstream", map[string]any{"latency": 250}))
			},
			wantStatus: http.StatusOK, want: []want{rolledBack}, undos: 1,
		},
		{
			name:     "latency past the API timeout",
			settings: map[string]string{"ROLLBACK_API_TIMEOUT": "1s"},
			inject: func(h *harness, c *faultRun) {
				c.must(h.proxy.Toxic("latency", "downstream", map[string]any{"latency": 1500}))
			},
			heal:      func(h *harness, c *faultRun) { c.must(h.proxy.Clear()) },
			retryable: true, wantStatus: http.StatusOK, want: []want{rolledBack}, undos: 1,
		},
		{
			name: "connection resets",
			inject: func(h *harness, c *faultRun) {
				c.must(h.proxy.Toxic("reset_peer", "downstream", map[string]any{"timeout": 0}))
			},
			heal:      func(h *harness, c *faultRun) { c.must(h.proxy.Clear()) },
			retryable: true, wantStatus: http.StatusOK, want: []want{rolledBack}, undos: 1,
		},
		{
			name:      "500 on every read",
			inject:    func(h *harness, c *faultRun) { h.proxy.Add(&Rule{Name: "500 on GET", Match: anyGet, Status: 500}) },
			heal:      func(h *harness, c *faultRun) { c.must(h.proxy.Clear()) },
			retryable: true, wantStatus: http.StatusOK, want: []want{rolledBack}, undos: 1,
		},
		{
			name: "500 on the write",
			inject: func(h *harness, c *faultRun) {
				h.proxy.Add(&Rule{Name: "500 on PATCH", Match: patchDeployment, Status: 500})
			},
			heal:      func(h *harness, c *faultRun) { c.must(h.proxy.Clear()) },
			retryable: true, wantStatus: http.StatusOK, want: []want{rolledBack}, undos: 1,
		},
		{
			name: "three 409s on the write",
			inject: func(h *harness, c *faultRun) {
				h.proxy.Add(&Rule{Name: "409 on PATCH", Match: patchDeployment, Status: 409, Times: 3})
			},
			wantStatus: http.StatusOK, want: []want{rolledBack}, undos: 1,
		},
		{
			name: "409 storm on the write",
			inject: func(h *harness, c *faultRun) {
				h.proxy.Add(&Rule{Name: "409 on PATCH", Match: patchDeployment, Status: 409})
			},
			heal:      func(h *harness, c *faultRun) { c.must(h.proxy.Clear()) },
			retryable: true, wantStatus: http.StatusOK, want: []want{rolledBack}, undos: 1,
		},
		{
			// The write is held back longer than ROLLBACK_API_TIMEOUT, and never forwarded.
			name: "the write hangs past the API timeout",
			inject: func(h *harness, c *faultRun) {
				h.proxy.Add(&Rule{Name: "hang PATCH", Match: patchDeployment, Times: 1, Drop: true, Before: func() {
					time.Sleep(3 * time.Second) // the fault itself: longer than apiTimeout
				}})
			},
			retryable: true, wantStatus: http.StatusOK, want: []want{rolledBack}, undos: 1,
		},
		{
			name: "the write lands, its answer is lost",
			inject: func(h *harness, c *faultRun) {
				h.proxy.Add(&Rule{Name: "lose PATCH answer", Match: patchDeployment, LoseAnswer: true, Times: 1})
			},
			retryable: true, wantStatus: http.StatusOK, want: []want{alreadyHandled}, undos: 1,
		},
		{
			// Two replicas: the retry goes to the other one, which knows of the first one's
			// undo only through the state it wrote on the Deployment.
			name:     "the write lands, its answer is lost, the retry goes to another replica",
			replicas: 2,
			inject: func(h *harness, c *faultRun) {
				h.proxy.Add(&Rule{Name: "lose PATCH answer", Match: patchDeployment, LoseAnswer: true, Times: 1})
			},
			retryable: true, wantStatus: http.StatusOK, want: []want{alreadyHandled}, undos: 1,
		},
		{
			// What a kube-apiserver answers for a moment after it starts, before its RBAC
			// caches fill ("RBAC: clusterrole ... not found"): the function asks again
			// within a second instead of dropping the notification with a 422.
			name: "403 on the first two requests, as from a just-started apiserver",
			inject: func(h *harness, c *faultRun) {
				h.proxy.Add(&Rule{Name: "403 while RBAC caches fill", Status: 403, Times: 2})
			},
			wantStatus: http.StatusOK, want: []want{rolledBack}, undos: 1,
		},
		{
			name: "403 on the write (final)",
			inject: func(h *harness, c *faultRun) {
				h.proxy.Add(&Rule{Name: "403 on PATCH", Match: patchDeployment, Status: 403})
			},
			wantStatus: http.StatusUnprocessableEntity, want: []want{{outcome.Failed, outcome.ReasonForbidden}}, undos: 0,
		},
		{
			// Two alerts about one Deployment, and a limit of one workload: the lookups fail,
			// and a failed lookup must not turn a fault a retry gets past into a final refusal.
			name:     "connection resets with lookups over the blast radius",
			settings: map[string]string{"ROLLBACK_MAX_TARGETS": "1"},
			alerts:   2,
			inject: func(h *harness, c *faultRun) {
				c.must(h.proxy.Toxic("reset_peer", "downstream", map[string]any{"timeout": 0}))
			},
			heal:      func(h *harness, c *faultRun) { c.must(h.proxy.Clear()) },
			retryable: true, wantStatus: http.StatusOK, want: []want{rolledBack}, undos: 1,
		},
		{
			// Killed as the write goes out, and started again on the same port and data. Until
			// it is ready again the proxy cuts every request off, as a front that routes only to
			// a ready apiserver would (see the README for what the function gets without one).
			name: "kube-apiserver killed and restarted before the write",
			inject: func(h *harness, c *faultRun) {
				h.proxy.Add(&Rule{Name: "restart apiserver", Match: patchDeployment, Times: 1, Before: func() {
					down := &Rule{Name: "apiserver not ready", Drop: true}
					h.proxy.Add(down)
					start, err := kube.StopServer("kube-apiserver", true)
					c.must(err)
					c.background(func() error {
						defer h.proxy.Remove(down)
						return start(context.Background())
					})
				}})
			},
			retryable: true, wantStatus: http.StatusOK, want: []want{rolledBack}, undos: 1,
		},
		{
			name: "etcd killed during the write",
			inject: func(h *harness, c *faultRun) {
				c.etcd = make(chan func(context.Context) error, 1)
				h.proxy.Add(&Rule{Name: "kill etcd", Match: patchDeployment, Times: 1, Before: func() {
					start, err := kube.StopServer("etcd", true)
					c.must(err)
					c.etcd <- start // nil if it could not be stopped
				}})
			},
			heal: func(h *harness, c *faultRun) {
				select {
				case start := <-c.etcd:
					if start != nil {
						c.must(start(context.Background()))
					}
				case <-time.After(30 * time.Second):
					c.must(errors.New("etcd was not stopped"))
				}
			},
			// The write may have reached etcd before it stopped: either way, one undo.
			retryable: true, wantStatus: http.StatusOK, want: []want{rolledBack, alreadyHandled}, undos: 1,
		},
		{
			name: "function SIGKILLed before its write",
			inject: func(h *harness, c *faultRun) {
				h.proxy.Add(&Rule{Name: "kill function", Match: patchDeployment, Times: 1, Drop: true, Before: func() {
					c.must(h.function().Signal(syscall.SIGKILL))
				}})
			},
			heal:      func(h *harness, c *faultRun) { h.replaceFunction() },
			retryable: true, wantStatus: http.StatusOK, want: []want{rolledBack}, undos: 1,
		},
		{
			name: "function SIGKILLed after its write landed",
			inject: func(h *harness, c *faultRun) {
				h.proxy.Add(&Rule{Name: "kill function", Match: patchDeployment, Times: 1, After: func() {
					f := h.function()
					c.must(f.Signal(syscall.SIGKILL))
					<-f.Done()
				}})
			},
			heal:      func(h *harness, c *faultRun) { h.replaceFunction() },
			retryable: true, wantStatus: http.StatusOK, want: []want{alreadyHandled}, undos: 1,
		},
		{
			// Knative scales a replica down with SIGTERM: the notification in flight finishes.
			name: "function SIGTERMed before its write",
			inject: func(h *harness, c *faultRun) {
				h.proxy.Add(&Rule{Name: "stop function", Match: patchDeployment, Times: 1, Before: func() {
					c.must(h.function().Signal(syscall.SIGTERM))
				}})
			},
			heal:       func(h *harness, c *faultRun) { h.replaceFunction() },
			wantStatus: http.StatusOK, want: []want{rolledBack}, undos: 1,
		},
	}
	var rows []string
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			began := time.Now()
			alerts := max(tc.alerts, 1)
			settings := map[string]string{"ROLLBACK_API_TIMEOUT": apiTimeout}
			for k, v := range tc.settings {
				settings[k] = v
			}
			h := newHarness(t, fmt.Sprintf("fault-%d", i), settings, int32(alerts))
			for range max(tc.replicas, 1) - 1 {
				h.addReplica()
			}
			c := &faultRun{t: t}
			// A server the fault stopped is running again when the case ends, whatever
			// happened, so the next case has a whole control plane.
			t.Cleanup(c.restore)
			w := h.watch()
			var healOnce sync.Once
			rec := h.newRecorder(func(n int, d delivery) {
				if tc.heal != nil {
					healOnce.Do(func() { tc.heal(h, c) })
				}
			})
			tc.inject(h, c)
			am, err := run.StartAlertmanager(context.Background(), run.AlertmanagerOptions{
				Dir: h.dir, WebhookURL: rec.URL, CredentialsFile: writeFile(t, filepath.Join(h.dir, "credentials"), h.token),
				Timers: &run.Timers{GroupWait: "1s", GroupInterval: "1s", RepeatInterval: "2s"},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer am.Stop()
			if err := am.Fire(context.Background(), h.alerts(fmt.Sprintf("Fault%d", i))...); err != nil {
				t.Fatal(err)
			}

			// Until the first final answer, and one delivery after it: a re-send must change
			// nothing.
			var ds []delivery
			first := -1
			err = wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 90*time.Second, true, func(context.Context) (bool, error) {
				ds = rec.deliveries()
				first = firstFinal(ds)
				return first >= 0 && len(ds) > first+1, nil
			})
			am.Stop()
			if err != nil {
				t.Fatalf("no final answer and re-send in 90 s; deliveries:\n%s", list(ds))
			}
			// Judge the deliveries up to here: stopping Alertmanager may cut one off, which
			// says nothing about the function.
			c.wait()

			// What the function answered.
			if tc.retryable && ds[0].final() {
				t.Errorf("first delivery, during a fault a retry gets past, got a final answer %s: Alertmanager will not retry it", ds[0])
			}
			if !tc.retryable && !ds[0].final() {
				t.Errorf("first delivery got %s; want the fault absorbed and a final answer", ds[0])
			}
			for _, d := range ds[:first] {
				if d.status != 0 && d.status < 500 {
					t.Errorf("delivery before the final answer got %s; want 5xx or none", d)
				}
			}
			f := ds[first]
			if tc.replicas > 1 && f.by == ds[0].by {
				t.Errorf("the final answer came from %s, which took the first delivery too; want another replica", f.by)
			}
			if f.status != tc.wantStatus || len(f.resp.Results) != 1 || !matches(f.resp.Results[0], tc.want) {
				t.Errorf("first final answer %s; want %d with one result, one of %v", f, tc.wantStatus, tc.want)
			}
			for _, d := range ds[first+1:] {
				wantNext := []want{alreadyHandled}
				if tc.undos == 0 {
					wantNext = tc.want
				}
				if d.status != tc.wantStatus || len(d.resp.Results) != 1 || !matches(d.resp.Results[0], wantNext) {
					t.Errorf("re-send after the final answer got %s; want %d, one of %v", d, tc.wantStatus, wantNext)
				}
			}

			// What happened to the Deployment.
			ctx := context.Background()
			if err := fixture.WaitDeploymentRevision(ctx, kube.Clientset, h.ns, workload, int64(2+tc.undos)); err != nil {
				t.Error(err)
			}
			// Any further write would be a second undo: give it the time of a re-send.
			before := deploymentRV(t, h)
			err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Second, true, func(context.Context) (bool, error) {
				return deploymentRV(t, h) != before, nil
			})
			if err == nil {
				t.Errorf("the Deployment changed again after the case ended (resourceVersion %s -> %s)", before, deploymentRV(t, h))
			}
			versions, seq, violations := w.finish()
			for _, v := range violations {
				t.Errorf("state and template disagree: %s", v)
			}
			wantSeq := []string{"bad", "good"}[:1+tc.undos]
			if strings.Join(seq, ",") != strings.Join(wantSeq, ",") {
				t.Errorf("templates seen %v over %d versions; want %v", seq, versions, wantSeq)
			}
			landed := 0
			for _, s := range h.proxy.Seen() {
				if s.Method == http.MethodPatch && strings.Contains(s.Path, "/deployments/") && s.Upstream/100 == 2 {
					landed++
				}
			}
			if landed != tc.undos {
				t.Errorf("%d writes reached the apiserver and succeeded; want %d", landed, tc.undos)
			}

			outcomeText := fmt.Sprintf("%d undo (revision %d)", landed, 2+landed)
			if landed == 0 {
				outcomeText = "no undo (revision 2)"
			}
			row := fmt.Sprintf("| %s | %s | %s | %d ms | %.1f s |", tc.name, summary(ds, first), outcomeText,
				ds[first].took.Milliseconds(), time.Since(began).Seconds())
			t.Log(row)
			rows = append(rows, row)
			if t.Failed() {
				t.Logf("deliveries:\n%s\nrequests through the proxy:\n%s", list(ds), seen(h.proxy.Seen()))
			}
		})
	}
	t.Logf("fault table:\n| case | the function answered | outcome | final answer took | case took |\n|---|---|---|---|---|\n%s", strings.Join(rows, "\n"))
}

// faultRun holds what one case's fault started, so the test can wait for it and see its
// errors.
type faultRun struct {
	t  *testing.T
	wg sync.WaitGroup
	// etcd receives the function that starts etcd again once it is stopped.
	etcd chan func(context.Context) error
}

// must reports err from inside a fault's hook (which may run on the proxy's goroutines).
func (c *faultRun) must(err error) {
	if err != nil {
		c.t.Errorf("fault: %v", err)
	}
}

// background runs f (a restart) while the case goes on.
func (c *faultRun) background(f func() error) {
	c.wg.Go(func() { c.must(f()) })
}

func (c *faultRun) wait() { c.wg.Wait() }

// restore waits for the restarts in flight and starts etcd again if a fault stopped it and
// no heal did.
func (c *faultRun) restore() {
	c.wait()
	select {
	case start := <-c.etcd:
		if start != nil {
			c.must(start(context.Background()))
		}
	default:
	}
}

func firstFinal(ds []delivery) int {
	for i, d := range ds {
		if d.final() {
			return i
		}
	}
	return -1
}

func matches(r outcome.Result, wants []want) bool {
	for _, o := range wants {
		if r.Action == o.action && r.Reason == o.reason {
			return true
		}
	}
	return false
}

func deploymentRV(t *testing.T, h *harness) string {
	d, err := kube.Clientset.AppsV1().Deployments(h.ns).Get(context.Background(), workload, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d.ResourceVersion
}

// summary says in a line what the function answered: the deliveries up to the first final
// answer, then the re-sends.
func summary(ds []delivery, first int) string {
	var parts []string
	for i := 0; i <= first; {
		j := i
		for j <= first && short(ds[j]) == short(ds[i]) {
			j++
		}
		s := short(ds[i])
		if j-i > 1 {
			s = fmt.Sprintf("%s ×%d", s, j-i)
		}
		parts = append(parts, s)
		i = j
	}
	out := strings.Join(parts, " → ")
	if rest := ds[first+1:]; len(rest) > 0 {
		out += fmt.Sprintf("; re-sends: %s", short(rest[0]))
		if len(rest) > 1 {
			out += " ×" + strconv.Itoa(len(rest))
		}
	}
	return out
}

func short(d delivery) string {
	if d.status == 0 {
		return "no answer"
	}
	s := strconv.Itoa(d.status)
	reasons := map[string]bool{}
	for _, r := range d.resp.Results {
		reasons[string(r.Action)+" ("+string(r.Reason)+")"] = true
	}
	if len(reasons) == 1 {
		r := d.resp.Results[0]
		s += " " + string(r.Action) + " (" + string(r.Reason) + ")"
		if len(d.resp.Results) > 1 {
			s += fmt.Sprintf(" ×%d results", len(d.resp.Results))
		}
	}
	return s
}

func list(ds []delivery) string {
	var b strings.Builder
	for i, d := range ds {
		fmt.Fprintf(&b, "  %d. %s\n", i+1, d)
	}
	return b.String()
}

func seen(ss []Seen) string {
	var b strings.Builder
	for _, s := range ss {
		fmt.Fprintf(&b, "  %s %s %s rule=%q upstream=%d answered=%v took=%s err=%q\n", s.At.Format("15:04:05.000"),
			s.Method, s.Path, s.Rule, s.Upstream, s.Answered, s.Took.Round(time.Millisecond), s.Err)
	}
	return b.String()
}
