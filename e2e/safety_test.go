package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sre-kit/alert-rollback/e2e/fixture"
	"github.com/sre-kit/alert-rollback/e2e/run"
	"github.com/sre-kit/alert-rollback/internal/outcome"
	"github.com/sre-kit/alert-rollback/internal/undo"
)

// fastTimers make Alertmanager send a group within a second and repeat it every 2 s.
var fastTimers = &run.Timers{GroupWait: "1s", GroupInterval: "1s", RepeatInterval: "2s"}

// TestResendsChangeNothing: Alertmanager re-sends a firing group every repeat_interval.
// After the undo, at least five re-sends change nothing: the revision and the template stay
// put. The alert names the Deployment (so no stale check applies), the cooldown is off, and
// an earlier good revision exists: only the one-undo-per-alert guard stands between a
// re-send and a second undo. When the alert resolves, the resolved notification verifies
// the undo, and never causes another.
func TestResendsChangeNothing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.brokenAfter("search-api", 2) // v1, v2 good; v3 (revision 3) unschedulable
	f := e.startFunction("rollback", map[string]string{"ROLLBACK_COOLDOWN": "0s"})
	rec := newRecorder(t, f.URL)
	am, err := run.StartAlertmanager(ctx, run.AlertmanagerOptions{Dir: e.dir, WebhookURL: rec.URL,
		CredentialsFile: writeFile(t, filepath.Join(e.dir, "credentials"), e.token), Timers: fastTimers})
	if err != nil {
		t.Fatal(err)
	}
	defer am.Stop()

	a := alertWith(map[string]string{"alertname": "SearchAPIBroken", "severity": "rollback", "namespace": e.ns, "deployment": "search-api"}, time.Now())
	if err := am.Fire(ctx, amAlert(a)); err != nil {
		t.Fatal(err)
	}
	if err := fixture.WaitDeploymentRevision(ctx, e.cs, e.ns, "search-api", 4); err != nil {
		t.Fatal(err)
	}
	after := e.deployment("search-api")
	if img := after.Spec.Template.Spec.Containers[0].Image; !strings.HasSuffix(img, ":v2") {
		t.Fatalf("image after the undo = %s; want v2", img)
	}
	undoneAt := len(rec.deliveries())

	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
		return len(rec.deliveries()) >= undoneAt+5, nil
	})
	if err != nil {
		t.Fatalf("%d re-sends in 60 s; want 5", len(rec.deliveries())-undoneAt)
	}
	for i, d := range rec.deliveries()[undoneAt:] {
		r := answer(t, d)
		if d.status != http.StatusOK || len(r.Results) != 1 || r.Results[0].Action != "skipped" ||
			r.Results[0].Reason != outcome.ReasonAlreadyHandled {
			t.Errorf("re-send %d answered %d %s; want 200 skipped: already caused a rollback", i+1, d.status, d.answer)
		}
	}
	now := e.deployment("search-api")
	if now.Annotations["deployment.kubernetes.io/revision"] != "4" || !fixture.SameTemplate(now.Spec.Template, after.Spec.Template) {
		t.Errorf("after the re-sends: revision %s, template %+v; want revision 4 and the template of the undo",
			now.Annotations["deployment.kubernetes.io/revision"], now.Spec.Template)
	}
	if ev, _ := fixture.Events(ctx, e.cs, e.ns, "Deployment", "search-api", "RolledBack"); len(ev) != 1 {
		t.Errorf("%d RolledBack events; want 1", len(ev))
	}

	// Resolve it: Alertmanager sends the resolved notification (send_resolved: true).
	resolved := amAlert(a)
	resolved.EndsAt = time.Now()
	if err := am.Fire(ctx, resolved); err != nil {
		t.Fatal(err)
	}
	var d delivery
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		for _, x := range rec.deliveries() {
			if strings.Contains(string(x.body), `"status":"resolved"`) {
				d = x
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatal("no resolved notification")
	}
	// It verifies the undo: revision 2's pod is bound but never runs (no kubelet here), so the
	// rollout is still in progress, and nothing is written.
	if r := answer(t, d); d.status != http.StatusOK || r.Ignored != 0 || len(r.Results) != 1 ||
		r.Results[0].Action != outcome.Skipped || r.Results[0].Reason != outcome.ReasonVerifying {
		t.Errorf("resolved notification answered %d %s; want 200, skipped verifying", d.status, d.answer)
	}
	if final := e.deployment("search-api"); final.Annotations[undo.StateAnnotation] != now.Annotations[undo.StateAnnotation] {
		t.Errorf("the resolved notification changed the state to %s; want it as after the undo", final.Annotations[undo.StateAnnotation])
	}
	saveCapture(t, "alertmanager-v0.31.1-resolved.json", d)
}

// TestDuplicateStorm: two Alertmanagers deliver the same group, and 200 copies of the same
// notification are POSTed at once, spread over three function processes: exactly one undo,
// for a Deployment (alert about its pod) and a StatefulSet (alert naming it). The API
// server's audit log shows what the copies cost: each process reads the workload for its
// first copies only (the others wait, then are answered from memory), and only the undo
// makes an Event.
func TestDuplicateStorm(t *testing.T) {
	e := newEnv(t)
	var fns []*run.Function
	// The storm is about copies reaching the handler at the same moment: lift the server's
	// bound on notifications at once (10), which would answer most of them 503.
	for i := range 3 {
		fns = append(fns, e.startFunction(fmt.Sprintf("rollback-%d", i), map[string]string{"ROLLBACK_MAX_CONCURRENT": "200"}))
	}
	tests := []struct {
		kind, name string
		// setup makes the broken workload and returns the alert's workload labels.
		setup func() map[string]string
		// undone reports whether the controller has recorded the one undo.
		undone func(ctx context.Context) error
	}{
		{
			kind: "Deployment", name: "ledger-writer",
			setup: func() map[string]string { return map[string]string{"pod": e.brokenDeployment("ledger-writer")} },
			undone: func(ctx context.Context) error {
				return fixture.WaitDeploymentRevision(ctx, e.cs, e.ns, "ledger-writer", 3)
			},
		},
		{
			kind: "StatefulSet", name: "ledger-db",
			setup: func() map[string]string {
				e.revisionRollout("StatefulSet", "ledger-db", 2)
				return map[string]string{"statefulset": "ledger-db"}
			},
			undone: func(ctx context.Context) error {
				return fixture.WaitControllerRevision(ctx, e.cs, e.ns, "ledger-db", 3)
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.kind, func(t *testing.T) {
			ctx := context.Background()
			labels := tc.setup()
			mark, err := kube.AuditMark()
			if err != nil {
				t.Fatal(err)
			}
			labels["alertname"], labels["namespace"], labels["severity"] = "LedgerBroken", e.ns, "rollback"
			a := alertWith(labels, time.Now())
			var recs []*recorder
			for i := range 2 {
				rec := newRecorder(t, fns[i].URL)
				recs = append(recs, rec)
				am, err := run.StartAlertmanager(ctx, run.AlertmanagerOptions{Dir: e.dir, Name: fmt.Sprintf("alertmanager-%s-%d", tc.name, i),
					WebhookURL: rec.URL, CredentialsFile: writeFile(t, filepath.Join(e.dir, fmt.Sprintf("credentials-%s-%d", tc.name, i)), e.token),
					Timers: &run.Timers{GroupWait: "1s", GroupInterval: "1s", RepeatInterval: "1h"}})
				if err != nil {
					t.Fatal(err)
				}
				defer am.Stop()
				if err := am.Fire(ctx, amAlert(a)); err != nil {
					t.Fatal(err)
				}
			}

			body := notification(a)
			var mu sync.Mutex
			var answers []outcome.Result
			var wg sync.WaitGroup
			for i := range 200 {
				wg.Go(func() {
					status, resp, err := fns[i%3].Post(ctx, body, e.token)
					mu.Lock()
					defer mu.Unlock()
					if err != nil || status != http.StatusOK || len(resp.Results) != 1 {
						t.Errorf("POST %d = %d %+v %v; want 200 and one result", i, status, resp, err)
						return
					}
					answers = append(answers, resp.Results[0])
				})
			}
			wg.Wait()
			err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
				return len(recs[0].deliveries()) > 0 && len(recs[1].deliveries()) > 0, nil
			})
			if err != nil {
				t.Fatal("the Alertmanagers did not both deliver")
			}
			for _, rec := range recs {
				for _, d := range rec.deliveries() {
					answers = append(answers, answer(t, d).Results...)
				}
			}

			rolledBack := 0
			for _, r := range answers {
				switch {
				case r.Action == "rolled-back":
					rolledBack++
				case r.Action != "skipped" || r.Reason != outcome.ReasonAlreadyHandled:
					t.Errorf("a duplicate got %s %q; want skipped as already handled", r.Action, r.Reason)
				}
			}
			if rolledBack != 1 {
				t.Errorf("%d of %d answers say rolled-back; want exactly 1", rolledBack, len(answers))
			}
			if err := tc.undone(ctx); err != nil {
				t.Fatal(err)
			}
			// Events are sent asynchronously: wait for the one, then check no second
			// one follows.
			if _, err := fixture.WaitEvents(ctx, e.cs, e.ns, tc.kind, tc.name, "RolledBack", 1); err != nil {
				t.Fatal(err)
			}
			consistently(t, 2*time.Second, func(ctx context.Context) error {
				ev, err := fixture.Events(ctx, e.cs, e.ns, tc.kind, tc.name, "RolledBack")
				if err == nil && (len(ev) != 1 || ev[0].Count != 1) {
					var msgs []string
					for _, x := range ev {
						msgs = append(msgs, fmt.Sprintf("%dx %s", x.Count, x.Message))
					}
					return fmt.Errorf("RolledBack events = %d %q; want exactly one, once", len(ev), msgs)
				}
				return err
			})
			// Without the memory of settled occurrences every copy read the pod, the
			// workload and its history: 3 or more requests each, 600 for the 200 POSTs.
			// With it, each process reads once (4 requests), plus, when replicas race to
			// write, a re-read per conflict it loses (3 each, up to the undo's 5 attempts):
			// a bound that does not grow with the number of copies.
			requests, events := e.functionRequests(mark)
			const perProcess = 4 + 5*3
			if requests > perProcess*len(fns) {
				t.Errorf("the function made %d API requests (Events aside) for %d copies on %d processes; want at most %d per process",
					requests, len(answers), len(fns), perProcess)
			}
			if events != 1 {
				t.Errorf("the function made %d Event requests; want 1, the undo's: copies make none", events)
			}
			t.Logf("%d answers (200 POSTs and the Alertmanagers' deliveries): %d rolled-back, the rest skipped; %d API requests and %d for Events",
				len(answers), rolledBack, requests, events)
		})
	}
}

// TestCooldownAndNextGoodRevision: a second, different alert inside the cooldown is
// refused; after it, the undo goes to the newest good revision, never back to a bad one,
// and when none is left it refuses.
func TestCooldownAndNextGoodRevision(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	pod := e.brokenDeployment("pricing")
	f := e.startFunction("rollback", map[string]string{"ROLLBACK_COOLDOWN": "4s"})
	post := func(a map[string]string, startsAt time.Time) outcome.Result {
		t.Helper()
		status, resp, err := f.Post(ctx, notification(alertWith(a, startsAt)), e.token)
		if err != nil || status != http.StatusOK || len(resp.Results) != 1 {
			t.Fatalf("POST = %d %+v %v", status, resp, err)
		}
		return resp.Results[0]
	}

	// v2 is bad: undone to v1 (revision 3).
	if r := post(seedAlert(e.ns, pod, time.Now()).Labels, time.Now()); r.Action != "rolled-back" || r.FromRevision != 2 || r.ToRevision != 1 {
		t.Fatalf("first alert: %+v; want rolled back from 2 to 1", r)
	}
	if err := fixture.WaitDeploymentRevision(ctx, e.cs, e.ns, "pricing", 3); err != nil {
		t.Fatal(err)
	}
	// v4 is rolled out (revision 4), and is bad too.
	err := fixture.UpdateDeployment(ctx, e.cs, e.ns, "pricing", 4, func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.Containers[0] = fixture.Container("registry.invalid/pricing:v4", "64")
	})
	if err != nil {
		t.Fatal(err)
	}
	second := map[string]string{"alertname": "PricingErrors", "severity": "rollback", "namespace": e.ns, "deployment": "pricing"}
	startsAt := time.Now()
	if r := post(second, startsAt); r.Action != "refused" || r.Reason != outcome.ReasonCooldown {
		t.Fatalf("second alert inside the cooldown: %+v; want refused (cooldown)", r)
	}
	// After the cooldown the same alert is acted on: back to v1 (revision 3), not to v2.
	var r outcome.Result
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		r = post(second, startsAt)
		return r.Action != "refused", nil
	})
	if err != nil || r.Action != "rolled-back" || r.FromRevision != 4 || r.ToRevision != 3 {
		t.Fatalf("second alert after the cooldown: %+v (%v); want rolled back from 4 to 3", r, err)
	}
	if err := fixture.WaitDeploymentRevision(ctx, e.cs, e.ns, "pricing", 5); err != nil {
		t.Fatal(err)
	}
	if img := e.deployment("pricing").Spec.Template.Spec.Containers[0].Image; !strings.HasSuffix(img, ":v1") {
		t.Errorf("image = %s; want v1, the only good revision", img)
	}
	// A third alert: the only earlier revisions (v2, v4) were rolled back from: refused.
	third := map[string]string{"alertname": "PricingLatency", "severity": "rollback", "namespace": e.ns, "deployment": "pricing"}
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		r = post(third, startsAt)
		return r.Reason != outcome.ReasonCooldown, nil
	})
	if err != nil || r.Action != "refused" || r.Reason != outcome.ReasonNoGoodRevision {
		t.Fatalf("third alert: %+v (%v); want refused: no good revision left", r, err)
	}
	if img := e.deployment("pricing").Spec.Template.Spec.Containers[0].Image; !strings.HasSuffix(img, ":v1") {
		t.Errorf("image = %s; want still v1", img)
	}
	if _, err := fixture.WaitEvents(ctx, e.cs, e.ns, "Deployment", "pricing", "RollbackRefused", 1); err != nil {
		t.Error(err)
	}
}

// TestGuards: a stale alert is skipped; an opted-out workload is refused; a notification
// naming more workloads than ROLLBACK_MAX_TARGETS changes nothing; a dry run changes nothing
// and says what it would have done.
func TestGuards(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()

	t.Run("stale alert", func(t *testing.T) {
		pod := e.brokenDeployment("stale-app")
		f := e.startFunction("rollback-stale", nil)
		if status, _, err := f.Post(ctx, notification(seedAlert(e.ns, pod, time.Now())), e.token); err != nil || status != http.StatusOK {
			t.Fatalf("first alert = %d %v", status, err)
		}
		if err := fixture.WaitDeploymentRevision(ctx, e.cs, e.ns, "stale-app", 3); err != nil {
			t.Fatal(err)
		}
		before := e.settled("stale-app").ResourceVersion
		// Another alert (another rule) about the same pod of the revision now gone.
		other := map[string]string{"alertname": "HighErrorRate", "severity": "rollback", "namespace": e.ns, "pod": pod}
		_, resp, err := f.Post(ctx, notification(alertWith(other, time.Now())), e.token)
		if err != nil || len(resp.Results) != 1 || resp.Results[0].Action != "skipped" || resp.Results[0].Reason != outcome.ReasonStale {
			t.Fatalf("stale alert = %+v %v; want skipped (stale)", resp, err)
		}
		if after := e.deployment("stale-app").ResourceVersion; after != before {
			t.Errorf("resourceVersion %s -> %s; a stale alert must change nothing", before, after)
		}
	})

	t.Run("opted out", func(t *testing.T) {
		pod := e.brokenDeployment("precious")
		d := e.deployment("precious")
		d.Annotations["alert-rollback.dev/opt-out"] = "true"
		if _, err := e.cs.AppsV1().Deployments(e.ns).Update(ctx, d, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		d = e.settled("precious")
		f := e.startFunction("rollback-optout", nil)
		_, resp, err := f.Post(ctx, notification(seedAlert(e.ns, pod, time.Now())), e.token)
		if err != nil || len(resp.Results) != 1 || resp.Results[0].Action != "refused" || resp.Results[0].Reason != outcome.ReasonOptedOut {
			t.Fatalf("opted-out workload = %+v %v; want refused", resp, err)
		}
		if after := e.deployment("precious").ResourceVersion; after != d.ResourceVersion {
			t.Errorf("resourceVersion %s -> %s; want unchanged", d.ResourceVersion, after)
		}
		if _, err := fixture.WaitEvents(ctx, e.cs, e.ns, "Deployment", "precious", "RollbackRefused", 1); err != nil {
			t.Error(err)
		}
	})

	t.Run("too many targets", func(t *testing.T) {
		// Through a real Alertmanager on the shipped route, which groups by alertname: the
		// three alerts arrive in one notification, and the function refuses it as a whole.
		f := e.startFunction("rollback-max", map[string]string{"ROLLBACK_MAX_TARGETS": "2"})
		rec := newRecorder(t, f.URL)
		am, err := run.StartAlertmanager(ctx, run.AlertmanagerOptions{Dir: e.dir, Name: "alertmanager-max", WebhookURL: rec.URL,
			CredentialsFile: writeFile(t, filepath.Join(e.dir, "credentials-max"), e.token),
			Timers:          &run.Timers{GroupWait: "2s", GroupInterval: "1s", RepeatInterval: "1h"}})
		if err != nil {
			t.Fatal(err)
		}
		defer am.Stop()
		versions := map[string]string{}
		var pods []string
		for _, name := range []string{"fleet-a", "fleet-b", "fleet-c"} {
			pods = append(pods, e.brokenDeployment(name))
			versions[name] = e.settled(name).ResourceVersion
		}
		// Fresh alerts, so Alertmanager waits group_wait and sends them together. (An alert
		// older than group_wait is flushed at once, with whatever else has arrived by then:
		// see the README's known limits.)
		var alerts []run.Alert
		now := time.Now()
		for _, pod := range pods {
			alerts = append(alerts, amAlert(seedAlert(e.ns, pod, now)))
		}
		if err := am.Fire(ctx, alerts...); err != nil {
			t.Fatal(err)
		}
		err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			return len(rec.deliveries()) > 0, nil
		})
		if err != nil {
			t.Fatal("Alertmanager delivered nothing")
		}
		d := rec.deliveries()[0]
		resp := answer(t, d)
		if d.status != http.StatusOK || len(resp.Results) != 3 {
			t.Fatalf("answer = %d %s; want 200 with three results in one notification\n%s", d.status, d.answer, readLog(am.LogPath))
		}
		for _, r := range resp.Results {
			if r.Action != "refused" || r.Reason != outcome.ReasonTooManyTargets {
				t.Errorf("result %+v; want refused (too many targets)", r)
			}
		}
		for name, rv := range versions {
			if after := e.deployment(name).ResourceVersion; after != rv {
				t.Errorf("%s changed (resourceVersion %s -> %s); want nothing changed", name, rv, after)
			}
		}
	})

	t.Run("dry run", func(t *testing.T) {
		pod := e.brokenDeployment("dry-app")
		before := e.settled("dry-app").ResourceVersion
		f := e.startFunction("rollback-dry", map[string]string{"ROLLBACK_DRY_RUN": "true"})
		_, resp, err := f.Post(ctx, notification(seedAlert(e.ns, pod, time.Now())), e.token)
		if err != nil || len(resp.Results) != 1 {
			t.Fatalf("POST = %+v %v", resp, err)
		}
		r := resp.Results[0]
		if r.Action != "rolled-back" || !r.DryRun || r.FromRevision != 2 || r.ToRevision != 1 || r.Reason != outcome.ReasonDryRun {
			t.Errorf("dry run result = %+v; want a dry-run rollback from 2 to 1", r)
		}
		if _, err := fixture.WaitEvents(ctx, e.cs, e.ns, "Deployment", "dry-app", "RollbackDryRun", 1); err != nil {
			t.Error(err)
		}
		if after := e.deployment("dry-app").ResourceVersion; after != before {
			t.Errorf("resourceVersion %s -> %s; a dry run must change nothing", before, after)
		}
	})
}

func answer(t *testing.T, d delivery) outcome.Response {
	t.Helper()
	var r outcome.Response
	if err := json.Unmarshal(d.answer, &r); err != nil {
		t.Errorf("answer %q: %v", d.answer, err)
	}
	return r
}
