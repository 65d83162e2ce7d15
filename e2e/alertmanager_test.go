package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sre-kit/alert-rollback/e2e/fixture"
	"github.com/sre-kit/alert-rollback/e2e/run"
	"github.com/sre-kit/alert-rollback/internal/alert"
)

// TestAlertmanager sends the seed's alert through a real Alertmanager running the shipped
// configuration, with only the url and the credentials file filled in: the Deployment is
// rolled back through that path, and the function checked the bearer token Alertmanager
// sent. With ROLLBACK_UPDATE_TESTDATA=1 the notification is saved in ../testdata, where
// the unit tests read it.
func TestAlertmanager(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	pod := e.brokenDeployment("web-shop-frontend")
	f := e.startFunction("rollback", nil)
	rec := newRecorder(t, f.URL)

	tests := []struct {
		name       string
		token      string
		wantStatus int
	}{
		// First a wrong token: Alertmanager is answered 401 and the Deployment stays put.
		{"wrong token", "not-" + e.token, http.StatusUnauthorized},
		{"shipped token", e.token, http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			am, err := run.StartAlertmanager(ctx, run.AlertmanagerOptions{
				Dir: e.dir, Name: "alertmanager-" + strings.ReplaceAll(tc.name, " ", "-"), WebhookURL: rec.URL,
				CredentialsFile: writeFile(t, filepath.Join(e.dir, "credentials-"+strings.ReplaceAll(tc.name, " ", "-")), tc.token+"\n"),
			})
			if err != nil {
				t.Fatal(err)
			}
			defer am.Stop()
			before := len(rec.deliveries())
			if err := am.Fire(ctx, amAlert(seedAlert(e.ns, pod, time.Now()))); err != nil {
				t.Fatal(err)
			}
			var d delivery
			err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
				got := rec.deliveries()
				if len(got) > before {
					d = got[before]
					return true, nil
				}
				return false, nil
			})
			if err != nil {
				t.Fatalf("Alertmanager delivered nothing: %v\n%s", err, readLog(am.LogPath))
			}
			if d.status != tc.wantStatus {
				t.Fatalf("the function answered Alertmanager %d; want %d", d.status, tc.wantStatus)
			}
			if got := d.header.Get("Authorization"); got != "Bearer "+tc.token {
				t.Errorf("Alertmanager sent Authorization %q; want the credentials file's token", got)
			}
			if ua := d.header.Get("User-Agent"); !strings.HasPrefix(ua, "Alertmanager/") {
				t.Errorf("User-Agent = %q; want Alertmanager's", ua)
			}
			msg, err := alert.Decode(d.body)
			if err != nil {
				t.Fatalf("decoding what Alertmanager sent: %v\n%s", err, d.body)
			}
			if len(msg.Alerts) != 1 || msg.Alerts[0].Labels["pod"] != pod || msg.Alerts[0].Fingerprint == "" {
				t.Errorf("Alertmanager sent %+v; want the one alert about %s", msg.Alerts, pod)
			}
			dep := e.deployment("web-shop-frontend")
			wantRevision := map[bool]string{true: "2", false: "3"}[tc.wantStatus != http.StatusOK]
			if tc.wantStatus == http.StatusOK {
				if err := fixture.WaitDeploymentRevision(ctx, e.cs, e.ns, "web-shop-frontend", 3); err != nil {
					t.Fatal(err)
				}
				dep = e.deployment("web-shop-frontend")
				if img := dep.Spec.Template.Spec.Containers[0].Image; !strings.HasSuffix(img, ":v1") {
					t.Errorf("image after the undo = %q; want v1", img)
				}
				saveCapture(t, "alertmanager-v0.31.1-firing.json", d)
			}
			if got := dep.Annotations["deployment.kubernetes.io/revision"]; got != wantRevision {
				t.Errorf("revision = %s; want %s", got, wantRevision)
			}
		})
	}
}

// saveCapture writes a notification Alertmanager sent into ../testdata, as JSON with the
// headers that matter, when ROLLBACK_UPDATE_TESTDATA=1.
func saveCapture(t *testing.T, name string, d delivery) {
	t.Helper()
	if os.Getenv("ROLLBACK_UPDATE_TESTDATA") != "1" {
		return
	}
	var body any
	if err := json.Unmarshal(d.body, &body); err != nil {
		t.Fatal(err)
	}
	capture := map[string]any{
		"comment": "Captured from a real Alertmanager v0.31.1 by e2e (ROLLBACK_UPDATE_TESTDATA=1); the bearer token is the test's.",
		"headers": map[string]string{
			"Content-Type":  d.header.Get("Content-Type"),
			"User-Agent":    d.header.Get("User-Agent"),
			"Authorization": d.header.Get("Authorization"),
		},
		"body": body,
	}
	b, _ := json.MarshalIndent(capture, "", "  ")
	if err := os.WriteFile(filepath.Join("..", "testdata", name), append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("saved ../testdata/%s", name)
}

func readLog(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
