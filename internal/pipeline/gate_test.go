package pipeline

import (
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/sre-kit/alert-rollback/internal/budget"
	"github.com/sre-kit/alert-rollback/internal/fixture"
	"github.com/sre-kit/alert-rollback/internal/kinds"
	"github.com/sre-kit/alert-rollback/internal/kube/clientset"
	"github.com/sre-kit/alert-rollback/internal/undo"
)

const ownNamespace = "shop"

// TestBudgetTwoReplicasOneUndo: two replicas admit an undo for the same alerts about the
// same workload (an HA pair's copies). Each spends a unit of its own; when the one that loses
// the race gives its unit back, the winner's stays: the undo that landed is paid for. With
// units named after the alerts, shared by both, the loser gave back the winner's unit, and
// e2e/guards' storm made one undo more than the budget.
func TestBudgetTwoReplicasOneUndo(t *testing.T) {
	kube := fixture.Clientset()
	replica := func() gate {
		return gate{budget: budget.New(clientset.Wrap(kube).Leases(ownNamespace), ownNamespace, budget.Spec{Units: 5, Window: time.Hour}, budget.Options{}),
			log: zap.NewNop().Sugar()}
	}
	s := undo.Subject{Ref: kinds.RefOf(kinds.Deployment, ownNamespace, "web")}
	if _, err := replica().Admit(t.Context(), s, false); err != nil { // the winner
		t.Fatal(err)
	}
	loser, err := replica().Admit(t.Context(), s, false)
	if err != nil {
		t.Fatal(err)
	}
	if n := fixture.UnitsSpent(t, kube, ownNamespace); n != 2 {
		t.Fatalf("%d units spent by two admissions; want 2, one each", n)
	}
	loser.Release(t.Context()) // its write conflicted: the other replica's landed
	if n := fixture.UnitsSpent(t, kube, ownNamespace); n != 1 {
		t.Fatalf("%d units spent after the loser gave its own back; want 1, the winner's", n)
	}
}
