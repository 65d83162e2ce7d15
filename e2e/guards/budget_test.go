package guards

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/sre-kit/alert-rollback/e2e/fixture"
	"github.com/sre-kit/alert-rollback/internal/budget"
	"github.com/sre-kit/alert-rollback/internal/outcome"
	"github.com/sre-kit/alert-rollback/internal/undo"
)

// TestBudgetConcurrentTakers: three clients, each the function's ServiceAccount with only
// kservice.yaml's Role (as three replicas would be), race 30 takers for a budget of 5 on the
// real apiserver. Exactly 5 win, every other is refused with the count, and the Lease holds 5.
// A unit given back is taken again, once.
func TestBudgetConcurrentTakers(t *testing.T) {
	const ns, units, replicas, perReplica = "budget-race", 5, 3, 10
	spec := budget.Spec{Units: units, Window: time.Hour}
	install(t, kube, ns)
	var budgets []*budget.Budget
	for range replicas {
		cs, _ := clientsOf(t, kube, ns)
		budgets = append(budgets, budget.New(cs.CoordinationV1().Leases(ns), ns, spec, budget.Options{}))
	}
	ctx := context.Background()
	type result struct {
		unit budget.Unit
		err  error
	}
	results := make(chan result, replicas*perReplica)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for r, b := range budgets {
		for i := range perReplica {
			wg.Go(func() {
				<-start
				u, err := b.Take(ctx, fmt.Sprintf("%s/Deployment/w-%d-%d", ns, r, i), false)
				results <- result{u, err}
			})
		}
	}
	close(start)
	wg.Wait()
	close(results)

	var won []budget.Unit
	refused := 0
	for r := range results {
		var ex *budget.ExhaustedError
		switch {
		case r.err == nil:
			won = append(won, r.unit)
		case errors.As(r.err, &ex):
			refused++
			if ex.Spent != units {
				t.Errorf("refusal says %d spent; want %d: %v", ex.Spent, units, r.err)
			}
		default:
			t.Errorf("Take = %v; want a unit or a refusal", r.err)
		}
	}
	t.Logf("%d takers over %d replicas: %d won, %d refused", replicas*perReplica, replicas, len(won), refused)
	if len(won) != units || refused != replicas*perReplica-units {
		t.Fatalf("%d won, %d refused; want exactly %d won", len(won), refused, units)
	}
	if got := onLease(t, kube.Clientset, ns); got != units {
		t.Errorf("the Lease holds %d units; want %d", got, units)
	}

	// Give one back (its undo failed): one more Take succeeds, the next is refused again.
	if err := budgets[1].Return(ctx, won[0]); err != nil {
		t.Fatalf("Return = %v", err)
	}
	if _, err := budgets[2].Take(ctx, ns+"/Deployment/after-return", false); err != nil {
		t.Errorf("Take after a Return = %v; want a unit", err)
	}
	if _, err := budgets[0].Take(ctx, ns+"/Deployment/one-too-many", false); !errors.Is(err, budget.ErrExhausted) {
		t.Errorf("Take = %v; want refused", err)
	}
	// A dry run neither spends nor needs a unit to be free to read the budget.
	if _, err := budgets[0].Take(ctx, ns+"/Deployment/dry", true); !errors.Is(err, budget.ErrExhausted) {
		t.Errorf("dry-run Take on an exhausted budget = %v; want refused", err)
	}
	if got := onLease(t, kube.Clientset, ns); got != units {
		t.Errorf("the Lease holds %d units; want %d", got, units)
	}
}

// TestBudgetWindow: with a short window, the next unit is free once the oldest leaves it,
// not before the time the refusal named.
func TestBudgetWindow(t *testing.T) {
	const ns = "budget-window"
	install(t, kube, ns)
	cs, _ := clientsOf(t, kube, ns)
	b := budget.New(cs.CoordinationV1().Leases(ns), ns, budget.Spec{Units: 2, Window: 3 * time.Second}, budget.Options{})
	ctx := context.Background()
	for i := range 2 {
		if _, err := b.Take(ctx, fmt.Sprintf("w%d", i), false); err != nil {
			t.Fatalf("Take %d = %v", i+1, err)
		}
	}
	_, err := b.Take(ctx, "w2", false)
	var ex *budget.ExhaustedError
	if !errors.As(err, &ex) {
		t.Fatalf("third Take = %v; want refused", err)
	}
	// Try every 100 ms: every attempt that ended before the time the refusal named is
	// refused, and one that began after it (plus a second of slack) gets the unit.
	var freed time.Time
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		began := time.Now()
		_, err := b.Take(ctx, "w2", false)
		ended := time.Now()
		switch {
		case errors.Is(err, budget.ErrExhausted):
			if began.After(ex.FreesAt.Add(time.Second)) {
				return false, fmt.Errorf("refused at %s, after the window freed up at %s: %w", began, ex.FreesAt, err)
			}
			return false, nil
		case err != nil:
			return false, err
		}
		if ended.Before(ex.FreesAt) {
			return false, fmt.Errorf("a unit was free at %s, before %s, which the refusal named", ended, ex.FreesAt)
		}
		freed = ended
		return true, nil
	})
	if err != nil {
		t.Fatalf("after the window: %v", err)
	}
	t.Logf("refused until %s; the next unit was taken at %s", ex.FreesAt.Format(time.StampMilli), freed.Format(time.StampMilli))
}

// TestBudgetLeaseNotCreatable: the Role cannot create the Lease (RBAC cannot limit create to
// one name, so it does not grant create); with the shipped Lease deleted, Take fails saying
// to apply it, and changes nothing.
func TestBudgetLeaseNotCreatable(t *testing.T) {
	const ns = "budget-no-lease"
	install(t, kube, ns)
	cs, _ := clientsOf(t, kube, ns)
	ctx := context.Background()
	if err := kube.Clientset.CoordinationV1().Leases(ns).Delete(ctx, budget.LeaseName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	b := budget.New(cs.CoordinationV1().Leases(ns), ns, budget.Spec{Units: 2, Window: time.Hour}, budget.Options{})
	_, err := b.Take(ctx, "w", false)
	if !errors.Is(err, budget.ErrNoLease) || !apierrors.IsForbidden(err) {
		t.Fatalf("Take without the Lease = %v; want ErrNoLease from a forbidden create", err)
	}
	if _, err := kube.Clientset.CoordinationV1().Leases(ns).Get(ctx, budget.LeaseName, get); !apierrors.IsNotFound(err) {
		t.Errorf("the Lease after a failed Take: %v; want none", err)
	}
}

// TestBudgetFutureUnits: units dated far ahead on the Lease (a replica with a broken clock,
// or anyone who may write the Lease) do not hold the budget until that date: beyond
// budget.MaxSkew they count for nothing, and the next write drops them.
func TestBudgetFutureUnits(t *testing.T) {
	const ns = "budget-future"
	install(t, kube, ns)
	ctx := context.Background()
	leases := kube.Clientset.CoordinationV1().Leases(ns)
	l, err := leases.Get(ctx, budget.LeaseName, get)
	if err != nil {
		t.Fatal(err)
	}
	var units []budget.Unit
	for i := range 5 {
		units = append(units, budget.Unit{ID: fmt.Sprintf("future-%d", i), At: time.Now().Add(365 * 24 * time.Hour), For: "Deployment " + ns + "/web"})
	}
	raw, err := json.Marshal(map[string]any{"spent": units})
	if err != nil {
		t.Fatal(err)
	}
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	l.Annotations[budget.StateAnnotation] = string(raw)
	if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	cs, _ := clientsOf(t, kube, ns)
	b := budget.New(cs.CoordinationV1().Leases(ns), ns, budget.Spec{Units: 5, Window: time.Hour}, budget.Options{Cooldown: 10 * time.Minute})
	if _, err := b.Take(ctx, "Deployment "+ns+"/web", false); err != nil {
		t.Fatalf("Take with 5 units dated a year ahead on the Lease = %v; want a unit", err)
	}
	l, err = leases.Get(ctx, budget.LeaseName, get)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the Lease after the Take: %s", l.Annotations[budget.StateAnnotation])
	if strings.Contains(l.Annotations[budget.StateAnnotation], "future-") {
		t.Errorf("the Lease still holds the units dated ahead: %s", l.Annotations[budget.StateAnnotation])
	}
	if got := onLease(t, kube.Clientset, ns); got != 1 {
		t.Errorf("the Lease holds %d units; want 1", got)
	}
}

// TestBudgetCooldownOnTheLease: the built function keeps the cooldown on the budget's Lease,
// which only it may write. A tenant who may edit its Deployment rolls the bad template out
// again and deletes the state annotation after the undo; the next alert about it is refused
// "cooldown" and spends nothing, so another team's undo still has a unit. (With the cooldown
// kept on the workload alone, the tenant got a second undo, and the other team was refused
// budget-exhausted.)
func TestBudgetCooldownOnTheLease(t *testing.T) {
	f := newFn(t, "budget-cooldown")
	ctx := context.Background()
	f.rolledOut("web", nil, nil)
	f.rolledOut("api", nil, nil)
	fn := f.start("rollback", map[string]string{"ROLLBACK_BUDGET": "2/1h", "ROLLBACK_COOLDOWN": "10m"})
	send := func(name string) outcome.Result {
		t.Helper()
		code, resp, err := fn.Post(ctx, notification(f.alertAbout("Broken", name, time.Now())), f.token)
		if err != nil || code != http.StatusOK || len(resp.Results) != 1 {
			t.Fatalf("alert about %s answered %d %+v: %v", name, code, resp, err)
		}
		return resp.Results[0]
	}
	if r := send("web"); r.Action != outcome.RolledBack {
		t.Fatalf("first alert about web: %+v; want rolled back", r)
	}
	if err := fixture.WaitDeploymentRevision(ctx, kube.Clientset, f.ns, "web", 3); err != nil {
		t.Fatal(err)
	}
	// The tenant: the bad template again, and no record of the undo.
	err := fixture.UpdateDeployment(ctx, kube.Clientset, f.ns, "web", 4, func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.Containers[0].Image = "registry.invalid/web:v2"
		delete(d.Annotations, undo.StateAnnotation)
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.deployment("web").Annotations[undo.StateAnnotation]; ok {
		t.Fatal("the state annotation is still there")
	}
	r := send("web")
	t.Logf("alert about web after the tenant deleted its state annotation: %s %s: %s", r.Action, r.Reason, r.Message)
	if r.Action != outcome.Refused || r.Reason != outcome.ReasonCooldown {
		t.Errorf("alert about web after its state annotation was deleted: %s %s; want refused cooldown", r.Action, r.Reason)
	}
	if img := f.deployment("web").Spec.Template.Spec.Containers[0].Image; img != "registry.invalid/web:v2" {
		t.Errorf("web at %s; want left at v2", img)
	}
	if r := send("api"); r.Action != outcome.RolledBack {
		t.Errorf("another team's alert: %s %s: %s; want rolled back", r.Action, r.Reason, r.Message)
	}
	if got := onLease(t, kube.Clientset, f.ns); got != 2 {
		t.Errorf("the Lease holds %d units; want 2, one per workload undone", got)
	}
}

// onLease counts the units the Lease holds now, in the window.
func onLease(t *testing.T, cs kubernetes.Interface, ns string) int {
	t.Helper()
	b := budget.New(cs.CoordinationV1().Leases(ns), ns, budget.Spec{Units: 1000, Window: time.Hour}, budget.Options{})
	n, err := b.Spent(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}
