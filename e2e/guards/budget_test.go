package guards

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/sre-kit/alert-rollback/internal/budget"
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
