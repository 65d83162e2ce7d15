package e2e

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
	"github.com/sre-kit/alert-rollback/e2e/fixture"
	"github.com/sre-kit/alert-rollback/e2e/run"
	"github.com/sre-kit/alert-rollback/internal/outcome"
)

// BenchmarkSideBySide measures, on the real control plane and in one run, the function as
// Alertmanager calls it (the built binary, over HTTP, as kservice.yaml's ServiceAccount)
// and `kubectl rollout undo` as a user runs it (the pinned binary, one process per undo,
// warm discovery cache), on twin Deployments given the same bad rollouts. API requests
// come from the API server's audit log; memory from /proc. It prints a table and never
// fails on a timing: run it with `make bench` (-benchtime 1x).
//
// BENCH_ROUNDS (default 30) undos per side, BENCH_STORM (1000) copies in the storm,
// BENCH_STARTS (10) process starts.
func BenchmarkSideBySide(b *testing.B) {
	rounds, storm, starts := envInt("BENCH_ROUNDS", 30), envInt("BENCH_STORM", 1000), envInt("BENCH_STARTS", 10)
	const inFlight = 20
	ctx := context.Background()
	e := newEnv(b)
	s := &sides{e: e, client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: inFlight}}}
	// The storm sends 20 at once straight to one process. Under Knative, queue-proxy holds
	// requests beyond containerConcurrency (10, as the server's own bound); here the bound is
	// raised to the storm's, and one storm runs with the shipped bound too.
	bound := strconv.Itoa(inFlight)
	// kubectl has no cooldown and no budget: the function's are off for the 30 undos in a row.
	fn := e.startFunction("rollback", map[string]string{"ROLLBACK_COOLDOWN": "0s", "ROLLBACK_BUDGET": "off", "ROLLBACK_MAX_CONCURRENT": bound})
	kubectl, err := cluster.ToolPath("kubectl")
	if err != nil {
		b.Fatal(err)
	}
	home := b.TempDir()
	runKubectl := func(args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig", kube.Kubeconfig, "-n", e.ns}, args...)...)
		cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH")}
		return cmd.CombinedOutput()
	}

	// Twin Deployments: revision 1 scheduled, revision 2 asks for 64 CPUs.
	pods := map[string]string{"fn": e.brokenDeployment("twin-fn"), "kubectl": e.brokenDeployment("twin-kubectl")}
	// A user's kubectl has its discovery cache: fill it once.
	if out, err := runKubectl("rollout", "history", "deployment/twin-kubectl"); err != nil {
		b.Fatalf("kubectl rollout history: %v: %s", err, out)
	}

	var fnTimes, kcTimes []time.Duration
	var fnReqs, kcReqs []int
	var fnAPI, kcAPI []time.Duration // first request received → last answered, per undo
	var last []byte                  // the last notification the function acted on
	for i := range rounds {
		if i > 0 {
			pods["fn"], pods["kubectl"] = s.badRollout("twin-fn", i), s.badRollout("twin-kubectl", i)
		}
		body := notification(seedAlert(e.ns, pods["fn"], time.Now()))
		mark := s.mark()
		took, status, resp, err := s.post(fn.URL, body)
		if err != nil || status != http.StatusOK || len(resp.Results) != 1 || resp.Results[0].Action != outcome.RolledBack {
			b.Fatalf("round %d: the function answered %d %+v (%v); want a rollback", i, status, resp, err)
		}
		fnTimes, last = append(fnTimes, took), body
		n, span := s.requests(mark, s.isFunction)
		fnReqs, fnAPI = append(fnReqs, n), append(fnAPI, span)

		mark = s.mark()
		began := time.Now()
		if out, err := runKubectl("rollout", "undo", "deployment/twin-kubectl"); err != nil {
			b.Fatalf("round %d: kubectl rollout undo: %v: %s", i, err, out)
		}
		kcTimes = append(kcTimes, time.Since(began))
		n, span = s.requests(mark, isKubectl)
		kcReqs, kcAPI = append(kcReqs, n), append(kcAPI, span)
		for _, name := range []string{"twin-fn", "twin-kubectl"} {
			// Revision 2 was bad; each round's undo adds one revision, its bad rollout another.
			if err := fixture.WaitDeploymentRevision(ctx, e.cs, e.ns, name, int64(3+2*i)); err != nil {
				b.Fatal(err)
			}
		}
	}

	// The same undo with the settings that change its round trips, on Deployments of their
	// own: the budget on, as shipped (a Lease write per undo; its size raised for the run), and
	// ROLLBACK_READ_PODS=true (the pod read too, beside the Deployment).
	type variant struct {
		name     string
		settings map[string]string
		times    []time.Duration
		reqs     []int
	}
	variants := []*variant{
		{name: "the budget on, as shipped (ROLLBACK_BUDGET=1000/1h for the run)", settings: map[string]string{"ROLLBACK_BUDGET": "1000/1h"}},
		{name: "ROLLBACK_READ_PODS=true", settings: map[string]string{"ROLLBACK_BUDGET": "off", "ROLLBACK_READ_PODS": "true"}},
	}
	for i, v := range variants {
		v.settings["ROLLBACK_COOLDOWN"] = "0s"
		vf := e.startFunction(fmt.Sprintf("rollback-variant-%d", i), v.settings)
		name := fmt.Sprintf("twin-variant-%d", i)
		pod := e.brokenDeployment(name)
		for r := range max(rounds/3, 1) {
			if r > 0 {
				pod = s.badRollout(name, r)
			}
			mark := s.mark()
			took, status, resp, err := s.post(vf.URL, notification(seedAlert(e.ns, pod, time.Now())))
			if err != nil || status != http.StatusOK || len(resp.Results) != 1 || resp.Results[0].Action != outcome.RolledBack {
				b.Fatalf("%s, round %d: the function answered %d %+v (%v); want a rollback", v.name, r, status, resp, err)
			}
			n, _ := s.requests(mark, s.isFunction)
			v.times, v.reqs = append(v.times, took), append(v.reqs, n)
			if err := fixture.WaitDeploymentRevision(ctx, e.cs, e.ns, name, int64(3+2*r)); err != nil {
				b.Fatal(err)
			}
		}
		vf.Stop()
	}

	// Starts: exec → readiness, and exec → the first notification answered (a copy of the
	// last one, which a fresh process must look up on the workload).
	var toReady, toAnswer []time.Duration
	for range starts {
		toReady = append(toReady, s.start(func(url string) bool {
			resp, err := s.client.Get(url + "health/readiness")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}))
		toAnswer = append(toAnswer, s.start(func(url string) bool {
			req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(last))
			s.alertmanager(req)
			resp, err := s.client.Do(req)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}))
	}

	// The storm: copies of the notification the function already acted on, 20 in flight,
	// on the process that rolled back and on a fresh one (an HA peer, a new replica).
	fresh := e.startFunction("rollback-fresh", map[string]string{"ROLLBACK_MAX_CONCURRENT": bound})
	shipped := e.startFunction("rollback-shipped", nil)
	warmStorm := s.storm(fn.URL, last, storm, inFlight)
	freshStorm := s.storm(fresh.URL, last, storm, inFlight)
	shippedStorm := s.storm(shipped.URL, last, storm, inFlight)
	rssWarm, err := fn.RSS()
	if err != nil {
		b.Fatal(err)
	}
	rssFresh, err := fresh.RSS()
	if err != nil {
		b.Fatal(err)
	}
	bin, _ := cluster.ToolPath("rollback")
	var size int64
	if info, err := os.Stat(bin); err == nil {
		size = info.Size()
	}

	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	p50f, p99f, p50k, p99k := pct(fnTimes, 50), pct(fnTimes, 99), pct(kcTimes, 50), pct(kcTimes, 99)
	mib := func(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
	var t strings.Builder
	fmt.Fprintf(&t, "\nalert-rollback vs kubectl rollout undo (%d undos each on twin Deployments, real kube-apiserver %s)\n\n", rounds, "v1.35.4")
	fmt.Fprintf(&t, "| figure | alert-rollback | kubectl rollout undo | ratio |\n|---|---|---|---|\n")
	fmt.Fprintf(&t, "| undo from a `pod` label, warm: p50 | %s | %s | %.2f× |\n", ms(p50f), ms(p50k), ratio(p50f, p50k))
	fmt.Fprintf(&t, "| undo from a `pod` label, warm: p99 | %s | %s | %.2f× |\n", ms(p99f), ms(p99k), ratio(p99f, p99k))
	fmt.Fprintf(&t, "| API requests per undo (Events excluded), p50 / max | %s | %s | |\n", reqs(fnReqs), reqs(kcReqs))
	fmt.Fprintf(&t, "| ... of which the API server's own time (first request received → last answered), p50 | %s | %s | |\n", ms(pct(fnAPI, 50)), ms(pct(kcAPI, 50)))
	for _, v := range variants {
		fmt.Fprintf(&t, "| undo from a `pod` label, %s (%d undos): p50; API requests p50 / max | %s; %s | %s | %.2f× |\n",
			v.name, len(v.times), ms(pct(v.times, 50)), reqs(v.reqs), ms(p50k), ratio(pct(v.times, 50), p50k))
	}
	for _, st := range []struct {
		name string
		r    stormResult
	}{{"on the replica that rolled back", warmStorm}, {"on a fresh replica", freshStorm},
		{"on a fresh replica with the shipped bound of 10 at once (the rest: 503, sent again)", shippedStorm}} {
		fmt.Fprintf(&t, "| %d copies of a handled notification, %d in flight, %s: answers/s; p50; p99 | %.0f/s; %s; %s | n/a (each run is another undo) | |\n",
			storm, inFlight, st.name, st.r.perSecond, ms(pct(st.r.times, 50)), ms(pct(st.r.times, 99)))
		fmt.Fprintf(&t, "| ... statuses; API requests for the whole storm (of which Events) | %s; %d (%d) | | |\n",
			st.r.statuses, st.r.requests, st.r.events)
	}
	fmt.Fprintf(&t, "| RSS after the storm: replica that rolled back; fresh replica | %s; %s | | |\n", mib(rssWarm), mib(rssFresh))
	fmt.Fprintf(&t, "| `cmd/rollback` binary (%s) | %.1f MB | | |\n", buildFlags(bin), float64(size)/1e6)
	fmt.Fprintf(&t, "| exec → readiness 200: p50; p99 (%d starts) | %s; %s | | |\n", starts, ms(pct(toReady, 50)), ms(pct(toReady, 99)))
	fmt.Fprintf(&t, "| exec → first notification answered: p50; p99 (%d starts) | %s; %s | | |\n", starts, ms(pct(toAnswer, 50)), ms(pct(toAnswer, 99)))
	fmt.Print(t.String())
}

// sides holds what the benchmark's measurements share.
type sides struct {
	e      *env
	client *http.Client
}

// alertmanager makes req look as Alertmanager's webhook sends it.
func (s *sides) alertmanager(req *http.Request) {
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Alertmanager/0.31.1")
	req.Header.Set("Authorization", "Bearer "+s.e.token)
}

// post sends body to the function and times the answer.
func (s *sides) post(url string, body []byte) (time.Duration, int, outcome.Response, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, 0, outcome.Response{}, err
	}
	s.alertmanager(req)
	began := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, 0, outcome.Response{}, err
	}
	b, err := io.ReadAll(resp.Body)
	took := time.Since(began)
	resp.Body.Close()
	var r outcome.Response
	if err == nil {
		err = json.Unmarshal(b, &r)
	}
	return took, resp.StatusCode, r, err
}

// badRollout rolls out a new revision of the Deployment that cannot be scheduled and
// returns its pod.
func (s *sides) badRollout(name string, i int) string {
	s.e.t.Helper()
	ctx := context.Background()
	d := s.e.deployment(name)
	rev, _ := strconv.ParseInt(d.Annotations["deployment.kubernetes.io/revision"], 10, 64)
	err := fixture.UpdateDeployment(ctx, s.e.cs, s.e.ns, name, rev+1, func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.Containers[0] = fixture.Container(fmt.Sprintf("registry.invalid/%s:bad-%d", name, i), "64")
	})
	if err != nil {
		s.e.t.Fatal(err)
	}
	rs, err := fixture.ReplicaSetOfRevision(ctx, s.e.cs, s.e.ns, name, rev+1)
	if err != nil {
		s.e.t.Fatal(err)
	}
	pod, err := fixture.WaitPod(ctx, s.e.cs, s.e.ns, rs, corev1.ConditionFalse, corev1.PodReasonUnschedulable)
	if err != nil {
		s.e.t.Fatal(err)
	}
	return pod
}

func (s *sides) mark() cluster.AuditMark {
	s.e.t.Helper()
	m, err := kube.AuditMark()
	if err != nil {
		s.e.t.Fatal(err)
	}
	return m
}

// count counts the audited requests since mark that match who; Events only when events.
func (s *sides) count(mark cluster.AuditMark, who func(cluster.AuditEvent) bool, events bool) int {
	s.e.t.Helper()
	log, err := kube.AuditSince(context.Background(), mark)
	if err != nil {
		s.e.t.Fatal(err)
	}
	n := 0
	for _, ev := range log {
		if who(ev) && (ev.Resource() == "events") == events {
			n++
		}
	}
	return n
}

// requests counts the audited requests since mark that match who, Events aside, and the
// time from the first one's arrival to the last one's answer.
func (s *sides) requests(mark cluster.AuditMark, who func(cluster.AuditEvent) bool) (int, time.Duration) {
	s.e.t.Helper()
	log, err := kube.AuditSince(context.Background(), mark)
	if err != nil {
		s.e.t.Fatal(err)
	}
	var n int
	var first, last time.Time
	for _, ev := range log {
		if !who(ev) || ev.Resource() == "events" {
			continue
		}
		n++
		if first.IsZero() || ev.Received.Before(first) {
			first = ev.Received
		}
		if ev.Completed.After(last) {
			last = ev.Completed
		}
	}
	if n == 0 {
		return 0, 0
	}
	return n, last.Sub(first)
}

func (s *sides) isFunction(ev cluster.AuditEvent) bool {
	return ev.User.Username == "system:serviceaccount:"+s.e.ns+":alert-rollback"
}

func isKubectl(ev cluster.AuditEvent) bool { return strings.HasPrefix(ev.UserAgent, "kubectl/") }

// start execs the function and returns the time until done says so (polled every
// millisecond), then stops it.
func (s *sides) start(done func(url string) bool) time.Duration {
	s.e.t.Helper()
	spec, url, err := run.FunctionSpec(run.FunctionOptions{Dir: s.e.dir, Name: "rollback-start",
		Env: map[string]string{"KUBECONFIG": s.e.kubeconfig, "ROLLBACK_AUTH_TOKEN": s.e.token}})
	if err != nil {
		s.e.t.Fatal(err)
	}
	began := time.Now()
	p, err := cluster.StartProcess(spec)
	if err != nil {
		s.e.t.Fatal(err)
	}
	defer p.Stop()
	var took time.Duration
	err = wait.PollUntilContextTimeout(context.Background(), time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		if p.Exited() {
			return false, errors.New("the function exited: " + p.Tail(10))
		}
		if done(url) {
			took = time.Since(began)
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		s.e.t.Fatal(err)
	}
	return took
}

type stormResult struct {
	times            []time.Duration
	perSecond        float64
	statuses         string
	requests, events int
}

// storm sends n copies of body, inFlight at a time, and counts what they cost the API server.
func (s *sides) storm(url string, body []byte, n, inFlight int) stormResult {
	s.e.t.Helper()
	mark := s.mark()
	var (
		mu       sync.Mutex
		r        stormResult
		statuses = map[string]int{}
		next     = make(chan struct{}, n)
		wg       sync.WaitGroup
	)
	for range n {
		next <- struct{}{}
	}
	close(next)
	began := time.Now()
	for range inFlight {
		wg.Go(func() {
			for range next {
				took, status, resp, err := s.post(url, body)
				key := strconv.Itoa(status)
				if err != nil {
					key = "error " + err.Error()
				}
				if len(resp.Results) == 1 {
					key += " " + string(resp.Results[0].Action) + "/" + string(resp.Results[0].Reason)
				}
				mu.Lock()
				r.times = append(r.times, took)
				statuses[key]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	r.perSecond = float64(n) / time.Since(began).Seconds()
	var parts []string
	for k, v := range statuses {
		parts = append(parts, fmt.Sprintf("%d× %s", v, k))
	}
	slices.Sort(parts)
	r.statuses = strings.Join(parts, ", ")
	r.requests = s.count(mark, s.isFunction, false) + s.count(mark, s.isFunction, true)
	r.events = s.count(mark, s.isFunction, true)
	return r
}

// buildFlags says how the binary was built: what `go version -m` reads in it (-trimpath,
// CGO_ENABLED; Go does not record -ldflags under -trimpath) and whether it has a symbol
// table (-ldflags='-s -w' strips it).
func buildFlags(bin string) string {
	out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "version", "-m", bin).Output()
	if err != nil {
		return "build flags unknown"
	}
	flags := []string{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "build" && (f[1] == "-trimpath=true" || strings.HasPrefix(f[1], "CGO_ENABLED")) {
			flags = append(flags, f[1])
		}
	}
	if f, err := elf.Open(bin); err == nil {
		if f.Section(".symtab") == nil {
			flags = append(flags, "stripped")
		} else {
			flags = append(flags, "with symbols")
		}
		f.Close()
	}
	return strings.Join(flags, ", ")
}

// pct is the p-th percentile (nearest rank) of ds.
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (p*len(s)+99)/100 - 1
	return s[max(0, min(i, len(s)-1))]
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// reqs is "p50 / max" of request counts.
func reqs(n []int) string {
	if len(n) == 0 {
		return "-"
	}
	s := slices.Clone(n)
	slices.Sort(s)
	return fmt.Sprintf("%d / %d", s[(len(s)-1)/2], s[len(s)-1])
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
