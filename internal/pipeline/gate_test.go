package pipeline

import (
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/sre-kit/alert-rollback/internal/budget"
	"github.com/sre-kit/alert-rollback/internal/fixture"
	"github.com/sre-kit/alert-rollback/internal/gitops"
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

// TestGateChecksWhatTheUndoAlsoWrites: an Argo Rollout's undo writes its workloadRef
// Deployment; a GitOps owner named on that Deployment refuses the undo as it would if the
// alert had named the Deployment, though the Rollout itself carries no GitOps label.
func TestGateChecksWhatTheUndoAlsoWrites(t *testing.T) {
	kube := fixture.Clientset()
	g := gate{budget: budget.New(clientset.Wrap(kube).Leases(ownNamespace), ownNamespace, budget.Spec{Units: 5, Window: time.Hour}, budget.Options{}),
		gitops: gitops.New(fixture.Dynamic(), nil, gitops.Refuse, "", func(string) bool { return true }), log: zap.NewNop().Sugar()}
	rollout := undo.Subject{Ref: kinds.RefOf(kinds.Rollout, ownNamespace, "web")}
	flux := kinds.Object{Ref: kinds.RefOf(kinds.Deployment, ownNamespace, "web-app"),
		Labels: map[string]string{gitops.KustomizeName: "apps", gitops.KustomizeNS: "flux-system"}}
	tests := []struct {
		name    string
		also    []kinds.Object
		wantErr bool
	}{
		{name: "the Rollout alone: admitted"},
		{name: "its workloadRef Deployment named by a Flux Kustomization: refused", also: []kinds.Object{flux}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := rollout
			s.Also = tt.also
			_, err := g.Admit(t.Context(), s, false)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Admit = %v; want an error: %v", err, tt.wantErr)
			}
			if err != nil {
				t.Logf("refused: %v", err)
			}
		})
	}
}
