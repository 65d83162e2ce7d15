package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sre-kit/alert-rollback/e2e/fixture"
	"github.com/sre-kit/alert-rollback/e2e/run"
	"github.com/sre-kit/alert-rollback/internal/outcome"
)

// TestAlertStartedBeforeRollout sends the seed's alert through a real Alertmanager with a
// startsAt before revision 2's rollout (the ReplicaSet's creationTimestamp, the API
// server's): it is refused predates-rollout and the Deployment stays at revision 2. The
// same alert, started after the rollout, rolls it back. Each case has its own Alertmanager:
// one would merge the two into one alert with the earlier startsAt.
func TestAlertStartedBeforeRollout(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const name = "web-checkout"
	pod := e.brokenDeployment(name)
	rs, err := fixture.ReplicaSetOfRevision(ctx, e.cs, e.ns, name, 2)
	if err != nil {
		t.Fatal(err)
	}
	rollout := rs.CreationTimestamp.Time
	f := e.startFunction("rollback", nil)
	rec := newRecorder(t, f.URL)
	creds := writeFile(t, filepath.Join(e.dir, "credentials"), e.token+"\n")

	tests := []struct {
		name         string
		startsAt     time.Time
		wantAction   outcome.Action
		wantReason   outcome.Reason
		wantRevision int64
		wantImage    string
	}{
		{"started before the rollout", rollout.Add(-10 * time.Minute), outcome.Refused, outcome.ReasonPredatesRollout, 2, ":v2"},
		{"started after the rollout", time.Now(), outcome.RolledBack, outcome.ReasonRolledBack, 3, ":v1"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			am, err := run.StartAlertmanager(ctx, run.AlertmanagerOptions{
				Dir: e.dir, Name: fmt.Sprintf("alertmanager-%d", i), WebhookURL: rec.URL, CredentialsFile: creds,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer am.Stop()
			before := len(rec.deliveries())
			if err := am.Fire(ctx, amAlert(seedAlert(e.ns, pod, tc.startsAt))); err != nil {
				t.Fatal(err)
			}
			var d delivery
			err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
				if got := rec.deliveries(); len(got) > before {
					d = got[before]
					return true, nil
				}
				return false, nil
			})
			if err != nil {
				t.Fatalf("Alertmanager delivered nothing: %v\n%s", err, readLog(am.LogPath))
			}
			r := answer(t, d)
			if d.status != http.StatusOK || len(r.Results) != 1 || r.Results[0].Action != tc.wantAction || r.Results[0].Reason != tc.wantReason {
				t.Fatalf("the function answered %d %s; want 200 %s (%s)", d.status, d.answer, tc.wantAction, tc.wantReason)
			}
			if tc.wantReason == outcome.ReasonPredatesRollout {
				for _, want := range []string{tc.startsAt.UTC().Format(time.RFC3339), rollout.UTC().Format(time.RFC3339), "1m0s"} {
					if !strings.Contains(r.Results[0].Message, want) {
						t.Errorf("message %q does not name %s", r.Results[0].Message, want)
					}
				}
			}
			if err := fixture.WaitDeploymentRevision(ctx, e.cs, e.ns, name, tc.wantRevision); err != nil {
				t.Fatal(err)
			}
			dep := e.deployment(name)
			if got := dep.Annotations["deployment.kubernetes.io/revision"]; got != fmt.Sprint(tc.wantRevision) {
				t.Errorf("revision = %s; want %d", got, tc.wantRevision)
			}
			if img := dep.Spec.Template.Spec.Containers[0].Image; !strings.HasSuffix(img, tc.wantImage) {
				t.Errorf("image = %q; want %s", img, tc.wantImage)
			}
		})
	}
}
