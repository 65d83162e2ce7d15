package budget

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

const ns = "monitoring"

var t0 = time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)

var leaseResource = schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    Spec
		wantErr bool
	}{
		{in: "5/1h", want: Spec{Units: 5, Window: time.Hour}},
		{in: " 3/30m ", want: Spec{Units: 3, Window: 30 * time.Minute}},
		{in: Default, want: Spec{Units: 5, Window: time.Hour}},
		{in: "off", want: Spec{}},
		{in: "1000/24h", want: Spec{Units: 1000, Window: 24 * time.Hour}},
		{in: "", wantErr: true},
		{in: "5", wantErr: true},
		{in: "0/1h", wantErr: true},
		{in: "-1/1h", wantErr: true},
		{in: "1001/1h", wantErr: true},
		{in: "five/1h", wantErr: true},
		{in: "5/", wantErr: true},
		{in: "5/1", wantErr: true},
		{in: "5/500ms", wantErr: true},
		{in: "5/-1h", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Parse(%q) error = %v; want error %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("Parse(%q) = %v; want %v", tt.in, got, tt.want)
			}
		})
	}
}

// clock is a settable time for the tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newClient is a fake clientset whose Leases honour resourceVersion as the apiserver does:
// an update carrying an old resourceVersion is a conflict, every write bumps it. The
// fake's object tracker alone is last-writer-wins, which would hide the very race the
// budget exists for.
func newClient(objs ...runtime.Object) *fake.Clientset {
	c := fake.NewClientset(objs...)
	var mu sync.Mutex
	rv := 100
	c.PrependReactor("create", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		l := a.(k8stesting.CreateAction).GetObject().(*coordinationv1.Lease).DeepCopy()
		rv++
		l.ResourceVersion = strconv.Itoa(rv)
		if err := c.Tracker().Create(leaseGVR, l, l.Namespace); err != nil {
			return true, nil, err
		}
		return true, l, nil
	})
	c.PrependReactor("update", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		l := a.(k8stesting.UpdateAction).GetObject().(*coordinationv1.Lease).DeepCopy()
		cur, err := c.Tracker().Get(leaseGVR, l.Namespace, l.Name)
		if err != nil {
			return true, nil, err
		}
		if cur.(*coordinationv1.Lease).ResourceVersion != l.ResourceVersion {
			return true, nil, apierrors.NewConflict(leaseResource, l.Name, errors.New("the object has been modified"))
		}
		rv++
		l.ResourceVersion = strconv.Itoa(rv)
		return true, l, c.Tracker().Update(leaseGVR, l, l.Namespace)
	})
	return c
}

var leaseGVR = coordinationv1.SchemeGroupVersion.WithResource("leases")

func newBudget(c *fake.Clientset, spec Spec, clk *clock) *Budget {
	return New(c.CoordinationV1().Leases(ns), ns, spec, Options{Now: clk.Now, Backoff: wait.Backoff{Steps: 50, Duration: time.Microsecond, Jitter: 1}})
}

// lease returns a Lease already holding units spent at the given times.
func lease(t *testing.T, at ...time.Time) *coordinationv1.Lease {
	t.Helper()
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: LeaseName, Namespace: ns, ResourceVersion: "1"}}
	var s state
	for i, a := range at {
		s.Spent = append(s.Spent, Unit{ID: "u" + strconv.Itoa(i), At: a, For: "shop/Deployment/web"})
	}
	if err := writeState(l, s, Spec{Units: 5, Window: time.Hour}, t0); err != nil {
		t.Fatal(err)
	}
	return l
}

// spent reads the units on the Lease.
func spent(t *testing.T, c *fake.Clientset) []Unit {
	t.Helper()
	l, err := c.CoordinationV1().Leases(ns).Get(context.Background(), LeaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get lease: %v", err)
	}
	s, err := readState(l)
	if err != nil {
		t.Fatal(err)
	}
	return s.Spent
}

// verbs lists the client's actions as "verb resource".
func verbs(c *fake.Clientset) []string {
	var out []string
	for _, a := range c.Actions() {
		out = append(out, a.GetVerb()+" "+a.GetResource().Resource)
	}
	return out
}

func TestTake(t *testing.T) {
	spec := Spec{Units: 3, Window: time.Hour}
	tests := []struct {
		name    string
		objects []runtime.Object
		dryRun  bool
		// wantSpent is how many units the Lease holds afterwards; wantExhausted the
		// refusal's count (0: no refusal).
		wantSpent     int
		wantExhausted int
		wantFreesAt   time.Time
		wantActions   []string
	}{
		{name: "no Lease yet: created with the first unit", wantSpent: 1,
			wantActions: []string{"get leases", "create leases"}},
		{name: "units left", objects: []runtime.Object{lease(t, t0.Add(-30*time.Minute))}, wantSpent: 2,
			wantActions: []string{"get leases", "update leases"}},
		{name: "last unit", objects: []runtime.Object{lease(t, t0.Add(-50*time.Minute), t0.Add(-10*time.Minute))}, wantSpent: 3,
			wantActions: []string{"get leases", "update leases"}},
		{name: "exhausted: refused, says when the oldest unit expires",
			objects:   []runtime.Object{lease(t, t0.Add(-10*time.Minute), t0.Add(-50*time.Minute), t0.Add(-20*time.Minute))},
			wantSpent: 3, wantExhausted: 3, wantFreesAt: t0.Add(10 * time.Minute),
			wantActions: []string{"get leases"}},
		{name: "units older than the window no longer count",
			objects:   []runtime.Object{lease(t, t0.Add(-2*time.Hour), t0.Add(-time.Hour), t0.Add(-10*time.Minute))},
			wantSpent: 2, wantActions: []string{"get leases", "update leases"}},
		{name: "dry run spends nothing", objects: []runtime.Object{lease(t, t0.Add(-30*time.Minute))}, dryRun: true,
			wantSpent: 1, wantActions: []string{"get leases"}},
		{name: "dry run on an exhausted budget is refused too",
			objects: []runtime.Object{lease(t, t0.Add(-1*time.Minute), t0.Add(-2*time.Minute), t0.Add(-3*time.Minute))}, dryRun: true,
			wantSpent: 3, wantExhausted: 3, wantFreesAt: t0.Add(57 * time.Minute), wantActions: []string{"get leases"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(tt.objects...)
			b := newBudget(c, spec, &clock{now: t0})
			u, err := b.Take(context.Background(), "shop/Deployment/web", tt.dryRun)
			var ex *ExhaustedError
			switch {
			case tt.wantExhausted > 0:
				if !errors.As(err, &ex) || !errors.Is(err, ErrExhausted) {
					t.Fatalf("Take = %v; want an *ExhaustedError", err)
				}
				if ex.Spent != tt.wantExhausted || !ex.FreesAt.Equal(tt.wantFreesAt) {
					t.Errorf("refusal: spent %d, frees at %s; want %d, %s", ex.Spent, ex.FreesAt, tt.wantExhausted, tt.wantFreesAt)
				}
				if u.ID != "" {
					t.Errorf("refused Take returned unit %+v", u)
				}
			case err != nil:
				t.Fatalf("Take = %v; want nil", err)
			case !tt.dryRun && u.ID == "":
				t.Errorf("Take returned no unit")
			}
			if diff := cmp.Diff(tt.wantActions, verbs(c)); diff != "" {
				t.Errorf("actions (-want +got):\n%s", diff)
			}
			if len(tt.objects) == 0 && tt.wantSpent == 0 {
				return
			}
			if got := spent(t, c); len(got) != tt.wantSpent {
				t.Errorf("Lease holds %d units; want %d: %+v", len(got), tt.wantSpent, got)
			}
		})
	}
}

func TestRefusalMessage(t *testing.T) {
	c := newClient(lease(t, t0.Add(-45*time.Minute), t0.Add(-5*time.Minute)))
	b := newBudget(c, Spec{Units: 2, Window: time.Hour}, &clock{now: t0})
	_, err := b.Take(context.Background(), "shop/Deployment/web", false)
	want := "rollback budget exhausted (ROLLBACK_BUDGET): 2 of 2 rollbacks spent in the last 1h0m0s; the next is allowed after 2026-11-26T03:15:00Z"
	if err == nil || err.Error() != want {
		t.Errorf("Take = %v; want %s", err, want)
	}
}

func TestWindowFreesUp(t *testing.T) {
	c := newClient()
	clk := &clock{now: t0}
	b := newBudget(c, Spec{Units: 2, Window: time.Minute}, clk)
	ctx := context.Background()
	for i := range 2 {
		if _, err := b.Take(ctx, "w", false); err != nil {
			t.Fatalf("Take %d = %v", i+1, err)
		}
		clk.Add(10 * time.Second)
	}
	if _, err := b.Take(ctx, "w", false); !errors.Is(err, ErrExhausted) {
		t.Fatalf("third Take = %v; want exhausted", err)
	}
	clk.Add(40 * time.Second) // the first unit, taken at t0, expires at t0+1m
	if _, err := b.Take(ctx, "w", false); err != nil {
		t.Fatalf("Take after the first unit expired = %v; want nil", err)
	}
	if _, err := b.Take(ctx, "w", false); !errors.Is(err, ErrExhausted) {
		t.Fatalf("next Take = %v; want exhausted (the second unit is still in the window)", err)
	}
}

func TestReturn(t *testing.T) {
	ctx := context.Background()
	c := newClient()
	clk := &clock{now: t0}
	b := newBudget(c, Spec{Units: 2, Window: time.Hour}, clk)
	first, err := b.Take(ctx, "a", false)
	if err != nil {
		t.Fatal(err)
	}
	second, err := b.Take(ctx, "b", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Return(ctx, second); err != nil {
		t.Fatalf("Return = %v", err)
	}
	if got := spent(t, c); len(got) != 1 || got[0].ID != first.ID {
		t.Fatalf("after Return the Lease holds %+v; want only the first unit", got)
	}
	if _, err := b.Take(ctx, "c", false); err != nil {
		t.Fatalf("Take after Return = %v; want the returned unit to be available", err)
	}

	// A unit returned after it left the window changes nothing.
	clk.Add(2 * time.Hour)
	c.ClearActions()
	if err := b.Return(ctx, first); err != nil {
		t.Fatalf("Return of an expired unit = %v", err)
	}
	if diff := cmp.Diff([]string{"get leases"}, verbs(c)); diff != "" {
		t.Errorf("actions (-want +got):\n%s", diff)
	}
	// Nothing to give back for a dry run or a disabled budget: no API call at all.
	c.ClearActions()
	if err := b.Return(ctx, Unit{}); err != nil || len(c.Actions()) != 0 {
		t.Errorf("Return(zero unit) = %v with actions %v; want nil and none", err, verbs(c))
	}
}

func TestOff(t *testing.T) {
	c := newClient()
	b := newBudget(c, Spec{}, &clock{now: t0})
	for range 3 {
		if u, err := b.Take(context.Background(), "w", false); err != nil || u.ID != "" {
			t.Fatalf("Take with the budget off = %+v, %v; want no unit, nil", u, err)
		}
	}
	if len(c.Actions()) != 0 {
		t.Errorf("budget off made API calls: %v", verbs(c))
	}
}

func TestErrors(t *testing.T) {
	unreadable := lease(t)
	unreadable.Annotations[StateAnnotation] = "{not json"
	tests := []struct {
		name    string
		objects []runtime.Object
		reactor k8stesting.ReactionFunc
		verb    string
		wantIs  error
		// wantText is in the error.
		wantText string
	}{
		{name: "create forbidden: the shipped Lease is missing", verb: "create",
			reactor: func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewForbidden(leaseResource, "", errors.New("RBAC"))
			}, wantIs: ErrNoLease},
		{name: "read fails", verb: "get",
			reactor: func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewServiceUnavailable("down")
			}, wantText: "read the budget Lease monitoring/alert-rollback-budget"},
		{name: "unreadable state", objects: []runtime.Object{unreadable}, wantText: "not readable"},
		{name: "conflicts never end: bounded", objects: []runtime.Object{lease(t)}, verb: "update",
			reactor: func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewConflict(leaseResource, LeaseName, errors.New("modified"))
			}, wantText: "kept changing (50 attempts)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(tt.objects...)
			if tt.reactor != nil {
				c.PrependReactor(tt.verb, "leases", tt.reactor)
			}
			b := newBudget(c, Spec{Units: 3, Window: time.Hour}, &clock{now: t0})
			_, err := b.Take(context.Background(), "w", false)
			if err == nil {
				t.Fatal("Take = nil; want an error")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Take = %v; want errors.Is %v", err, tt.wantIs)
			}
			if tt.wantText != "" && !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("Take = %v; want it to say %q", err, tt.wantText)
			}
			if errors.Is(err, ErrExhausted) {
				t.Errorf("Take = %v; a failure is not a refusal", err)
			}
		})
	}
}

// TestConcurrentTakers: many takers at once, through a client that enforces
// resourceVersion as the apiserver does: exactly N win, the rest are refused, and the
// Lease holds exactly N units. (e2e/budget_test.go proves the same on a real apiserver.)
func TestConcurrentTakers(t *testing.T) {
	const units, takers = 5, 40
	c := newClient()
	b := newBudget(c, Spec{Units: units, Window: time.Hour}, &clock{now: t0})
	var won, refused, failed atomic.Int32
	var wg sync.WaitGroup
	for i := range takers {
		wg.Go(func() {
			_, err := b.Take(context.Background(), "w"+strconv.Itoa(i), false)
			switch {
			case err == nil:
				won.Add(1)
			case errors.Is(err, ErrExhausted):
				refused.Add(1)
			default:
				failed.Add(1)
				t.Errorf("Take = %v", err)
			}
		})
	}
	wg.Wait()
	if won.Load() != units || refused.Load() != takers-units {
		t.Errorf("%d won, %d refused, %d failed; want %d won and %d refused", won.Load(), refused.Load(), failed.Load(), units, takers-units)
	}
	if got := spent(t, c); len(got) != units {
		t.Errorf("Lease holds %d units; want %d", len(got), units)
	}
}

// TestTakeTimeout: a read or write of the Lease that times out on the client's side is an
// error, never a unit taken.
func TestTakeTimeout(t *testing.T) {
	for _, verb := range []string{"get", "update"} {
		t.Run(verb, func(t *testing.T) {
			c := newClient(lease(t))
			c.PrependReactor(verb, "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, &url.Error{Op: verb, URL: "https://127.0.0.1/leases", Err: context.DeadlineExceeded}
			})
			_, err := newBudget(c, Spec{Units: 5, Window: time.Hour}, &clock{now: t0}).Take(context.Background(), "shop/Deployment/web", false)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Take() = %v; want it to fail with the deadline", err)
			}
		})
	}
}

// TestRememberedLease: a process writes the Lease from the copy it last saw, without reading
// it first (one request a unit); a copy another replica made stale costs a conflict and a
// read, never a wrong count; and a refusal is never decided on the copy.
func TestRememberedLease(t *testing.T) {
	ctx := context.Background()
	c := newClient(lease(t))
	clk := &clock{now: t0}
	a := newBudget(c, Spec{Units: 2, Window: time.Hour}, clk)
	other := newBudget(c, Spec{Units: 2, Window: time.Hour}, clk) // another replica
	verbs := func() []string {
		var v []string
		for _, act := range c.Actions() {
			v = append(v, act.GetVerb())
		}
		c.ClearActions()
		return v
	}
	if _, err := a.Take(ctx, "w1", false); err != nil {
		t.Fatal(err)
	}
	if got := verbs(); !slices.Equal(got, []string{"get", "update"}) {
		t.Fatalf("first Take: %v; want get, update", got)
	}
	u2, err := a.Take(ctx, "w2", false)
	if err != nil {
		t.Fatal(err)
	}
	if got := verbs(); !slices.Equal(got, []string{"update"}) {
		t.Fatalf("second Take: %v; want only the update, from the copy", got)
	}
	// The other replica gives a unit back: a's copy is stale and says "exhausted".
	if err := other.Return(ctx, u2); err != nil {
		t.Fatal(err)
	}
	verbs()
	if _, err := a.Take(ctx, "w3", false); err != nil {
		t.Fatalf("Take after the other replica's return = %v; want a unit (the copy was stale)", err)
	}
	if got := verbs(); !slices.Equal(got, []string{"get", "update"}) {
		t.Fatalf("Take on a stale copy: %v; want a fresh read, then the update", got)
	}
	// a gives w3's unit back (its copy: one left); the other replica spends it meanwhile.
	// a's write on its copy conflicts, and the fresh read refuses.
	u3 := spent(t, c)[1]
	if err := a.Return(ctx, u3); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Take(ctx, "wx", false); err != nil {
		t.Fatal(err)
	}
	verbs()
	if _, err := a.Take(ctx, "w4", false); !errors.Is(err, ErrExhausted) {
		t.Fatalf("Take with both units spent = %v; want ErrExhausted", err)
	}
	if got := verbs(); !slices.Equal(got, []string{"update", "get"}) {
		t.Fatalf("Take on a copy another replica made stale: %v; want the update (conflict), then a read", got)
	}
	if n := len(spent(t, c)); n != 2 {
		t.Fatalf("%d units on the Lease; want 2", n)
	}
}

// leaseOf returns a Lease holding units.
func leaseOf(t *testing.T, units ...Unit) *coordinationv1.Lease {
	t.Helper()
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: LeaseName, Namespace: ns, ResourceVersion: "1"}}
	if err := writeState(l, state{Spent: units}, Spec{Units: 5, Window: time.Hour}, t0); err != nil {
		t.Fatal(err)
	}
	return l
}

// TestFutureUnits: a unit dated further ahead than MaxSkew counts for nothing (not in the
// window, not for a workload's cooldown) and is dropped from the Lease at the next write;
// within MaxSkew (a replica whose clock runs a little ahead) it counts.
func TestFutureUnits(t *testing.T) {
	const web = "Deployment shop/web"
	far := func(n int) []Unit {
		var us []Unit
		for i := range n {
			us = append(us, Unit{ID: "f" + strconv.Itoa(i), At: t0.Add(365 * 24 * time.Hour), For: web})
		}
		return us
	}
	tests := []struct {
		name      string
		units     []Unit
		wantErr   error
		wantSpent int // units on the Lease afterwards
	}{
		{name: "a year ahead, as many as the budget: ignored, and dropped", units: far(3), wantSpent: 1},
		{name: "a year ahead, for the same workload: no cooldown", units: far(1), wantSpent: 1},
		{name: "just beyond MaxSkew: ignored", units: []Unit{{ID: "a", At: t0.Add(MaxSkew + time.Second), For: web}}, wantSpent: 1},
		{name: "within MaxSkew: counts for the cooldown", units: []Unit{{ID: "a", At: t0.Add(MaxSkew / 2), For: web}},
			wantErr: ErrCooldown, wantSpent: 1},
		{name: "within MaxSkew: counts in the window",
			units:   []Unit{{ID: "a", At: t0.Add(MaxSkew / 2), For: "x"}, {ID: "b", At: t0, For: "y"}, {ID: "c", At: t0, For: "z"}},
			wantErr: ErrExhausted, wantSpent: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(leaseOf(t, tt.units...))
			b := New(c.CoordinationV1().Leases(ns), ns, Spec{Units: 3, Window: time.Hour},
				Options{Now: (&clock{now: t0}).Now, Cooldown: 10 * time.Minute, Backoff: wait.Backoff{Steps: 5, Duration: time.Microsecond}})
			_, err := b.Take(context.Background(), web, false)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Take = %v; want %v", err, tt.wantErr)
			}
			if got := spent(t, c); len(got) != tt.wantSpent {
				t.Errorf("the Lease holds %+v; want %d units", got, tt.wantSpent)
			}
		})
	}
}

// TestCooldown: a Take for a workload with a unit on the Lease within the cooldown is
// refused, with when it ends, and spends nothing; other workloads are not affected; units are
// kept for the cooldown even past the window (without counting in it); and the Lease stays
// bounded.
func TestCooldown(t *testing.T) {
	const web, api = "Deployment shop/web", "Deployment shop/api"
	ctx := context.Background()
	clk := &clock{now: t0}
	opts := Options{Now: clk.Now, Cooldown: 10 * time.Minute, Backoff: wait.Backoff{Steps: 5, Duration: time.Microsecond}}
	c := newClient()
	b := New(c.CoordinationV1().Leases(ns), ns, Spec{Units: 5, Window: time.Minute}, opts)
	if _, err := b.Take(ctx, web, false); err != nil {
		t.Fatal(err)
	}
	clk.Add(2 * time.Minute) // out of the window, within the cooldown
	_, err := b.Take(ctx, web, false)
	var cool *CooldownError
	if !errors.As(err, &cool) || !cool.Until.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("Take within the cooldown = %v; want a *CooldownError until %s", err, t0.Add(10*time.Minute))
	}
	want := "rolled back too recently (ROLLBACK_COOLDOWN), as the budget Lease records: Deployment shop/web was rolled back at 2026-11-26T03:00:00Z; the next is allowed after 2026-11-26T03:10:00Z"
	if err.Error() != want {
		t.Errorf("message %q; want %q", err, want)
	}
	if _, err := b.Take(ctx, web, true); !errors.Is(err, ErrCooldown) {
		t.Errorf("dry-run Take within the cooldown = %v; want refused", err)
	}
	if n, err := b.Spent(ctx); err != nil || n != 0 {
		t.Errorf("Spent() = %d, %v; want 0: the unit is kept for the cooldown, not counted in the window", n, err)
	}
	if _, err := b.Take(ctx, api, false); err != nil {
		t.Fatalf("Take for another workload = %v", err)
	}
	clk.Add(8 * time.Minute) // the cooldown is over
	if _, err := b.Take(ctx, web, false); err != nil {
		t.Fatalf("Take after the cooldown = %v", err)
	}
	if got := spent(t, c); len(got) != 2 {
		t.Errorf("the Lease holds %+v; want the two units of the cooldown (api's, web's new one)", got)
	}

	// A unit for the very object at the very generation the next undo read is no evidence of
	// an undo: its write did not land. Any other unit for the workload is.
	read := Workload{Name: "Deployment shop/cart", UID: "uid-1", Generation: 7}
	for _, tc := range []struct {
		name    string
		unit    Workload
		refused bool
	}{
		{"same object, same generation: its write did not land", read, false},
		{"same object, a later generation", Workload{Name: read.Name, UID: "uid-1", Generation: 6}, true},
		{"another object of that name (deleted, created again)", Workload{Name: read.Name, UID: "uid-0", Generation: 7}, true},
		{"no UID recorded", Workload{Name: read.Name}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient()
			b := New(c.CoordinationV1().Leases(ns), ns, Spec{Units: 5, Window: time.Hour}, opts)
			if _, err := b.TakeFor(ctx, tc.unit, false); err != nil {
				t.Fatal(err)
			}
			_, err := b.TakeFor(ctx, read, false)
			if refused := errors.Is(err, ErrCooldown); refused != tc.refused || (err != nil && !refused) {
				t.Errorf("TakeFor(%+v) after a unit for %+v = %v; want refused %v", read, tc.unit, err, tc.refused)
			}
		})
	}

	// However long the cooldown, the Lease keeps at most maxUnits entries.
	var many []Unit
	for i := range maxUnits + 200 {
		many = append(many, Unit{ID: strconv.Itoa(i), At: t0.Add(-time.Hour + time.Duration(i)*time.Millisecond), For: "w" + strconv.Itoa(i)})
	}
	c = newClient(leaseOf(t, many...))
	clk = &clock{now: t0}
	long := New(c.CoordinationV1().Leases(ns), ns, Spec{Units: 5, Window: time.Minute}, Options{Now: clk.Now, Cooldown: 24 * time.Hour})
	if _, err := long.Take(ctx, web, false); err != nil {
		t.Fatal(err)
	}
	if got := spent(t, c); len(got) != maxUnits || got[len(got)-1].For != web {
		t.Errorf("the Lease holds %d units (last %+v); want %d, the newest", len(got), got[len(got)-1], maxUnits)
	}
}

// TestContended: when every write of the Lease conflicts, Take gives up after its own
// attempts, a read and a write each, with an error that is not the apiserver's conflict:
// the undo retries on a conflict of its own, and must not run these attempts again.
func TestContended(t *testing.T) {
	c := newClient(lease(t))
	c.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewConflict(leaseResource, LeaseName, errors.New("changed"))
	})
	b := New(c.CoordinationV1().Leases(ns), ns, Spec{Units: 5, Window: time.Hour}, Options{Now: (&clock{now: t0}).Now})
	_, err := b.Take(context.Background(), "Deployment shop/web", false)
	if !errors.Is(err, ErrContended) || apierrors.IsConflict(err) {
		t.Fatalf("Take = %v; want ErrContended, not a conflict", err)
	}
	if n := len(c.Actions()); n != 2*b.backoff.Steps {
		t.Errorf("%d requests; want %d (%d attempts, a read and a write each)", n, 2*b.backoff.Steps, b.backoff.Steps)
	}
}
