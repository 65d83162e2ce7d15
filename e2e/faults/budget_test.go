package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
	"github.com/sre-kit/alert-rollback/e2e/fixture"
	"github.com/sre-kit/alert-rollback/internal/alert"
	"github.com/sre-kit/alert-rollback/internal/budget"
	"github.com/sre-kit/alert-rollback/internal/outcome"
)

// TestBudgetUnitOfAFailedWrite: the built function, on the real apiserver through the fault
// proxy, gives back the budget's unit of an undo whose write no attempt may have applied,
// and keeps the unit of one whose write may have landed, whatever error client-go ends
// with. client-go sends a write again after an answer with Retry-After and reports only how
// the last attempt ended: after 429s until the call's deadline, its rate limiter's error
// (which once kept the unit, so an overloaded apiserver drained the budget one re-send at a
// time); after a storage timeout's 500 whose write had landed, the 409 of the retry (which
// once gave the unit back for an undo that happened).
func TestBudgetUnitOfAFailedWrite(t *testing.T) {
	cluster.Require(t, tools...)
	tests := []struct {
		name       string
		rule       *Rule
		wantStatus int
		want       []want
		// undos is how many undos landed; units how many the Lease holds afterwards.
		undos, units int
	}{
		{
			name:       "429 with Retry-After on every write of the workload, until the deadline",
			rule:       &Rule{Name: "429 on PATCH", Match: patchDeployment, Status: http.StatusTooManyRequests, RetryAfter: 1},
			wantStatus: http.StatusServiceUnavailable,
			want:       []want{{outcome.Failed, outcome.ReasonTimeout}, {outcome.Failed, outcome.ReasonAPIUnavailable}},
			undos:      0, units: 0,
		},
		{
			name: "the write lands and is answered as a storage timeout (500, Retry-After): the retry gets 409",
			rule: &Rule{Name: "500 after PATCH", Match: patchDeployment, Status: http.StatusInternalServerError, RetryAfter: 1,
				Forward: true, Times: 1},
			wantStatus: http.StatusOK, want: []want{alreadyHandled},
			undos: 1, units: 1,
		},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			h := newHarness(t, fmt.Sprintf("budget-unit-%d", i), map[string]string{"ROLLBACK_API_TIMEOUT": apiTimeout}, 1)
			h.proxy.Add(tc.rule)
			code, resp, err := h.function().Post(ctx, h.notification(fmt.Sprintf("BudgetUnit%d", i)), h.token)
			if err != nil {
				t.Fatal(err)
			}
			if code != tc.wantStatus || len(resp.Results) != 1 || !matches(resp.Results[0], tc.want) {
				t.Errorf("answer %d %+v; want %d with one result, one of %v", code, resp.Results, tc.wantStatus, tc.want)
			}
			patches := 0
			for _, s := range h.proxy.Seen() {
				if s.Method == http.MethodPatch && strings.Contains(s.Path, "/deployments/") {
					patches++
				}
			}
			if patches < 2 {
				t.Errorf("%d PATCHes of the Deployment went through the proxy; want client-go to have sent it again", patches)
			}
			if err := fixture.WaitDeploymentRevision(ctx, kube.Clientset, h.ns, workload, int64(2+tc.undos)); err != nil {
				t.Error(err)
			}
			units, err := budget.New(kube.Clientset.CoordinationV1().Leases(h.ns), h.ns, budget.Spec{Units: 5, Window: time.Hour}, budget.Options{}).Spent(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("answer %d %s: %s; %d PATCHes; %d units on the Lease", code, resp.Results[0].Reason, resp.Results[0].Message, patches, units)
			if units != tc.units {
				t.Errorf("the Lease holds %d units; want %d", units, tc.units)
			}
			if t.Failed() {
				t.Logf("requests through the proxy:\n%s", seen(h.proxy.Seen()))
			}
		})
	}
}

// notification is the seed's alerts, as Alertmanager sends them.
func (h *harness) notification(alertname string) []byte {
	m := alert.Message{Version: "4", Status: "firing", Receiver: "alert-rollback"}
	for i, a := range h.alerts(alertname) {
		m.Alerts = append(m.Alerts, alert.Alert{Status: "firing", Labels: a.Labels, Annotations: a.Annotations, StartsAt: a.StartsAt,
			Fingerprint: fmt.Sprintf("%016x", a.StartsAt.UnixNano()+int64(i))})
	}
	b, err := json.Marshal(m)
	if err != nil {
		h.t.Fatal(err)
	}
	return b
}
