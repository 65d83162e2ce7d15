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
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sre-kit/alert-rollback/internal/alert"
	"github.com/sre-kit/alert-rollback/internal/budget"
	"github.com/sre-kit/alert-rollback/internal/fixture"
	"github.com/sre-kit/alert-rollback/internal/gitops"
	"github.com/sre-kit/alert-rollback/internal/kinds"
	"github.com/sre-kit/alert-rollback/internal/outcome"
	"github.com/sre-kit/alert-rollback/internal/pipeline"
	"github.com/sre-kit/alert-rollback/internal/undo"
)

// The fuzz targets below run their seeds (and testdata/fuzz) under `make test` and plain
// go test; `make fuzz` searches further (FUZZTIME each).

// FuzzDecodeHTTP: whatever the request, decode either refuses it with a 4xx, answered within
// maxAnswer bytes of valid UTF-8 whatever the refusal quotes, or accepts a POST with the
// right token and a notification alert.Decode accepts.
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
		// Refusals that quote what the caller sent.
		{"POST", strings.Repeat("\xff", 8<<10), "", "Bearer " + testToken, valid},
		{"POST", "application/json", "", "Bearer " + testToken, `{"version":"` + strings.Repeat("\xff", 8<<10) + `"}`},
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
			rec := httptest.NewRecorder()
			fn.state.Load().fail(rec, err)
			checkAnswer(t, rec, maxAnswer)
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
// by the second setting) and in "kube-system" (never allowed), an orphan ReplicaSet, and
// bait: planted history, and a Deployment another controller owns.
func handleFixture() (objs []runtime.Object, alerts []alert.Alert) {
	for _, ns := range []string{ownNamespace, "payments", "kube-system"} {
		d, rss := fixture.Deployment(ns, "checkout-api", "shop/checkout:v1", "shop/checkout:v2")
		if ns == "payments" {
			// Applied by the Kustomization payments/apps, whose inventory lists it.
			d.Labels = map[string]string{gitops.KustomizeName: "apps", gitops.KustomizeNS: "payments"}
		}
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

	// Planted after this function's undo from v2 back to v1: v1's ReplicaSet is revision 3
	// and notes it was 1, v2 is marked bad, and someone fills 1 with their image.
	ud, urss := fixture.Deployment(ownNamespace, "undone-web", "uw:v2", "uw:v1")
	urss[1].CreationTimestamp = metav1.NewTime(fixture.Created.Add(-20 * time.Minute))
	urss[1].Annotations["deployment.kubernetes.io/revision"] = "3"
	urss[1].Annotations["deployment.kubernetes.io/revision-history"] = "1"
	urss[0].CreationTimestamp = metav1.NewTime(fixture.Created.Add(-10 * time.Minute))
	urss[0].Annotations["deployment.kubernetes.io/revision"] = "2"
	ud.Annotations["deployment.kubernetes.io/revision"] = "3"
	ud.Annotations[undo.StateAnnotation] = `{"bad":["` + fixture.Hash("uw:v2") + `"]}`
	_, evil := fixture.Deployment(ownNamespace, "undone-web", "evil/miner:v1")
	evil[0].UID = "uid-planted-undone-web"
	objs = append(append(objs, fixture.Objects(append(urss, evil...)...)...), ud, fixture.Pod(urss[1], "u7w2x"))
	alerts = append(alerts, firing("deployment", "undone-web"), firing("pod", urss[1].Name+"-u7w2x"))
	// Forged GitOps markers (issue #17): a tenant who may edit only its own Deployments names
	// the platform's owners in other namespaces (see gitopsFixture). tenant-api's instance
	// label names an Application in argocd (never an allowed namespace: read, never written),
	// which does list it.
	tw, twrss := fixture.Deployment(ownNamespace, "tenant-web", "tw:v1", "tw:v2")
	tw.Labels = map[string]string{gitops.KustomizeName: "platform", gitops.KustomizeNS: "flux-system",
		gitops.HelmName: "billing", gitops.HelmNS: "payments"}
	tw.Annotations[gitops.ArgoCDTrackingID] = "payments_billing:apps/Deployment:" + ownNamespace + "/tenant-web"
	ta, tarss := fixture.Deployment(ownNamespace, "tenant-api", "ta:v1", "ta:v2")
	ta.Labels = map[string]string{gitops.InstanceLabel: "platform"}
	objs = append(append(append(objs, fixture.Objects(twrss...)...), fixture.Objects(tarss...)...), tw, ta,
		fixture.Pod(twrss[1], "f0r9d"))
	alerts = append(alerts, firing("deployment", "tenant-web"), firing("pod", twrss[1].Name+"-f0r9d"),
		firing("deployment", "tenant-api"))
	return controllerOwnedFixture(objs, alerts)
}

// gitopsFixture is what the fake cluster holds of Argo CD and Flux for FuzzHandle: the
// platform's owners that tenant-web's forged markers name (none lists tenant-web; payments
// is allowed by some settings, flux-system never), the Application argocd/platform that
// lists tenant-api (argocd is read, never allowed), and the one legitimate owner: the
// Kustomization payments/apps, listing payments/checkout-api.
func gitopsFixture() []runtime.Object {
	owner := func(gvr schema.GroupVersionResource, kind, ns, name string, spec, status map[string]any) runtime.Object {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": gvr.GroupVersion().String(), "kind": kind,
			"metadata": map[string]any{"namespace": ns, "name": name, "uid": "uid-" + ns + "-" + name, "resourceVersion": "3"},
			"spec":     spec, "status": status,
		}}
	}
	inventory := func(id string) map[string]any {
		return map[string]any{"inventory": map[string]any{"entries": []any{map[string]any{"id": id, "v": "v1"}}}}
	}
	resources := func(ns, name string) map[string]any {
		return map[string]any{"resources": []any{map[string]any{"group": "apps", "version": "v1", "kind": "Deployment", "namespace": ns, "name": name}}}
	}
	selfHeal := map[string]any{"syncPolicy": map[string]any{"automated": map[string]any{"selfHeal": true}}}
	return []runtime.Object{
		owner(gitops.KustomizationResource, gitops.Kustomization, "flux-system", "platform", map[string]any{"interval": "10m"}, inventory("flux-system_source-controller_apps_Deployment")),
		owner(gitops.HelmReleaseResource, gitops.HelmRelease, "payments", "billing", map[string]any{"interval": "5m"}, nil),
		owner(gitops.ApplicationResource, gitops.Application, "payments", "billing", selfHeal, resources("payments", "billing")),
		owner(gitops.ApplicationResource, gitops.Application, "argocd", "platform", selfHeal, resources(ownNamespace, "tenant-api")),
		owner(gitops.KustomizationResource, gitops.Kustomization, "payments", "apps", map[string]any{"interval": "10m"}, inventory("payments_checkout-api_apps_Deployment")),
	}
}

// suspendable is every GitOps owner the fuzzed handler may write: the one whose records
// list a workload of the fixture, in a namespace some setting allows.
var suspendable = map[string]bool{"kustomizations payments/apps": true}

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
// API failures (a final one, a retryable one) so the 422 and 503 answers are reached, and
// ROLLBACK_GITOPS (refuse unless set) with the budget, whose Lease lives in the function's
// own namespace even when that one is not allowed.
var handleSettings = []struct {
	namespaces string
	allowed    []string
	faults     func(*fake.Clientset)
	env        map[string]string
}{
	{"", []string{ownNamespace}, nil, nil},
	{ownNamespace + ",payments", []string{ownNamespace, "payments"}, nil, nil},
	{ownNamespace + ",payments", []string{ownNamespace, "payments"}, nil, map[string]string{"ROLLBACK_GITOPS": "suspend", "ROLLBACK_BUDGET": "5/1h"}},
	{"payments", []string{"payments"}, nil, map[string]string{"ROLLBACK_GITOPS": "suspend", "ROLLBACK_BUDGET": "5/1h"}},
	{"", []string{ownNamespace}, func(c *fake.Clientset) {
		c.PrependReactor("patch", "daemonsets", func(a k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "daemonsets"}, "log-agent", errors.New("not allowed"))
		})
		c.PrependReactor("get", "statefulsets", func(a k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewServiceUnavailable("etcd is down")
		})
	}, nil},
}

// patchable is every object the fuzzed handler may write: the fixture's workloads, in
// allowed namespaces only.
var patchable = map[string]bool{
	"deployments/checkout-api": true, "statefulsets/orders-db": true, "daemonsets/log-agent": true,
	"statefulsets/victim-sts": true, "deployments/victim-deploy": true,
	"deployments/tenant-web": true, "deployments/tenant-api": true,
}

// FuzzHandle: whatever the notification, a request the handler refuses (a 4xx other than
// 422) makes no API call at all; 422 and 503 each carry the failure that earns them; the
// answer stays within maxAnswer bytes a result (valid UTF-8, no string over clip.Max); it
// never calls the API outside the allowed namespaces (the budget's Lease in its own namespace
// aside), Events and Argo CD's and Flux's objects included, patches only the fixture's
// workloads there, suspends only an owner whose records list the workload, and never
// patches one that only bait (an owner of another group or UID, a forged GitOps marker)
// points at.
func FuzzHandle(f *testing.F) {
	_, alerts := handleFixture()
	for i, a := range alerts {
		f.Add(uint8(i), notification(a))
	}
	f.Add(uint8(1), notification(alerts...))
	// Under the faults: one undo lands, one is forbidden (final), one cannot read (retryable).
	f.Add(uint8(4), notification(firing("deployment", "checkout-api"), firing("daemonset", "log-agent")))
	f.Add(uint8(4), notification(firing("deployment", "checkout-api"), firing("statefulset", "orders-db")))
	// GitOps in suspend mode: the forged markers, and the legitimate owner in payments.
	for _, setting := range []uint8{2, 3} {
		f.Add(setting, notification(firing("deployment", "tenant-web")))
		f.Add(setting, notification(firing("deployment", "tenant-api")))
		f.Add(setting, notification(firing("namespace", "payments", "deployment", "checkout-api")))
	}
	f.Add(uint8(0), []byte(`{"version":"4","alerts":[{"status":"resolved"}]}`))
	f.Add(uint8(0), []byte(`{"version":"4","alerts":[{"status":"`+strings.Repeat("\xff", 8<<10)+`"}]}`))
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
	f.Add(uint8(2), "", "", "", "tenant-web", "", "", "", "")
	f.Add(uint8(2), "payments", "", "", "checkout-api", "", "", "", "")
	f.Add(uint8(3), "", "", "", "tenant-api", "", "", "", "")
	f.Fuzz(func(t *testing.T, setting uint8, namespace, pod, replicaset, deployment, statefulset, daemonset, key, value string) {
		labels := map[string]string{"alertname": "KubePodUnschedulable", "severity": "rollback"}
		for k, v := range map[string]string{"namespace": namespace, "pod": pod, "replicaset": replicaset,
			"deployment": deployment, "statefulset": statefulset, "daemonset": daemonset, key: value} {
			if k != "" && v != "" {
				labels[k] = v
			}
		}
		a := alert.Alert{Status: "firing", Labels: labels, StartsAt: fixture.AlertStart}
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
	dyn := newDynamic(gitopsFixture()...)
	env := map[string]string{
		"ROLLBACK_NAMESPACES":  s.namespaces,
		"ROLLBACK_API_TIMEOUT": "1s",
		"ROLLBACK_MAX_TARGETS": "3",
	}
	for k, v := range s.env {
		env[k] = v
	}
	fn := newFunctionDynamic(t, client, dyn, env)
	events := &eventNamespaces{Events: fn.state.Load().pipeline.Events}
	fn.state.Load().pipeline.Events = events
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
	checkAnswer(t, rec, maxAnswer*max(1, len(resp.Results)))
	for _, ns := range events.seen() {
		if !slices.Contains(s.allowed, ns) {
			t.Errorf("an Event in %q: outside the allowed namespaces %v (answer %d %s)", ns, s.allowed, status, rec.Body)
		}
	}
	for _, a := range dyn.Actions() {
		ns, verb, res, name := a.GetNamespace(), a.GetVerb(), a.GetResource().Resource, nameOf(a)
		call := fmt.Sprintf("%s %s %q in %q", verb, res, name, ns)
		// Not even a read outside, but for Applications in Argo CD's own namespace (an
		// operator's setting, never a tenant's), read to learn whether one lists the
		// workload: what exists elsewhere must not change the answer.
		argo := res == gitops.ApplicationResource.Resource && ns == gitops.DefaultArgoCDNamespace && verb == "get"
		if !slices.Contains(s.allowed, ns) && !argo {
			t.Errorf("%s: outside the allowed namespaces %v (answer %d %s)", call, s.allowed, status, rec.Body)
		}
		if refused {
			t.Errorf("%s, yet the request was refused with %d: %s", call, status, rec.Body)
		}
		if verb != "get" && (verb != "patch" || !suspendable[res+" "+ns+"/"+name]) {
			t.Errorf("%s: not a suspension of an owner that lists the workload (answer %d %s)", call, status, rec.Body)
		}
	}
	for _, a := range client.Actions() {
		ns, verb, res, name := a.GetNamespace(), a.GetVerb(), a.GetResource().Resource, nameOf(a)
		call := fmt.Sprintf("%s %s in %q", verb, res, ns)
		// The one object outside ROLLBACK_NAMESPACES the function uses: the budget's Lease,
		// in its own namespace, read and written by name.
		if res == "leases" && ns == ownNamespace && (name == budget.LeaseName || verb == "create") && !refused {
			if l, ok := a.(k8stesting.CreateAction); ok && l.GetObject().(metav1.Object).GetName() != budget.LeaseName {
				t.Errorf("%s: a Lease other than the budget's", call)
			}
			continue
		}
		if !slices.Contains(s.allowed, ns) {
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

// eventNamespaces records the namespace of every Event the function asks for, when it asks,
// and passes it on: client-go writes Events asynchronously, and the broadcaster's Shutdown
// does not wait for the last writes, so the fake clientset's actions may miss them.
type eventNamespaces struct {
	pipeline.Events
	mu         sync.Mutex
	namespaces []string
}

func (e *eventNamespaces) Record(w kinds.Ref, uid types.UID, r outcome.Result) {
	if uid != "" { // without a UID nothing is sent (report.Events.Record)
		e.add(r.Namespace)
	}
	e.Events.Record(w, uid, r)
}

func (e *eventNamespaces) RecordRelated(ref corev1.ObjectReference, r outcome.Result) {
	e.add(ref.Namespace)
	e.Events.RecordRelated(ref, r)
}

func (e *eventNamespaces) add(ns string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.namespaces = append(e.namespaces, ns)
}

func (e *eventNamespaces) seen() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.namespaces)
}

// nameOf is the name of the object an action is about, "" for a list or a create.
func nameOf(a k8stesting.Action) string {
	if p, ok := a.(interface{ GetName() string }); ok {
		return p.GetName()
	}
	return ""
}
