package function

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sre-kit/alert-rollback/alert"
	"github.com/sre-kit/alert-rollback/internal/fixture"
	"github.com/sre-kit/alert-rollback/outcome"
)

// The fuzz targets below run their seeds (and testdata/fuzz) under `make test` and plain
// go test; `make fuzz` searches further (FUZZTIME each).

// FuzzDecodeHTTP: whatever the request, decode either refuses it with a 4xx, or accepts a
// POST with the right token and a notification alert.Decode accepts.
func FuzzDecodeHTTP(f *testing.F) {
	valid := string(notification(firing("pod", "checkout-api-5d8f-x7k2p")))
	for _, s := range []struct{ method, contentType, ceSpecversion, auth, body string }{
		{"POST", "application/json", "", "Bearer " + testToken, valid},
		{"POST", "application/json; charset=utf-8", "", "bearer  " + testToken + " ", valid},
		{"POST", "application/json", "1.0", "Bearer " + testToken, valid},
		{"POST", "application/cloudevents+json", "", "Bearer " + testToken, `{"specversion":"1.0","id":"1","source":"/am","type":"t","datacontenttype":"application/json","data":` + valid + `}`},
		{"POST", "application/cloudevents+json", "", "Bearer " + testToken, `{"specversion":"1.0","id":"1","source":"/am","type":"t","data_base64":"e30="}`},
		{"POST", "application/cloudevents-batch+json", "", "Bearer " + testToken, `[]`},
		{"POST", "text/plain", "", "Bearer " + testToken, valid},
		{"POST", "application/json", "", "Basic " + testToken, valid},
		{"POST", "application/json", "", "", valid},
		{"GET", "application/json", "", "Bearer " + testToken, ""},
		{"POST", "application/json", "", "Bearer " + testToken, strings.Repeat("[", 5000)},
		{"POST", "", "", "Bearer " + testToken, valid},
	} {
		f.Add(s.method, s.contentType, s.ceSpecversion, s.auth, []byte(s.body))
	}
	fn := newFunction(f, fixture.Clientset(), map[string]string{"ROLLBACK_MAX_BODY_BYTES": "65536"})
	f.Cleanup(func() { _ = fn.Stop(context.Background()) })

	f.Fuzz(func(t *testing.T, method, contentType, ceSpecversion, auth string, body []byte) {
		if !validMethod(method) {
			return // net/http refuses such a request line before any handler sees it
		}
		r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		r.Method = method
		setHeader(r.Header, "Content-Type", contentType)
		setHeader(r.Header, "Ce-Specversion", ceSpecversion)
		setHeader(r.Header, "Authorization", auth)
		if ceSpecversion != "" {
			for _, h := range []string{"Ce-Id", "Ce-Source", "Ce-Type"} {
				r.Header.Set(h, "x")
			}
		}
		in, err := fn.state.Load().decode(r)
		if err != nil {
			if status := outcome.HTTPStatus(err, nil); status < 400 || status >= 500 {
				t.Fatalf("decode() = %v, answered %d; want a 4xx", err, status)
			}
			return
		}
		if method != http.MethodPost {
			t.Fatalf("decode() accepted method %q", method)
		}
		scheme, token, _ := strings.Cut(auth, " ")
		if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) != testToken {
			t.Fatalf("decode() accepted Authorization %q", auth)
		}
		if in.msg == nil || in.msg.Version != alert.SupportedVersion || len(in.msg.Alerts) == 0 {
			t.Fatalf("decode() accepted %+v", in.msg)
		}
	})
}

func setHeader(h http.Header, name, value string) {
	if value != "" {
		h[name] = []string{value}
	}
}

// validMethod is net/http's own check of a request method (a token).
func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range m {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune(`()<>@,;:\"/[]?={}`, c) {
			return false
		}
	}
	return true
}

// handleFixture is what the fake cluster holds for FuzzHandle: broken workloads of every
// kind in the function's own namespace, the same Deployment in "payments" (allowed only
// by the second setting) and in "kube-system" (never allowed), and an orphan ReplicaSet.
func handleFixture() (objs []runtime.Object, alerts []alert.Alert) {
	for _, ns := range []string{ownNamespace, "payments", "kube-system"} {
		d, rss := fixture.Deployment(ns, "checkout-api", "shop/checkout:v1", "shop/checkout:v2")
		objs = append(append(objs, fixture.Objects(rss...)...), d, fixture.Pod(rss[1], "x7k2p"))
		alerts = append(alerts,
			firing("namespace", ns, "pod", rss[1].Name+"-x7k2p"),
			firing("namespace", ns, "deployment", "checkout-api"),
			firing("namespace", ns, "replicaset", rss[1].Name),
		)
		if ns == ownNamespace {
			orphan := rss[0].DeepCopy()
			orphan.Name, orphan.OwnerReferences = "orphan-6d5f8b7c9", nil
			objs = append(objs, orphan)
			alerts = append(alerts, firing("replicaset", orphan.Name), firing("pod", rss[1].Name+"-gone1"))
		}
	}
	sts, crs := fixture.StatefulSet(ownNamespace, "orders-db", "db:v1", "db:v2")
	ds, dcrs := fixture.DaemonSet(ownNamespace, "log-agent", "agent:v1", "agent:v2")
	objs = append(append(append(objs, fixture.Objects(crs...)...), fixture.Objects(dcrs...)...), sts, ds,
		fixture.ControlledPod(sts, "StatefulSet", "orders-db-0", crs[1].Name),
		fixture.ControlledPod(ds, "DaemonSet", "log-agent-x7k2p", fixture.Hash("agent:v2")))
	alerts = append(alerts, firing("pod", "orders-db-0"), firing("daemonset", "log-agent"), firing("statefulset", "orders-db"))

	// Bait: objects that point at real workloads without belonging to them. A pod controlled
	// by another API group's StatefulSet of the same name (OpenKruise's), a pod whose owner
	// reference has the right group and name but another UID, and a ReplicaSet controlled by
	// a CRD named Deployment. None of them may lead to a patch of the apps/v1 workload.
	vsts, vcrs := fixture.StatefulSet(ownNamespace, "victim-sts", "vs:v1", "vs:v2")
	kruisePod := fixture.ControlledPod(vsts, "StatefulSet", "victim-sts-0", vcrs[1].Name)
	kruisePod.OwnerReferences[0].APIVersion, kruisePod.OwnerReferences[0].UID = "apps.kruise.io/v1beta1", "uid-kruise-victim-sts"
	otherUIDPod := fixture.ControlledPod(vsts, "StatefulSet", "victim-sts-1", vcrs[1].Name)
	otherUIDPod.OwnerReferences[0].UID = "uid-an-earlier-victim-sts"
	vd, vrss := fixture.Deployment(ownNamespace, "victim-deploy", "vd:v1", "vd:v2")
	crdRS := vrss[1].DeepCopy()
	crdRS.Name, crdRS.UID = "victim-deploy-7c9d5b6f8", "uid-crd-rs"
	crdRS.OwnerReferences[0].APIVersion, crdRS.OwnerReferences[0].UID = "example.com/v1", "uid-crd-victim-deploy"
	crdPod := fixture.Pod(crdRS, "q4x8z")
	objs = append(append(append(objs, fixture.Objects(vcrs...)...), fixture.Objects(vrss...)...),
		vsts, vd, kruisePod, otherUIDPod, crdRS, crdPod)
	alerts = append(alerts, firing("pod", kruisePod.Name), firing("pod", otherUIDPod.Name),
		firing("replicaset", crdRS.Name), firing("pod", crdPod.Name))

	// Planted history: a ReplicaSet filling a free revision number after the current rollout,
	// and a ControllerRevision whose data also scales its StatefulSet to zero. Neither
	// workload may ever be written (they are not patchable).
	pd, prss := fixture.Deployment(ownNamespace, "planted-web", "pw:v1", "evil/miner:v2", "pw:v3")
	prss[0].CreationTimestamp = metav1.NewTime(fixture.Created.Add(-2 * time.Hour))
	prss[2].CreationTimestamp = metav1.NewTime(fixture.Created.Add(-time.Hour))
	psts, pcrs := fixture.StatefulSet(ownNamespace, "planted-db", "pdb:v1", "pdb:v2")
	pcrs[0].Data.Raw = []byte(`{"spec":{"replicas":0,"template":{"metadata":{"labels":{"app":"planted-db"}},"spec":{"containers":[{"name":"app","image":"evil/miner:v1"}]},"$patch":"replace"}}}`)
	objs = append(append(append(objs, fixture.Objects(prss...)...), fixture.Objects(pcrs...)...), pd, psts,
		fixture.Pod(prss[2], "k8m2w"))
	alerts = append(alerts, firing("deployment", "planted-web"), firing("pod", prss[2].Name+"-k8m2w"),
		firing("statefulset", "planted-db"))
	return objs, alerts
}

// victims are the workloads the bait points at, and the label values that name each of
// them legitimately: only a notification carrying one of those may patch it.
var victims = map[string]func(labels map[string]string) bool{
	"statefulsets/victim-sts": func(l map[string]string) bool { return l["statefulset"] == "victim-sts" },
	"deployments/victim-deploy": func(l map[string]string) bool {
		_, rss := fixture.Deployment(ownNamespace, "victim-deploy", "vd:v1", "vd:v2")
		return l["deployment"] == "victim-deploy" || l["replicaset"] == rss[0].Name || l["replicaset"] == rss[1].Name
	},
}

// namedLegitimately reports whether a firing alert of body names the victim key.
func namedLegitimately(body []byte, key string) bool {
	m, err := alert.Decode(body)
	if err != nil {
		return false
	}
	for _, a := range m.Alerts {
		if a.Firing() && victims[key](a.Labels) {
			return true
		}
	}
	return false
}

// handleSettings are the settings FuzzHandle picks from: namespaces and what they allow,
// and API failures (a final one, a retryable one) so the 422 and 503 answers are reached.
var handleSettings = []struct {
	namespaces string
	allowed    []string
	faults     func(*fake.Clientset)
}{
	{"", []string{ownNamespace}, nil},
	{ownNamespace + ",payments", []string{ownNamespace, "payments"}, nil},
	{"", []string{ownNamespace}, func(c *fake.Clientset) {
		c.PrependReactor("patch", "daemonsets", func(a k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "daemonsets"}, "log-agent", errors.New("not allowed"))
		})
		c.PrependReactor("get", "statefulsets", func(a k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewServiceUnavailable("etcd is down")
		})
	}},
}

// patchable is every object the fuzzed handler may write: the fixture's workloads, in
// allowed namespaces only.
var patchable = map[string]bool{
	"deployments/checkout-api": true, "statefulsets/orders-db": true, "daemonsets/log-agent": true,
	"statefulsets/victim-sts": true, "deployments/victim-deploy": true,
}

// FuzzHandle: whatever the notification, a request the handler refuses (a 4xx other than
// 422) makes no API call at all; 422 and 503 each carry the failure that earns them; it never
// calls the API outside the allowed namespaces, patches only the fixture's workloads there,
// and never one that only bait (an owner of another group or UID) points at.
func FuzzHandle(f *testing.F) {
	_, alerts := handleFixture()
	for i, a := range alerts {
		f.Add(uint8(i), notification(a))
	}
	f.Add(uint8(1), notification(alerts...))
	// Under the faults: one undo lands, one is forbidden (final), one cannot read (retryable).
	f.Add(uint8(2), notification(firing("deployment", "checkout-api"), firing("daemonset", "log-agent")))
	f.Add(uint8(2), notification(firing("deployment", "checkout-api"), firing("statefulset", "orders-db")))
	f.Add(uint8(0), []byte(`{"version":"4","alerts":[{"status":"resolved"}]}`))
	f.Add(uint8(0), []byte(`{"version":"4","alerts":[{"status":"firing","startsAt":"2026-11-26T01:00:00Z","labels":{"severity":"rollback","namespace":"kube-system","deployment":"coredns"}}]}`))
	captures, _ := filepath.Glob("testdata/alertmanager-*.json")
	for _, name := range captures {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(0), b)
	}

	f.Fuzz(checkHandle)
}

// FuzzHandleAlert is FuzzHandle with the alert's labels as the fuzzed values, so the search
// spends its time on what the labels name (kinds, names, namespaces) rather than on JSON
// syntax.
func FuzzHandleAlert(f *testing.F) {
	_, alerts := handleFixture()
	for i, a := range alerts {
		l := a.Labels
		f.Add(uint8(i), l["namespace"], l["pod"], l["replicaset"], l["deployment"], l["statefulset"], l["daemonset"], "", "")
	}
	f.Add(uint8(0), "", "checkout-api-6b38f6dcb-x7k2p", "", "checkout-api", "", "", "job", "x")
	f.Add(uint8(1), "payments", "", "", "", "orders-db", "log-agent", "", "")
	f.Fuzz(func(t *testing.T, setting uint8, namespace, pod, replicaset, deployment, statefulset, daemonset, key, value string) {
		labels := map[string]string{"alertname": "KubePodUnschedulable", "severity": "rollback"}
		for k, v := range map[string]string{"namespace": namespace, "pod": pod, "replicaset": replicaset,
			"deployment": deployment, "statefulset": statefulset, "daemonset": daemonset, key: value} {
			if k != "" && v != "" {
				labels[k] = v
			}
		}
		a := alert.Alert{Status: "firing", Labels: labels, StartsAt: time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)}
		checkHandle(t, setting, notification(a))
	})
}

// checkHandle posts body to a function started on the fuzz fixture with setting, and
// checks every invariant of FuzzHandle.
func checkHandle(t *testing.T, setting uint8, body []byte) {
	s := handleSettings[int(setting)%len(handleSettings)]
	objs, _ := handleFixture()
	client := fixture.Clientset(objs...)
	if s.faults != nil {
		s.faults(client)
	}
	fn := newFunction(t, client, map[string]string{
		"ROLLBACK_NAMESPACES":  s.namespaces,
		"ROLLBACK_API_TIMEOUT": "1s",
		"ROLLBACK_MAX_TARGETS": "3",
	})
	rec := httptest.NewRecorder()
	// A notification that hangs the handler is a finding too: the fuzzing engine has no
	// timeout of its own, so give up (and keep the input) well past the 20 s budget.
	handled := make(chan struct{})
	go func() {
		defer close(handled)
		fn.Handle(rec, post(body))
		// Stop flushes the asynchronous Event recorder, so its writes are checked too.
		stop, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = fn.Stop(stop)
	}()
	select {
	case <-handled:
	case <-time.After(30 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("Handle() and Stop() still running after 30s; goroutines:\n%s", buf[:goruntime.Stack(buf, true)])
	}

	status := rec.Code
	// Refused before any work (bad request, credentials, method, size, type): Alertmanager
	// drops these for good, and nothing may have touched the cluster, not even a read.
	refused := status >= 400 && status < 500 && status != http.StatusUnprocessableEntity
	var resp outcome.Response
	if !refused {
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatalf("Handle() = %d with a body that is not a report: %v: %s", status, err, rec.Body)
		}
	}
	// 422 and 503 are answers about work done: each must carry the failure that earns it
	// (final for 422, retryable for 503), whatever else in the notification was undone.
	final, retryable := 0, 0
	for _, r := range resp.Results {
		if r.Action == outcome.Failed && r.Retryable {
			retryable++
		} else if r.Action == outcome.Failed {
			final++
		}
	}
	switch {
	case status == http.StatusServiceUnavailable && retryable == 0,
		status == http.StatusUnprocessableEntity && (final == 0 || retryable > 0),
		status == http.StatusOK && final+retryable > 0,
		status >= 500 && status != http.StatusServiceUnavailable:
		t.Fatalf("Handle() = %d with %d final and %d retryable failures: %s", status, final, retryable, rec.Body)
	}
	for _, a := range client.Actions() {
		ns, verb, res := a.GetNamespace(), a.GetVerb(), a.GetResource().Resource
		call := fmt.Sprintf("%s %s in %q", verb, res, ns)
		if !contains(s.allowed, ns) {
			t.Errorf("%s: outside the allowed namespaces %v (answer %d %s)", call, s.allowed, status, rec.Body)
		}
		if refused {
			t.Errorf("%s, yet the request was refused with %d: %s", call, status, rec.Body)
		}
		if verb == "get" || verb == "list" || verb == "watch" {
			continue
		}
		if res == "events" {
			continue
		}
		name := ""
		if p, ok := a.(interface{ GetName() string }); ok {
			name = p.GetName()
		}
		if verb != "patch" || !patchable[res+"/"+name] {
			t.Errorf("%s %q: not a patch of a fixture workload", call, name)
		}
		if p, ok := a.(k8stesting.PatchAction); ok && strings.Contains(string(p.GetPatch()), "evil/") {
			t.Errorf("%s %q: restores a planted revision: %s", call, name, p.GetPatch())
		}
		if _, bait := victims[res+"/"+name]; bait && !namedLegitimately(body, res+"/"+name) {
			t.Errorf("%s %q: reached through an object that does not belong to it (answer %d %s)", call, name, status, rec.Body)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
