package outcome

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/sre-kit/alert-rollback/internal/alert"
	"github.com/sre-kit/alert-rollback/internal/budget"
	"github.com/sre-kit/alert-rollback/internal/gitops"
	"github.com/sre-kit/alert-rollback/internal/target"
	"github.com/sre-kit/alert-rollback/internal/undo"
)

func TestClassify(t *testing.T) {
	gr := schema.GroupResource{Group: "apps", Resource: "deployments"}
	tests := []struct {
		name       string
		err        error
		wantAction Action
		wantReason Reason
		wantRetry  bool
	}{
		{"nil is a rollback", nil, RolledBack, ReasonRolledBack, false},
		{"already handled, wrapped", fmt.Errorf("x: %w", undo.ErrAlreadyHandled), Skipped, ReasonAlreadyHandled, false},
		{"stale", undo.ErrStale, Skipped, ReasonStale, false},
		{"already at target", undo.ErrAlreadyAtTarget, Skipped, ReasonAlreadyAtTarget, false},
		{"cooldown", undo.ErrCooldown, Refused, ReasonCooldown, false},
		{"opted out", undo.ErrOptOut, Refused, ReasonOptedOut, false},
		{"no good revision", undo.ErrNoGoodRevision, Refused, ReasonNoGoodRevision, false},
		{"no previous revision", undo.ErrNoPreviousRevision, Refused, ReasonNoPreviousRevision, false},
		{"paused", undo.ErrPaused, Refused, ReasonPaused, false},
		{"bad state", undo.ErrBadState, Refused, ReasonBadState, false},
		{"foreign history", undo.ErrForeignHistory, Refused, ReasonForeignHistory, false},
		{"controller owned", fmt.Errorf("%w: Deployment shop/web is controlled by serving.knative.dev/v1 Revision web-00002", undo.ErrControllerOwned), Refused, ReasonControllerOwned, false},
		{"workload gone", undo.ErrNotFound, Refused, ReasonNotFound, false},
		{"too old", undo.ErrTooOld, Refused, ReasonTooOld, false},
		{"GitOps managed", &gitops.ManagedError{}, Refused, ReasonGitOpsManaged, false},
		{"GitOps owner missing", fmt.Errorf("%w: Flux Kustomization flux-system/apps", gitops.ErrOwnerMissing), Refused, ReasonGitOpsOwnerMissing, false},
		{"GitOps unknown: Applications forbidden", fmt.Errorf("%w: (%w)", gitops.ErrUnknown, apierrors.NewForbidden(gr, "shop", errors.New("RBAC"))), Refused, ReasonGitOpsUnknown, false},
		{"GitOps parent", fmt.Errorf("%w: Argo CD Application argocd/shop", gitops.ErrParentManaged), Refused, ReasonGitOpsParent, false},
		{"GitOps owner unverified", fmt.Errorf("%w: Flux Kustomization flux-system/platform", gitops.ErrUnverified), Refused, ReasonGitOpsUnverified, false},
		{"GitOps owner unverified at the write", fmt.Errorf("suspend Flux Kustomization shop/apps: %w", fmt.Errorf("%w: its status.inventory does not list apps/Deployment shop/web", gitops.ErrUnverified)), Refused, ReasonGitOpsUnverified, false},
		{"too many targets", ErrTooManyTargets, Refused, ReasonTooManyTargets, false},
		{"no namespace", target.ErrNoNamespace, Refused, ReasonNoNamespace, false},
		{"invalid name", target.ErrInvalidName, Refused, ReasonInvalidName, false},
		{"namespace denied", target.ErrNamespaceDenied, Refused, ReasonNamespaceDenied, false},
		{"unsupported owner", target.ErrUnsupportedOwner, Refused, ReasonUnsupportedOwner, false},
		{"unsupported kind", fmt.Errorf("undo: %w: kind %q", undo.ErrUnsupportedKind, "CronJob"), Refused, ReasonUnsupportedOwner, false},
		{"no workload label", fmt.Errorf("%w: want one of the labels deployment, statefulset, daemonset, replicaset, pod", target.ErrNoWorkloadLabel), Refused, ReasonNoWorkloadLabel, false},
		{"pod or replicaset gone", fmt.Errorf("%w: replicaset shop/web-1", target.ErrNotFound), Refused, ReasonNotFound, false},
		{"budget exhausted", fmt.Errorf("shop/web: %w", &budget.ExhaustedError{Spec: budget.Spec{Units: 5, Window: time.Hour}, Spent: 5, FreesAt: time.Unix(0, 0)}), Refused, ReasonBudgetExhausted, false},
		{"cooldown kept on the budget Lease", fmt.Errorf("shop/web: %w", &budget.CooldownError{For: "Deployment shop/web"}), Refused, ReasonCooldown, false},
		{"budget Lease contended", fmt.Errorf("%w (10 attempts): %v", budget.ErrContended, apierrors.NewConflict(gr, "alert-rollback-budget", errors.New("modified"))), Failed, ReasonConflict, true},
		{"gitops managed", fmt.Errorf("shop/web: %w", &gitops.ManagedError{Owners: []gitops.Owner{{Kind: gitops.Application, Namespace: "argocd", Name: "shop", Via: gitops.ArgoCDTrackingID}}}), Refused, ReasonGitOpsManaged, false},
		{"rollout pending", undo.ErrRolloutPending, Failed, ReasonRolloutPending, true},
		{"targets unknown", ErrTargetsUnknown, Failed, ReasonTargetsUnknown, true},
		{"deadline", fmt.Errorf("get: %w", context.DeadlineExceeded), Failed, ReasonTimeout, true},
		{"server timeout", apierrors.NewServerTimeout(gr, "get", 1), Failed, ReasonTimeout, true},
		// client-go's own words when its rate limiter would wait past the deadline.
		{"throttled past the deadline", fmt.Errorf("get deployment shop/web: %w", fmt.Errorf("client rate limiter Wait returned an error: %w", errors.New("rate: Wait(n=1) would exceed context deadline"))), Failed, ReasonTimeout, true},
		{"conflict", apierrors.NewConflict(gr, "web", errors.New("modified")), Failed, ReasonConflict, true},
		{"unavailable", apierrors.NewServiceUnavailable("etcd"), Failed, ReasonAPIUnavailable, true},
		{"throttled", apierrors.NewTooManyRequests("slow down", 1), Failed, ReasonAPIUnavailable, true},
		{"forbidden", apierrors.NewForbidden(gr, "web", errors.New("no")), Failed, ReasonForbidden, false},
		{"invalid", apierrors.NewBadRequest("bad patch"), Failed, ReasonAPIError, false},
		{"API not found", apierrors.NewNotFound(gr, "web"), Refused, ReasonNotFound, false},
		{"transport", &url.Error{Op: "Get", URL: "https://x", Err: &net.OpError{Op: "dial", Err: errors.New("refused")}}, Failed, ReasonAPIUnavailable, true},
		{"anything else", errors.New("controllerrevision: data: bad json"), Failed, ReasonInternal, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			action, reason := Classify(tc.err)
			if action != tc.wantAction || reason != tc.wantReason {
				t.Errorf("Classify(%v) = %s, %s; want %s, %s", tc.err, action, reason, tc.wantAction, tc.wantReason)
			}
			if got := Retryable(reason); got != tc.wantRetry {
				t.Errorf("Retryable(%s) = %v; want %v", reason, got, tc.wantRetry)
			}
		})
	}
}

func TestHTTPStatus(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		results []Result
		want    int
	}{
		{"method", ErrMethod, nil, http.StatusMethodNotAllowed},
		{"unauthorized", ErrUnauthorized, nil, http.StatusUnauthorized},
		{"media type", fmt.Errorf("%w: text/plain", ErrMediaType), nil, http.StatusUnsupportedMediaType},
		{"too large", ErrTooLarge, nil, http.StatusRequestEntityTooLarge},
		{"invalid", fmt.Errorf("%w: no alerts", alert.ErrInvalid), nil, http.StatusBadRequest},
		{"starting", ErrStarting, nil, http.StatusServiceUnavailable},
		{"stopping", ErrStopping, nil, http.StatusServiceUnavailable},
		{"no results", nil, nil, http.StatusOK},
		{"final outcomes", nil, []Result{{Action: RolledBack}, {Action: Skipped}, {Action: Refused}}, http.StatusOK},
		{"a final failure", nil, []Result{{Action: RolledBack}, {Action: Failed}}, http.StatusUnprocessableEntity},
		{"a retryable failure wins", nil, []Result{{Action: Failed}, {Action: Failed, Retryable: true}}, http.StatusServiceUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := HTTPStatus(tc.err, tc.results); got != tc.want {
				t.Errorf("HTTPStatus(%v, %v) = %d; want %d", tc.err, tc.results, got, tc.want)
			}
		})
	}
}

// TestOfNotes: the Gate's notes follow the message. After a failure, when objects were
// changed for the undo (an owner suspended), the message says they stay changed: no state
// annotation records them.
func TestOfNotes(t *testing.T) {
	const note = "suspended Flux Kustomization flux-system/apps: spec.suspend set to true"
	owner := []corev1.ObjectReference{{Kind: "Kustomization", Namespace: "flux-system", Name: "apps"}}
	alerts := []alert.Alert{{Labels: map[string]string{"alertname": "BadRollout"}, Fingerprint: "f"}}
	ref := target.Ref{Kind: "Deployment", Namespace: "shop", Name: "web"}
	tests := []struct {
		name string
		c    undo.Change
		err  error
		want string
	}{
		{name: "rolled back", c: undo.Change{From: 2, To: 1, Notes: []string{note}, Related: owner},
			want: "rolled back from revision 2 to revision 1; " + note},
		{name: "failed after the suspension", c: undo.Change{Notes: []string{note}, Related: owner}, err: errors.New("patch: invalid"),
			want: "patch: invalid; not rolled back, but done beforehand and left so: " + note},
		{name: "failed, nothing changed (dry run)", c: undo.Change{Notes: []string{"dry run: would have " + note}}, err: errors.New("patch: invalid"),
			want: "patch: invalid; dry run: would have " + note},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Of(alerts, ref, tt.c, tt.err).Message; got != tt.want {
				t.Errorf("Of(...).Message = %q; want %q", got, tt.want)
			}
		})
	}
}
