package function

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/sre-kit/alert-rollback/internal/alert"
	"github.com/sre-kit/alert-rollback/internal/fixture"
	"github.com/sre-kit/alert-rollback/internal/outcome"
)

// capture is a notification a real Alertmanager sent, saved by the end-to-end tests
// (e2e, ROLLBACK_UPDATE_TESTDATA=1).
type capture struct {
	Headers map[string]string `json:"headers"`
	Body    json.RawMessage   `json:"body"`
}

func loadCapture(t *testing.T, name string) (capture, *alert.Message) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var c capture
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	msg, err := alert.Decode(c.Body)
	if err != nil {
		t.Fatalf("alert.Decode(%s) = %v", name, err)
	}
	return c, msg
}

// TestHandleCapturedNotifications replays what Alertmanager v0.31.1 really sent, headers
// included, against a cluster holding the Deployment the alert named.
func TestHandleCapturedNotifications(t *testing.T) {
	tests := []struct {
		file        string
		wantAction  string
		wantIgnored int
		wantImage   string
	}{
		{"alertmanager-v0.31.1-firing.json", "rolled-back", 0, "app:v1"},
		// A resolved alert only verifies an earlier undo; there was none.
		{"alertmanager-v0.31.1-resolved.json", "skipped", 0, "app:v2"},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			c, msg := loadCapture(t, tc.file)
			a := msg.Alerts[0]
			ns, pod := a.Labels["namespace"], a.Labels["pod"]
			// The pod's ReplicaSet is its name without the last "-xxxxx"; the Deployment is
			// that without the pod-template-hash.
			rsName := pod[:strings.LastIndex(pod, "-")]
			deployName := rsName[:strings.LastIndex(rsName, "-")]
			d, rss := fixture.Deployment(ns, deployName, "app:v1", "app:v2")
			// The pod is gone; its ReplicaSet remains, named and labelled by its hash.
			hash := rsName[len(deployName)+1:]
			rss[1].Name, rss[1].Labels["pod-template-hash"], rss[1].Spec.Template.Labels["pod-template-hash"] = rsName, hash, hash
			// Revision 2 was rolled out just before the alert started, as in the run that
			// captured it; that run is in the past, so ROLLBACK_MAX_AGE is off.
			for i, rs := range rss {
				rs.CreationTimestamp = metav1.NewTime(a.StartsAt.Add(-time.Duration(len(rss)-i) * time.Minute))
			}
			client := fixture.Clientset(append(fixture.Objects(rss...), d)...)
			f := start(t, client, map[string]string{"ROLLBACK_NAMESPACES": ns, "ROLLBACK_MAX_AGE": "0s"})

			r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(c.Body))
			for k, v := range c.Headers {
				r.Header.Set(k, v)
			}
			r.Header.Set("Authorization", "Bearer "+testToken)
			rec := httptest.NewRecorder()
			f.Handle(rec, r)
			if rec.Code != http.StatusOK {
				t.Fatalf("Handle() = %d; want 200; body %s", rec.Code, rec.Body)
			}
			var resp outcome.Response
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
				t.Fatal(err)
			}
			if resp.Ignored != tc.wantIgnored {
				t.Errorf("ignored = %d; want %d", resp.Ignored, tc.wantIgnored)
			}
			if tc.wantAction != "" && (len(resp.Results) != 1 || string(resp.Results[0].Action) != tc.wantAction || resp.Results[0].Fingerprint != a.Fingerprint) {
				t.Errorf("results = %+v; want one %s for fingerprint %s", resp.Results, tc.wantAction, a.Fingerprint)
			}
			if got := deploymentImage(t, client, ns, deployName); got != tc.wantImage {
				t.Errorf("image = %q; want %q", got, tc.wantImage)
			}
		})
	}
}

// TestHandlePodsOfStatefulSetsAndDaemonSets follows a pod to its StatefulSet or DaemonSet.
func TestHandlePodsOfStatefulSetsAndDaemonSets(t *testing.T) {
	sts, crs := fixture.StatefulSet(ownNamespace, "orders-db", "db:v1", "db:v2")
	ds, dcrs := fixture.DaemonSet(ownNamespace, "log-agent", "agent:v1", "agent:v2")
	stsPod := fixture.ControlledPod(sts, "StatefulSet", "orders-db-0", crs[1].Name)
	dsPod := fixture.ControlledPod(ds, "DaemonSet", "log-agent-x7k2p", fixture.Hash("agent:v2"))
	staleDSPod := fixture.ControlledPod(ds, "DaemonSet", "log-agent-b4c6d", fixture.Hash("agent:v1"))
	objs := append(append(fixture.Objects(crs...), fixture.Objects(dcrs...)...), sts, ds, stsPod, dsPod, staleDSPod)

	tests := []struct {
		name      string
		alert     alert.Alert
		want      want
		wantImage func(*fake.Clientset) string
	}{
		{"pod of a StatefulSet", firing("pod", "orders-db-0"), want{"rolled-back", "rolled-back", "StatefulSet", "orders-db", 2, 1}, nil},
		{"pod of a DaemonSet", firing("pod", "log-agent-x7k2p"), want{"rolled-back", "rolled-back", "DaemonSet", "log-agent", 2, 1}, nil},
		{"stale pod of a DaemonSet", firing("pod", "log-agent-b4c6d"), want{"skipped", "stale", "DaemonSet", "log-agent", 2, 0}, nil},
		{"gone pod of a StatefulSet: refused, ownership cannot be confirmed", firing("pod", "orders-db-3"), want{"refused", "not-found", "", "", 0, 0}, nil},
		{"statefulset label", firing("statefulset", "orders-db"), want{"rolled-back", "rolled-back", "StatefulSet", "orders-db", 2, 1}, nil},
		{"daemonset label", firing("daemonset", "log-agent"), want{"rolled-back", "rolled-back", "DaemonSet", "log-agent", 2, 1}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := fixture.Clientset(objs...)
			f := start(t, client, nil)
			rec := httptest.NewRecorder()
			f.Handle(rec, post(notification(tc.alert)))
			var resp outcome.Response
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || len(resp.Results) != 1 {
				t.Fatalf("Handle() = %d %s; want one result", rec.Code, rec.Body)
			}
			r := resp.Results[0]
			if got := (want{string(r.Action), string(r.Reason), r.Kind, r.Name, r.FromRevision, r.ToRevision}); got != tc.want {
				t.Errorf("result = %+v; want %+v (%s)", got, tc.want, r.Message)
			}
		})
	}
}
