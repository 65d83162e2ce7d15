package function

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/sre-kit/alert-rollback/internal/alert"
	"github.com/sre-kit/alert-rollback/internal/fixture"
	"github.com/sre-kit/alert-rollback/internal/outcome"
)

// TestHandleControllerOwned: a workload that another object controls (a Knative Revision's
// Deployment, an operator's StatefulSet or DaemonSet) is refused, naming that owner,
// whichever label the alert used to reach it: every way through target resolution ends at
// the undo's own read of the workload, which is where it is checked. Nothing is written.
func TestHandleControllerOwned(t *testing.T) {
	revision := metav1.OwnerReference{APIVersion: "serving.knative.dev/v1", Kind: "Revision", Name: "checkout-api-00002",
		UID: "uid-revision", Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}
	operator := metav1.OwnerReference{APIVersion: "monitoring.coreos.com/v1", Kind: "Prometheus", Name: "k8s",
		UID: "uid-prometheus", Controller: ptr.To(true)}

	d, rss := fixture.Deployment(ownNamespace, "checkout-api", "shop/checkout:v1", "shop/checkout:v2")
	d.OwnerReferences = []metav1.OwnerReference{revision}
	pod := fixture.Pod(rss[1], "x7k2p")
	sts, crs := fixture.StatefulSet(ownNamespace, "orders-db", "db:v1", "db:v2")
	sts.OwnerReferences = []metav1.OwnerReference{operator}
	ds, dcrs := fixture.DaemonSet(ownNamespace, "log-agent", "agent:v1", "agent:v2")
	ds.OwnerReferences = []metav1.OwnerReference{operator}
	objs := append(append(append(fixture.Objects(rss...), fixture.Objects(crs...)...), fixture.Objects(dcrs...)...),
		d, pod, sts, ds,
		fixture.ControlledPod(sts, "StatefulSet", "orders-db-0", crs[1].Name),
		fixture.ControlledPod(ds, "DaemonSet", "log-agent-x7k2p", fixture.Hash("agent:v2")))

	const (
		knative    = "serving.knative.dev/v1 Revision checkout-api-00002"
		prometheus = "monitoring.coreos.com/v1 Prometheus k8s"
	)
	tests := []struct {
		name      string
		alert     alert.Alert
		env       map[string]string
		kind      string
		workload  string
		wantOwner string
	}{
		{"deployment label", firing("deployment", "checkout-api"), nil, "Deployment", "checkout-api", knative},
		{"replicaset label", firing("replicaset", rss[1].Name), nil, "Deployment", "checkout-api", knative},
		{"replicaset label of the previous revision", firing("replicaset", rss[0].Name), nil, "Deployment", "checkout-api", knative},
		{"pod label, confirmed by the ReplicaSet list", firing("pod", pod.Name), nil, "Deployment", "checkout-api", knative},
		{"pod label, the pod read (ROLLBACK_READ_PODS)", firing("pod", pod.Name), map[string]string{"ROLLBACK_READ_PODS": "true"}, "Deployment", "checkout-api", knative},
		{"pod label, the pod gone", firing("pod", rss[1].Name+"-zz9q4"), nil, "Deployment", "checkout-api", knative},
		{"statefulset label", firing("statefulset", "orders-db"), nil, "StatefulSet", "orders-db", prometheus},
		{"pod of the statefulset", firing("pod", "orders-db-0"), nil, "StatefulSet", "orders-db", prometheus},
		{"daemonset label", firing("daemonset", "log-agent"), nil, "DaemonSet", "log-agent", prometheus},
		{"pod of the daemonset", firing("pod", "log-agent-x7k2p"), nil, "DaemonSet", "log-agent", prometheus},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := fixture.Clientset(objs...)
			f := start(t, client, tc.env)
			rec := httptest.NewRecorder()
			f.Handle(rec, post(notification(tc.alert)))
			var resp outcome.Response
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || rec.Code != http.StatusOK || len(resp.Results) != 1 {
				t.Fatalf("Handle() = %d %s; want 200 and one result", rec.Code, rec.Body)
			}
			r := resp.Results[0]
			if got, want := (want{string(r.Action), string(r.Reason), r.Kind, r.Name, r.FromRevision, r.ToRevision}),
				(want{"refused", "controller-owned", tc.kind, tc.workload, 0, 0}); got != want {
				t.Errorf("result = %+v; want %+v (%s)", got, want, r.Message)
			}
			if !strings.Contains(r.Message, tc.wantOwner) {
				t.Errorf("message %q does not name the owner %s", r.Message, tc.wantOwner)
			}
			if w := writes(client); len(w) > 0 {
				t.Errorf("refused, but wrote: %v", w)
			}
		})
	}
}

// controllerOwnedFixture adds to objs a Deployment that a Knative Revision controls, at
// revision 2, with a pod: bait for FuzzHandle, never patchable whatever alert names it.
func controllerOwnedFixture(objs []runtime.Object, alerts []alert.Alert) ([]runtime.Object, []alert.Alert) {
	d, rss := fixture.Deployment(ownNamespace, "knative-web", "kw:v1", "kw:v2")
	d.OwnerReferences = []metav1.OwnerReference{{APIVersion: "serving.knative.dev/v1", Kind: "Revision", Name: "knative-web-00002",
		UID: "uid-knative-web-00002", Controller: ptr.To(true)}}
	pod := fixture.Pod(rss[1], "r2d2x")
	objs = append(append(objs, fixture.Objects(rss...)...), d, pod)
	alerts = append(alerts, firing("deployment", "knative-web"), firing("replicaset", rss[1].Name), firing("pod", pod.Name))
	return objs, alerts
}

// TestHandleKnativeService: an alert about a Knative Revision's pod, its ReplicaSet or its
// Deployment, or one naming the Service or the Revision by Knative's labels, rolls the
// Knative Service back (the Revision's Deployment is Knative's, never written): the answer
// is about the Service, from generation 2 to 1, and a copy of the alert is skipped as
// handled, about the Service too.
func TestHandleKnativeService(t *testing.T) {
	svc, cfg, revs := fixture.KnativeService(ownNamespace, "web", "web:v1", "web:v2")
	d, rss := fixture.KnativeDeployment(revs[1], "web:v2")
	pod := fixture.Pod(rss[0], "x7k2p")
	typed := append(fixture.Objects(rss...), d, pod)
	tests := []struct {
		name  string
		alert alert.Alert
		env   map[string]string
	}{
		{"pod label, confirmed by the ReplicaSet list", firing("pod", pod.Name), nil},
		{"pod label, the pod read (ROLLBACK_READ_PODS)", firing("pod", pod.Name), map[string]string{"ROLLBACK_READ_PODS": "true"}},
		{"replicaset label", firing("replicaset", rss[0].Name), nil},
		{"deployment label", firing("deployment", d.Name), nil},
		{"knative_service label", firing("knative_service", "web"), nil},
		{"kn_service_name label", firing("kn_service_name", "web"), nil},
		{"kn_revision_name label", firing("kn_revision_name", revs[1].GetName()), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := fixture.Clientset(typed...)
			dyn := newDynamic(svc.DeepCopy(), cfg.DeepCopy(), revs[0].DeepCopy(), revs[1].DeepCopy())
			f := newFunctionDynamic(t, client, dyn, tc.env)
			t.Cleanup(func() { _ = f.Stop(t.Context()) })
			for i, w := range []want{{"rolled-back", "rolled-back", "Service", "web", 2, 1}, {"skipped", "already-handled", "Service", "web", 0, 0}} {
				rec := httptest.NewRecorder()
				f.Handle(rec, post(notification(tc.alert)))
				var resp outcome.Response
				if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || rec.Code != http.StatusOK || len(resp.Results) != 1 {
					t.Fatalf("Handle() #%d = %d %s; want 200 and one result", i+1, rec.Code, rec.Body)
				}
				r := resp.Results[0]
				got := want{string(r.Action), string(r.Reason), r.Kind, r.Name, r.FromRevision, r.ToRevision}
				if i > 0 { // a copy: the revisions are not the point
					got.From, got.To = 0, 0
				}
				if got != w {
					t.Errorf("result #%d = %+v; want %+v (%s)", i+1, got, w, r.Message)
				}
			}
			if w := writes(client); len(w) > 0 {
				t.Errorf("wrote through the typed client (a Deployment Knative owns): %v", w)
			}
			got, err := dyn.Resource(fixture.KnativeServices).Namespace(ownNamespace).Get(t.Context(), "web", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if image := fixture.KnativeImage(got); image != "web:v1" {
				t.Errorf("the Service's image is %s; want web:v1", image)
			}
		})
	}
}
