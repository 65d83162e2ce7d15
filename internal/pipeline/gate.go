package pipeline

import (
	"context"

	"go.uber.org/zap"

	"github.com/sre-kit/alert-rollback/internal/budget"
	"github.com/sre-kit/alert-rollback/internal/gitops"
	"github.com/sre-kit/alert-rollback/internal/undo"
)

// NewGate returns undo's Gate over the fleet-wide budget and the GitOps guard.
func NewGate(b *budget.Budget, g *gitops.Guard, log *zap.SugaredLogger) undo.Gate {
	return gate{budget: b, gitops: g, log: log}
}

// gate is undo's Gate: the checks beyond one workload, asked once an undo is decided and
// just before its write. In order: the GitOps owner (a refusal spends nothing), the budget
// (a unit taken before anything changes, unless an earlier attempt of the same undo holds
// one; the Lease's cooldown refuses a workload undone too recently), then the owners
// suspended (and the unit given back if that fails).
type gate struct {
	budget *budget.Budget
	gitops *gitops.Guard
	log    *zap.SugaredLogger
}

func (g gate) Admit(ctx context.Context, s undo.Subject, dryRun bool) (undo.Admission, error) {
	// The workload, then every other object the undo writes (an Argo Rollout's workloadRef
	// Deployment): a GitOps owner of any of them would revert the undo.
	subjects := []gitops.Workload{{Group: s.Ref.Group, Kind: s.Ref.Kind, Namespace: s.Ref.Namespace, Name: s.Ref.Name,
		Labels: s.Labels, Annotations: s.Annotations}}
	for _, o := range s.Also {
		subjects = append(subjects, gitops.Workload{Group: o.Ref.Group, Kind: o.Ref.Kind, Namespace: o.Ref.Namespace, Name: o.Ref.Name,
			Labels: o.Labels, Annotations: o.Annotations})
	}
	owners := make([][]gitops.Owner, len(subjects))
	for i, w := range subjects {
		var err error
		if owners[i], err = g.gitops.Check(ctx, w); err != nil {
			return undo.Admission{}, err
		}
	}
	// Every undo spends a unit of its own, also two replicas undoing the same alerts: the
	// loser gives its own back, never the unit that paid for the undo that landed. The unit
	// is for the workload as the undo resolved and read it, whatever the alert's labels said:
	// the Lease keeps the cooldown by it.
	var unit budget.Unit
	if !s.Paid {
		var err error
		unit, err = g.budget.TakeFor(ctx, budget.Workload{Name: s.Ref.String(), UID: string(s.UID), Generation: s.Generation}, dryRun)
		if err != nil {
			return undo.Admission{}, err
		}
	}
	release := func(ctx context.Context) {
		if err := g.budget.Return(ctx, unit); err != nil {
			g.log.Warnw("could not give the rollback budget's unit back; it expires with the window",
				"workload", s.Ref.String(), "error", err)
		}
	}
	var adm undo.Admission
	for i, w := range subjects {
		suspended, err := g.gitops.Suspend(ctx, w, owners[i], dryRun)
		for _, sus := range suspended {
			if dryRun {
				// Sent as a server-side dry run: nothing changed, so no Event on the owner.
				adm.Notes = append(adm.Notes, "dry run: would have suspended "+sus.String())
				continue
			}
			adm.Notes = append(adm.Notes, "suspended "+sus.String())
			adm.Related = append(adm.Related, sus.Ref)
		}
		if err != nil {
			// No undo: the unit goes back (without the request's deadline, which may be what
			// failed). Owners already suspended stay so: the notes and Events say which, so
			// people can resume them.
			release(context.WithoutCancel(ctx))
			return adm, err
		}
		if note := gitops.HelmNote(w); note != "" {
			adm.Notes = append(adm.Notes, note)
		}
	}
	if unit.ID != "" {
		adm.Release = release
	}
	return adm, nil
}
