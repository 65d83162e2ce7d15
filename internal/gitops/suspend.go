package gitops

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
)

// Suspension is what Suspend did to one owner, for the state annotation and the Events.
type Suspension struct {
	Owner Owner
	// Ref points an Event at the owner object.
	Ref corev1.ObjectReference
	// Changed is false when the owner already could not revert the workload.
	Changed bool
	// Change says what was set, or why nothing had to be.
	Change string
	// Resume says how to undo the suspension once Git is fixed.
	Resume string
}

// String is the one-line account: "Flux Kustomization flux-system/shop: spec.suspend set
// to true (resume once Git is fixed: flux resume kustomization shop -n flux-system)".
func (s Suspension) String() string {
	if s.Resume == "" {
		return fmt.Sprintf("%s: %s", s.Owner, s.Change)
	}
	return fmt.Sprintf("%s: %s (resume once Git is fixed: %s)", s.Owner, s.Change, s.Resume)
}

// Suspend stops each owner from reverting the workload w: spec.suspend=true on a Flux
// Kustomization; self-heal off on an Argo CD Application's automated sync, keeping the rest
// of its policy (automated sync itself, prune, ...), since self-heal is what reverts a change
// made in the cluster. It writes only to an owner in a namespace the guard may act in whose
// records, as read just before the write, list w (see Check); anything else is an error
// wrapping ErrUnverified, and a HelmRelease always is. Each write carries the resourceVersion
// of that read, so the owner cannot have changed between the check and the write; a conflict
// reads again. With dryRun the writes are sent as dry runs: checked against the owner's
// schema, and nothing changes. It stops at the first owner it cannot suspend and returns what
// it did so far with the error.
func (g *Guard) Suspend(ctx context.Context, w Workload, owners []Owner, dryRun bool) ([]Suspension, error) {
	var done []Suspension
	for _, o := range owners {
		var s Suspension
		var err error
		// err is the last attempt's, not RetryOnConflict's: that one answers nil when the
		// first attempt failed with an error wrapping a context's deadline.
		_ = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			s, err = g.suspend(ctx, w, o, dryRun)
			return err
		})
		if err != nil {
			return done, fmt.Errorf("suspend %s: %w", o, err)
		}
		done = append(done, s)
	}
	return done, nil
}

func (g *Guard) suspend(ctx context.Context, w Workload, o Owner, dryRun bool) (Suspension, error) {
	switch {
	case !g.allowed(o.Namespace):
		return Suspension{}, fmt.Errorf("%w: %s", ErrUnverified, outside(o))
	case o.Kind != Application && o.Kind != Kustomization:
		return Suspension{}, fmt.Errorf("%w: %s", ErrUnverified, helmUnverifiable(o))
	}
	client := g.client.Resource(o.resource()).Namespace(o.Namespace)
	obj, err := client.Get(ctx, o.Name, metav1.GetOptions{})
	if err != nil {
		return Suspension{}, err
	}
	if !manages(o, obj, w) {
		return Suspension{}, fmt.Errorf("%w: %s", ErrUnverified, unlisted(o, w))
	}
	s := Suspension{Owner: o, Ref: objectReference(o, obj)}
	var spec map[string]any
	if o.Kind == Application {
		automated, found, _ := unstructured.NestedMap(obj.Object, "spec", "syncPolicy", "automated")
		selfHeal, _, _ := unstructured.NestedBool(automated, "selfHeal")
		// Argo CD v3's automated.enabled=false turns automated sync off while keeping it.
		enabled, hasEnabled, _ := unstructured.NestedBool(automated, "enabled")
		if !found || (hasEnabled && !enabled) || !selfHeal {
			s.Change = "self-heal already off: Argo CD does not revert changes made in the cluster"
			return s, nil
		}
		spec = map[string]any{"syncPolicy": map[string]any{"automated": map[string]any{"selfHeal": false}}}
		s.Change = "spec.syncPolicy.automated.selfHeal set to false (the rest of its sync policy kept)"
		s.Resume = fmt.Sprintf("set spec.syncPolicy.automated.selfHeal back to true on Application %s/%s, or sync it from the Argo CD UI", o.Namespace, o.Name)
	} else {
		// Said even when it was suspended already (by a person, or by this function on an
		// earlier attempt): it stays suspended until someone resumes it.
		s.Resume = fmt.Sprintf("flux resume kustomization %s -n %s", o.Name, o.Namespace)
		if suspended, _, _ := unstructured.NestedBool(obj.Object, "spec", "suspend"); suspended {
			s.Change = "already suspended (spec.suspend is true)"
			return s, nil
		}
		spec = map[string]any{"suspend": true}
		s.Change = "spec.suspend set to true"
	}
	// A merge patch naming the resourceVersion read: the apiserver refuses it with a
	// conflict if the owner changed since, and then the decision is made again.
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": obj.GetResourceVersion()},
		"spec":     spec,
	})
	if err != nil {
		return s, err
	}
	opts := metav1.PatchOptions{FieldManager: "alert-rollback"}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	patched, err := client.Patch(ctx, o.Name, types.MergePatchType, patch, opts)
	if err != nil {
		return s, err
	}
	s.Changed = true
	s.Ref = objectReference(o, patched)
	return s, nil
}
