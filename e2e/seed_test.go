package e2e

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/sre-kit/alert-rollback/e2e/fixture"
)

// TestSeedScenario is the seed's scenario for real: a Deployment whose update cannot be
// scheduled, an alert naming the real Unschedulable pod, and the built function, as
// kservice.yaml's ServiceAccount, rolling it back.
func TestSeedScenario(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	pod := e.brokenDeployment("checkout-api")
	rev1, err := fixture.ReplicaSetOfRevision(ctx, e.cs, e.ns, "checkout-api", 1)
	if err != nil {
		t.Fatal(err)
	}
	f := e.startFunction("rollback", nil)

	status, resp, err := f.Post(ctx, notification(seedAlert(e.ns, pod, time.Now())), e.token)
	if err != nil || status != http.StatusOK {
		t.Fatalf("POST the seed alert = %d, %v; want 200", status, err)
	}
	if len(resp.Results) != 1 {
		t.Fatalf("results = %+v; want one", resp.Results)
	}
	r := resp.Results[0]
	if r.Action != "rolled-back" || r.Kind != "Deployment" || r.Name != "checkout-api" || r.FromRevision != 2 || r.ToRevision != 1 {
		t.Fatalf("result = %+v; want Deployment checkout-api rolled-back from 2 to 1", r)
	}

	// The controller makes revision 3 from revision 1's ReplicaSet (the same template).
	if err := fixture.WaitDeploymentRevision(ctx, e.cs, e.ns, "checkout-api", 3); err != nil {
		t.Fatal(err)
	}
	d := e.deployment("checkout-api")
	if !fixture.SameTemplate(d.Spec.Template, rev1.Spec.Template) {
		t.Errorf("template after the undo = %+v; want revision 1's %+v", d.Spec.Template, rev1.Spec.Template)
	}
	rev3, err := fixture.ReplicaSetOfRevision(ctx, e.cs, e.ns, "checkout-api", 3)
	if err != nil || rev3.UID != rev1.UID {
		t.Errorf("revision 3 is %v (%v); want revision 1's ReplicaSet %s brought back", rev3, err, rev1.Name)
	}
	events, err := fixture.WaitEvents(ctx, e.cs, e.ns, "Deployment", "checkout-api", "RolledBack", 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("event: %s %s: %s", events[0].Type, events[0].Reason, events[0].Message)
}
