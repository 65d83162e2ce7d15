package function

import (
	automemlimit "github.com/KimMachineGun/automemlimit/memlimit"

	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/sre-kit/alert-rollback/internal/alert"
	"github.com/sre-kit/alert-rollback/internal/fixture"
	"github.com/sre-kit/alert-rollback/internal/gitops"
	"github.com/sre-kit/alert-rollback/internal/kube/clientset"
	"github.com/sre-kit/alert-rollback/internal/memlimit"
	"github.com/sre-kit/alert-rollback/internal/outcome"
	"github.com/sre-kit/alert-rollback/internal/undo"
)

// The func instanced HTTP contract, checked at compile time: func's scaffolding looks for
// exactly these methods on what New returns.
var _ interface {
	Handle(http.ResponseWriter, *http.Request)
	Start(context.Context, map[string]string) error
	Stop(context.Context) error
	Ready(context.Context) (bool, error)
	Alive(context.Context) (bool, error)
} = New()

const testToken = "test-token-0123456789"

// ownNamespace is the function's own namespace in these tests.
const ownNamespace = "shop"

// start starts a Function on the fake client with env on top of a valid base, and stops
// it when the test ends.
func start(t testing.TB, client kubernetes.Interface, env map[string]string) *Function {
	t.Helper()
	f := newFunction(t, client, env)
	t.Cleanup(func() { _ = f.Stop(context.Background()) })
	return f
}

func newFunction(t testing.TB, client kubernetes.Interface, env map[string]string) *Function {
	t.Helper()
	return newFunctionDynamic(t, client, newDynamic(), env)
}

// newFunctionDynamic is newFunction with dyn as the client of Argo CD's and Flux's objects.
func newFunctionDynamic(t testing.TB, client kubernetes.Interface, dyn dynamic.Interface, env map[string]string) *Function {
	t.Helper()
	// The budget is off unless a case sets it: the action lists of TestHandle pin the undo
	// path's own round trips; the budget's (a Lease read and write per undo) and the GitOps
	// guard's are pinned in gate_test.go, with the defaults.
	cfg := map[string]string{"ROLLBACK_AUTH_TOKEN": testToken, "ROLLBACK_BUDGET": "off"}
	for k, v := range env {
		cfg[k] = v
	}
	f := New()
	f.newClient = func(config) (clients, error) {
		return clients{kube: clientset.WrapDynamic(client, dyn), dynamic: dyn, namespace: ownNamespace}, nil
	}
	f.newLogger = zap.NewNop().Sugar
	f.memoryLimit = noMemoryLimit
	if err := f.Start(context.Background(), cfg); err != nil {
		t.Fatalf("Start() = %v", err)
	}
	return f
}

// firing is a firing alert that matches the default ROLLBACK_MATCH, with labels given as
// key, value pairs.
func firing(kv ...string) alert.Alert {
	a := firingNoNamespace(kv...)
	if a.Labels["namespace"] == "" {
		a.Labels["namespace"] = ownNamespace
		a.Fingerprint = fingerprint(a.Labels)
	}
	return a
}

// firingNoNamespace is firing without the namespace label firing adds.
func firingNoNamespace(kv ...string) alert.Alert {
	a := alert.Alert{
		Status:   "firing",
		Labels:   map[string]string{"alertname": "KubePodUnschedulable", "severity": "rollback"},
		StartsAt: fixture.AlertStart,
	}
	for i := 0; i+1 < len(kv); i += 2 {
		a.Labels[kv[i]] = kv[i+1]
	}
	a.Fingerprint = fingerprint(a.Labels)
	return a
}

// fingerprint stands in for Alertmanager's: 16 hex digits, different for any two label sets.
func fingerprint(labels map[string]string) string {
	keys := slices.Sorted(maps.Keys(labels))
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s\x00%s\x00", k, labels[k])
	}
	return fmt.Sprintf("%x", h.Sum(nil))[:16]
}

func notification(alerts ...alert.Alert) []byte {
	b, err := json.Marshal(alert.Message{Version: "4", Status: "firing", Receiver: "alert-rollback", Alerts: alerts})
	if err != nil {
		panic(err)
	}
	return b
}

func post(body []byte) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Authorization", "Bearer "+testToken)
	return r
}

// brokenDeployment is the seed's scenario: checkout-api (a hyphenated name) went from v1 to
// v2, and v2 cannot be scheduled. It returns the objects and the name of a v2 pod.
func brokenDeployment(ns string) ([]runtime.Object, string) {
	d, rss := fixture.Deployment(ns, "checkout-api", "shop/checkout:v1", "shop/checkout:v2")
	pod := fixture.Pod(rss[1], "x7k2p")
	objs := append(fixture.Objects(rss...), d, pod)
	return objs, pod.Name
}

type want struct {
	Action, Reason, Kind, Name string
	From, To                   int64
}

// The API actions of the common paths, as the fake clientset records them ("verb resource"),
// Events excluded: they are sent asynchronously. They pin the round trips of each path. A
// pod's ReplicaSet is confirmed from the Deployment's ReplicaSet list, which the undo reads
// anyway: the pod path costs one read more than the workload's own (the pod: see
// kinds.PodNamer for why it is not skipped; it is read at the same time as the Deployment its
// name points at, so the round trips are the workload's), the ReplicaSet path none. Actions
// are compared as multisets (sorted), since those two reads go out at once.
var (
	undoDeployment = []string{"get deployments", "list replicasets", "patch deployments"}
	readDeployment = []string{"get deployments", "list replicasets"}
	viaPod         = []string{"get pods"}
	// A ReplicaSet name the Deployment's list does not confirm is read itself, and its
	// controller reference decides.
	guessMissed = []string{"get deployments", "get replicasets"}
	none        = []string{}
)

func concat(parts ...[]string) []string {
	out := []string{}
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestHandle(t *testing.T) {
	objs, badPod := brokenDeployment(ownNamespace)
	otherObjs, otherPod := brokenDeployment("payments")
	_, rss := fixture.Deployment(ownNamespace, "checkout-api", "shop/checkout:v1", "shop/checkout:v2")
	gonePod := rss[1].Name + "-zz9q4" // never created: the pod is gone
	orphanRS := rss[0].DeepCopy()
	orphanRS.Name, orphanRS.OwnerReferences = "orphan-6d5f8b7c9", nil
	unavailable := func(c *fake.Clientset) {
		c.PrependReactor("get", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewServiceUnavailable("etcd is down")
		})
	}
	// A CRD of another group may call its kind StatefulSet or Deployment: following it to
	// the apps/v1 object of the same name would act on the wrong object.
	foreignSTSPod := fixture.Pod(rss[1], "kr7q2")
	foreignSTSPod.Name = "checkout-api-0"
	foreignSTSPod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps.kruise.io/v1beta1", Kind: "StatefulSet", Name: "checkout-api", UID: "kruise-uid", Controller: ptr.To(true)}}
	foreignRS := rss[1].DeepCopy()
	foreignRS.Name = "checkout-api-crd-5f7d9"
	foreignRS.OwnerReferences = []metav1.OwnerReference{{APIVersion: "example.com/v1", Kind: "Deployment", Name: "checkout-api", UID: "crd-uid", Controller: ptr.To(true)}}
	// A Job named exactly like the current ReplicaSet names its pods exactly like that
	// ReplicaSet's pods: only the pod's controller reference tells them apart.
	jobPod := fixture.Pod(rss[1], "jb7k2")
	jobPod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: rss[1].Name, UID: "job-uid", Controller: ptr.To(true)}}
	// A Job named like one of the Deployment's ReplicaSets might have been, but is not.
	otherJobPod := jobPod.DeepCopy()
	otherJobPod.Name = "checkout-api-" + fixture.Hash("job") + "-jb7k2"
	// A ReplicaSet recreated under the same name is not the one the pod belonged to.
	stalePod := fixture.Pod(rss[1], "q8w2z")
	stalePod.OwnerReferences[0].UID = "an-older-replicaset"
	// History the controller did not make: a copy of the current template claiming a
	// newer revision, and an image of someone's choice claiming the previous one.
	d, _ := fixture.Deployment(ownNamespace, "checkout-api", "shop/checkout:v1", "shop/checkout:v2")
	newer := rss[1].DeepCopy()
	newer.Name, newer.UID = "checkout-api-"+fixture.Hash("copy"), "newer-uid"
	newer.Labels["pod-template-hash"], newer.Spec.Template.Labels["pod-template-hash"] = fixture.Hash("copy"), fixture.Hash("copy")
	newer.Annotations["deployment.kubernetes.io/revision"] = "3"
	planted := rss[0].DeepCopy()
	planted.Name, planted.UID = "checkout-api-"+fixture.Hash("evil"), "planted-uid"
	planted.Labels["pod-template-hash"], planted.Spec.Template.Labels["pod-template-hash"] = fixture.Hash("evil"), fixture.Hash("evil")
	planted.Spec.Template.Spec.Containers[0].Image = "evil/miner:latest"
	misnamed := rss[0].DeepCopy()
	misnamed.Name, misnamed.UID = "checkout-api-previous", "misnamed-uid"
	misnamed.Annotations["deployment.kubernetes.io/revision"] = "0"
	manyAlerts := make([]alert.Alert, 1000)
	for i := range manyAlerts {
		manyAlerts[i] = firing("pod", gonePod, "container", fmt.Sprint("c", i))
	}
	deadline := func(c *fake.Clientset) {
		c.PrependReactor("list", "replicasets", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, fmt.Errorf("list: %w", context.DeadlineExceeded)
		})
	}
	longName := strings.Repeat("A", 5000)

	tests := []struct {
		name        string
		objects     []runtime.Object
		env         map[string]string
		reactors    func(*fake.Clientset)
		request     func() *http.Request
		wantStatus  int
		wantResults []want
		wantIgnored int
		wantActions []string          // API actions, as a multiset (lookups run in parallel); nil: not checked
		wantImages  map[string]string // namespace/name -> image of the Deployment afterwards
		wantError   string            // in the body of a refused request
	}{
		{
			name:        "seed alert on a pod rolls its hyphenated Deployment back",
			objects:     objs,
			request:     func() *http.Request { return post(notification(firing("pod", badPod))) },
			wantStatus:  http.StatusOK,
			wantResults: []want{{"rolled-back", "rolled-back", "Deployment", "checkout-api", 2, 1}},
			// The pod's name and the Deployment's ReplicaSet list agree: the pod is not read.
			wantActions: undoDeployment,
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v1"},
		},
		{
			name:        "deployment label",
			objects:     objs,
			request:     func() *http.Request { return post(notification(firing("deployment", "checkout-api"))) },
			wantStatus:  http.StatusOK,
			wantResults: []want{{"rolled-back", "rolled-back", "Deployment", "checkout-api", 2, 1}},
			wantActions: undoDeployment,
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v1"},
		},
		{
			name:        "dry run changes nothing and says what it would do",
			objects:     objs,
			env:         map[string]string{"ROLLBACK_DRY_RUN": "true"},
			request:     func() *http.Request { return post(notification(firing("deployment", "checkout-api"))) },
			wantStatus:  http.StatusOK,
			wantResults: []want{{"rolled-back", "dry-run", "Deployment", "checkout-api", 2, 1}},
			wantActions: undoDeployment,
			// The fake clientset ignores dryRun; the real API server does not (e2e).
		},
		{
			name:        "replicaset label",
			objects:     objs,
			request:     func() *http.Request { return post(notification(firing("replicaset", rss[1].Name))) },
			wantStatus:  http.StatusOK,
			wantResults: []want{{"rolled-back", "rolled-back", "Deployment", "checkout-api", 2, 1}},
			wantActions: undoDeployment,
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v1"},
		},
		{
			name:        "pod gone resolves through its ReplicaSet",
			objects:     objs,
			request:     func() *http.Request { return post(notification(firing("pod", gonePod))) },
			wantStatus:  http.StatusOK,
			wantResults: []want{{"rolled-back", "rolled-back", "Deployment", "checkout-api", 2, 1}},
			wantActions: undoDeployment,
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v1"},
		},
		{
			name:    "more firing alerts than ROLLBACK_MAX_ALERTS: one row, refused before any API call",
			objects: objs,
			request: func() *http.Request {
				var alerts []alert.Alert
				for i := range 101 {
					alerts = append(alerts, firing("pod", fmt.Sprintf("job-%d-x7k2p", i)))
				}
				return post(notification(alerts...))
			},
			wantStatus:  http.StatusOK,
			wantResults: []want{{"refused", "too-many-alerts", "", "", 0, 0}},
			wantActions: none,
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v2"},
		},
		{
			name:        "a thousand alerts about one gone pod are looked up once",
			objects:     objs,
			env:         map[string]string{"ROLLBACK_MAX_ALERTS": "1000"},
			request:     func() *http.Request { return post(notification(manyAlerts...)) },
			wantStatus:  http.StatusOK,
			wantResults: []want{{"rolled-back", "rolled-back", "Deployment", "checkout-api", 2, 1}},
			wantActions: undoDeployment,
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v1"},
		},
		{
			name:        "a ReplicaSet not owned by a Deployment is refused",
			objects:     append(objs, orphanRS),
			request:     func() *http.Request { return post(notification(firing("replicaset", orphanRS.Name))) },
			wantStatus:  http.StatusOK,
			wantResults: []want{{"refused", "unsupported-owner", "", "", 0, 0}},
			wantActions: guessMissed,
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v2"},
		},
		{
			name:        "a pod of another group's StatefulSet is refused, not followed to apps/v1",
			objects:     append(objs, foreignSTSPod),
			request:     func() *http.Request { return post(notification(firing("pod", foreignSTSPod.Name))) },
			wantStatus:  http.StatusOK,
			wantResults: []want{{"refused", "unsupported-owner", "", "", 0, 0}},
			wantActions: []string{"get pods"},
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v2"},
		},
		{
			name:        "a ReplicaSet controlled by a CRD named Deployment is refused",
			objects:     append(objs, foreignRS),
			request:     func() *http.Request { return post(notification(firing("replicaset", foreignRS.Name))) },
			wantStatus:  http.StatusOK,
			wantResults: []want{{"refused", "unsupported-owner", "", "", 0, 0}},
			wantActions: guessMissed,
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v2"},
		},
		{
			name:        "seed alert on a pod with ROLLBACK_READ_PODS: the pod is read, and its Deployment at once",
			objects:     objs,
			env:         map[string]string{"ROLLBACK_READ_PODS": "true"},
			request:     func() *http.Request { return post(notification(firing("pod", badPod))) },
			wantStatus:  http.StatusOK,
			wantResults: []want{{"rolled-back", "rolled-back", "Deployment", "checkout-api", 2, 1}},
			wantActions: concat(viaPod, undoDeployment),
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v1"},
		},
		{
			name:        "with ROLLBACK_READ_PODS, a pod whose ReplicaSet was replaced under the same name is refused",
			objects:     append(objs, stalePod),
			env:         map[string]string{"ROLLBACK_READ_PODS": "true"},
			request:     func() *http.Request { return post(notification(firing("pod", stalePod.Name))) },
			wantStatus:  http.StatusOK,
			wantResults: []want{{"refused", "not-found", "", "", 0, 0}},
			// The list holds a ReplicaSet of that name, but not the pod's (another UID).
			wantActions: concat(viaPod, readDeployment, []string{"get replicasets"}),
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v2"},
		},
		{
			name:        "with ROLLBACK_READ_PODS, a Job's pod named exactly like a ReplicaSet's pod is refused",
			objects:     append(objs, jobPod),
			env:         map[string]string{"ROLLBACK_READ_PODS": "true"},
			request:     func() *http.Request { return post(notification(firing("pod", jobPod.Name))) },
			wantStatus:  http.StatusOK,
			wantResults: []want{{"refused", "unsupported-owner", "", "", 0, 0}},
			// The Deployment its name points at is read while the pod is, and not used.
			wantActions: concat(viaPod, readDeployment),
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v2"},
		},
		{
			name:        "a Job's pod whose name no ReplicaSet of that Deployment confirms is read and refused",
			objects:     append(objs, otherJobPod),
			request:     func() *http.Request { return post(notification(firing("pod", otherJobPod.Name))) },
			wantStatus:  http.StatusOK,
			wantResults: []want{{"refused", "unsupported-owner", "", "", 0, 0}},
			wantActions: concat(readDeployment, viaPod),
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v2"},
		},
		{
			name:        "a gone pod whose name leads to a Deployment without that ReplicaSet is refused",
			objects:     objs,
			request:     func() *http.Request { return post(notification(firing("pod", "checkout-api-7f8d9c6b5-zz9q4"))) },
			wantStatus:  http.StatusOK,
			wantResults: []want{{"refused", "not-found", "", "", 0, 0}},
			wantActions: concat(readDeployment, viaPod, []string{"get replicasets"}),
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v2"},
		},
		{
			name:        "a planted newer ReplicaSet is not history: the real previous revision is restored",
			objects:     append(objs, newer),
			request:     func() *http.Request { return post(notification(firing("deployment", "checkout-api"))) },
			wantStatus:  http.StatusOK,
			wantResults: []want{{"rolled-back", "rolled-back", "Deployment", "checkout-api", 2, 1}},
			// The planted entry is not history; had it come from a concurrent change
			// instead, the write's resourceVersion precondition would catch it.
			wantActions: concat(readDeployment, []string{"patch deployments"}),
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v1"},
		},
		{
			name:        "two ReplicaSets claiming one revision are refused",
			objects:     append(objs, planted),
			request:     func() *http.Request { return post(notification(firing("deployment", "checkout-api"))) },
			wantStatus:  http.StatusOK,
			wantResults: []want{{"refused", "foreign-history", "Deployment", "checkout-api", 0, 0}},
			wantActions: readDeployment,
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v2"},
		},
		{
			name:        "a ReplicaSet not named as the controller names them is refused",
			objects:     append(objs, misnamed),
			request:     func() *http.Request { return post(notification(firing("deployment", "checkout-api"))) },
			wantStatus:  http.StatusOK,
			wantResults: []want{{"refused", "foreign-history", "Deployment", "checkout-api", 0, 0}},
			wantActions: readDeployment,
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v2"},
		},
		{
			name:    "three alerts for one Deployment make one undo",
			objects: objs,
			request: func() *http.Request {
				return post(notification(firing("pod", badPod), firing("pod", gonePod), firing("deployment", "checkout-api")))
			},
			wantStatus:  http.StatusOK,
			wantResults: []want{{"rolled-back", "rolled-back", "Deployment", "checkout-api", 2, 1}},
			// The three lookups share one read of the Deployment, and the undo uses it.
			wantActions: undoDeployment,
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v1"},
		},
		{
			name:    "two namespaces",
			objects: append(objs, otherObjs...),
			env:     map[string]string{"ROLLBACK_NAMESPACES": "shop,payments"},
			request: func() *http.Request {
				return post(notification(firing("pod", badPod), firing("namespace", "payments", "pod", otherPod)))
			},
			wantStatus:  http.StatusOK,
			wantResults: []want{{"rolled-back", "rolled-back", "Deployment", "checkout-api", 2, 1}, {"rolled-back", "rolled-back", "Deployment", "checkout-api", 2, 1}},
			wantActions: concat(undoDeployment, undoDeployment),
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v1", "payments/checkout-api": "shop/checkout:v1"},
		},
		{
			name:    "more workloads than ROLLBACK_MAX_TARGETS: nothing changes",
			objects: append(objs, otherObjs...),
			env:     map[string]string{"ROLLBACK_NAMESPACES": "shop,payments", "ROLLBACK_MAX_TARGETS": "1"},
			request: func() *http.Request {
				return post(notification(firing("pod", badPod), firing("namespace", "payments", "pod", otherPod)))
			},
			wantStatus:  http.StatusOK,
			wantResults: []want{{"refused", "too-many-targets", "Deployment", "checkout-api", 0, 0}, {"refused", "too-many-targets", "Deployment", "checkout-api", 0, 0}},
			// Both workloads are read (in one round of lookups), neither is written.
			wantActions: concat(readDeployment, readDeployment),
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v2", "payments/checkout-api": "shop/checkout:v2"},
		},
		{
			name:    "a failed lookup that might pass the limit holds everything back for a retry",
			objects: append(objs, otherObjs...),
			env:     map[string]string{"ROLLBACK_NAMESPACES": "shop,payments", "ROLLBACK_MAX_TARGETS": "1"},
			reactors: func(c *fake.Clientset) {
				c.PrependReactor("list", "replicasets", func(a k8stesting.Action) (bool, runtime.Object, error) {
					if a.GetNamespace() == "payments" {
						return true, nil, apierrors.NewServiceUnavailable("apiserver overloaded")
					}
					return false, nil, nil
				})
			},
			request: func() *http.Request {
				return post(notification(firing("pod", badPod), firing("namespace", "payments", "pod", otherPod)))
			},
			wantStatus:  http.StatusServiceUnavailable,
			wantResults: []want{{"failed", "targets-unknown", "Deployment", "checkout-api", 0, 0}, {"failed", "api-unavailable", "", "", 0, 0}},
			// The failed read of payments' Deployment ends its lookup: the pod is not read instead.
			wantActions: concat(readDeployment, readDeployment),
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v2", "payments/checkout-api": "shop/checkout:v2"},
		},
		{
			name:        "a deadline that runs out mid-lookup is answered 503, not refused for good",
			objects:     objs,
			env:         map[string]string{"ROLLBACK_MAX_TARGETS": "1"},
			reactors:    deadline,
			request:     func() *http.Request { return post(notification(firing("pod", badPod), firing("pod", gonePod))) },
			wantStatus:  http.StatusServiceUnavailable,
			wantResults: []want{{"failed", "timeout", "", "", 0, 0}, {"failed", "timeout", "", "", 0, 0}},
			// Both pod names lead to one Deployment, read once; the failed read ends both lookups.
			wantActions: readDeployment,
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v2"},
		},
		{
			name:        "a namespace not allowed is refused and untouched",
			objects:     append(objs, otherObjs...),
			request:     func() *http.Request { return post(notification(firing("namespace", "payments", "pod", otherPod))) },
			wantStatus:  http.StatusOK,
			wantResults: []want{{"refused", "namespace-denied", "", "", 0, 0}},
			wantActions: none,
			wantImages:  map[string]string{"payments/checkout-api": "shop/checkout:v2"},
		},
		{
			name:        "a workload label without namespace is refused by default",
			objects:     objs,
			request:     func() *http.Request { return post(notification(firingNoNamespace("deployment", "checkout-api"))) },
			wantStatus:  http.StatusOK,
			wantResults: []want{{"refused", "no-namespace", "", "", 0, 0}},
			wantActions: none,
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v2"},
		},
		{
			name:        "a workload label without namespace uses ROLLBACK_DEFAULT_NAMESPACE",
			objects:     objs,
			env:         map[string]string{"ROLLBACK_DEFAULT_NAMESPACE": "shop"},
			request:     func() *http.Request { return post(notification(firingNoNamespace("deployment", "checkout-api"))) },
			wantStatus:  http.StatusOK,
			wantResults: []want{{"rolled-back", "rolled-back", "Deployment", "checkout-api", 2, 1}},
			wantActions: undoDeployment,
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v1"},
		},
		{
			name:        "a pod without namespace is looked for in the function's own",
			objects:     objs,
			request:     func() *http.Request { return post(notification(firingNoNamespace("pod", badPod))) },
			wantStatus:  http.StatusOK,
			wantResults: []want{{"rolled-back", "rolled-back", "Deployment", "checkout-api", 2, 1}},
			wantActions: undoDeployment,
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v1"},
		},
		{
			name:    "unmatched alerts are ignored, resolved or not",
			objects: objs,
			request: func() *http.Request {
				other := firing("pod", badPod)
				other.Labels["severity"] = "page"
				resolved := firing("pod", badPod)
				resolved.Labels["severity"] = "page"
				resolved.Status = "resolved"
				return post(notification(other, resolved))
			},
			wantStatus:  http.StatusOK,
			wantResults: []want{},
			wantIgnored: 2,
			wantActions: none,
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v2"},
		},
		{
			// The workload is read, to verify an undo of this function; it had none, and a
			// resolved alert never causes one: nothing is written.
			name:    "a resolved alert about a workload never rolled back is answered nothing-to-verify",
			objects: objs,
			request: func() *http.Request {
				resolved := firing("pod", badPod)
				resolved.Status = "resolved"
				return post(notification(resolved))
			},
			wantStatus:  http.StatusOK,
			wantResults: []want{{"skipped", "nothing-to-verify", "Deployment", "checkout-api", 0, 0}},
			wantActions: readDeployment,
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v2"},
		},
		{
			name:        "an invalid name is refused before any API call",
			objects:     objs,
			request:     func() *http.Request { return post(notification(firing("deployment", "Checkout_API"))) },
			wantStatus:  http.StatusOK,
			wantResults: []want{{"refused", "invalid-name", "", "", 0, 0}},
			wantActions: none,
		},
		{
			name:        "an alert naming no workload is refused",
			objects:     objs,
			request:     func() *http.Request { return post(notification(firing("service", "checkout"))) },
			wantStatus:  http.StatusOK,
			wantResults: []want{{"refused", "no-workload-label", "", "", 0, 0}},
			wantActions: none,
		},
		{
			name:        "the API failing answers 503 so Alertmanager retries",
			objects:     objs,
			reactors:    unavailable,
			request:     func() *http.Request { return post(notification(firing("deployment", "checkout-api"))) },
			wantStatus:  http.StatusServiceUnavailable,
			wantResults: []want{{"failed", "api-unavailable", "Deployment", "checkout-api", 0, 0}},
			wantActions: []string{"get deployments"},
		},
		{
			name:    "a huge alert name is clipped in the answer",
			objects: objs,
			request: func() *http.Request {
				a := firing("deployment", "checkout-api")
				a.Labels["alertname"] = longName
				a.Labels["severity"] = "rollback"
				return post(notification(a))
			},
			wantStatus:  http.StatusOK,
			wantResults: []want{{"rolled-back", "rolled-back", "Deployment", "checkout-api", 2, 1}},
			wantActions: undoDeployment,
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v1"},
		},
		{
			name:    "unauthenticated",
			objects: objs,
			request: func() *http.Request {
				r := post(notification(firing("pod", badPod)))
				r.Header.Del("Authorization")
				return r
			},
			wantStatus:  http.StatusUnauthorized,
			wantError:   "credentials",
			wantActions: none,
		},
		{
			name:    "wrong token",
			objects: objs,
			request: func() *http.Request {
				r := post(notification(firing("pod", badPod)))
				r.Header.Set("Authorization", "Bearer "+testToken+"x")
				return r
			},
			wantStatus:  http.StatusUnauthorized,
			wantError:   "credentials",
			wantActions: none,
		},
		{
			name:    "oversized",
			objects: objs,
			env:     map[string]string{"ROLLBACK_MAX_BODY_BYTES": "512"},
			request: func() *http.Request {
				return post(notification(firing("pod", badPod, "pad", strings.Repeat("x", 600))))
			},
			wantStatus:  http.StatusRequestEntityTooLarge,
			wantError:   "too large",
			wantActions: none,
		},
		{
			name:    "oversized without a Content-Length",
			objects: objs,
			env:     map[string]string{"ROLLBACK_MAX_BODY_BYTES": "512"},
			request: func() *http.Request {
				r := post(notification(firing("pod", badPod, "pad", strings.Repeat("x", 600))))
				r.ContentLength = -1
				return r
			},
			wantStatus:  http.StatusRequestEntityTooLarge,
			wantError:   "too large",
			wantActions: none,
		},
		{
			name:    "wrong method",
			objects: objs,
			request: func() *http.Request {
				r := post(nil)
				r.Method = http.MethodGet
				return r
			},
			wantStatus:  http.StatusMethodNotAllowed,
			wantError:   "method",
			wantActions: none,
		},
		{
			name:    "wrong content type",
			objects: objs,
			request: func() *http.Request {
				r := post(notification(firing("pod", badPod)))
				r.Header.Set("Content-Type", "text/plain")
				return r
			},
			wantStatus:  http.StatusUnsupportedMediaType,
			wantError:   "content type",
			wantActions: none,
		},
		{
			name:    "a CloudEvents batch is not supported",
			objects: objs,
			request: func() *http.Request {
				r := post([]byte(`[]`))
				r.Header.Set("Content-Type", "application/cloudevents-batch+json")
				return r
			},
			wantStatus:  http.StatusUnsupportedMediaType,
			wantError:   "content type",
			wantActions: none,
		},
		{
			name:        "malformed JSON",
			objects:     objs,
			request:     func() *http.Request { return post([]byte(`{"version":"4","alerts":[`)) },
			wantStatus:  http.StatusBadRequest,
			wantError:   "malformed JSON",
			wantActions: none,
		},
		{
			name:        "wrong version",
			objects:     objs,
			request:     func() *http.Request { return post([]byte(`{"version":"3","alerts":[{"status":"firing"}]}`)) },
			wantStatus:  http.StatusBadRequest,
			wantError:   `version \"3\"`,
			wantActions: none,
		},
		{
			name:        "no alerts",
			objects:     objs,
			request:     func() *http.Request { return post([]byte(`{"version":"4","alerts":[]}`)) },
			wantStatus:  http.StatusBadRequest,
			wantError:   "no alerts",
			wantActions: none,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := fixture.Clientset(tc.objects...)
			if tc.reactors != nil {
				tc.reactors(client)
			}
			f := start(t, client, tc.env)
			client.ClearActions()
			rec := httptest.NewRecorder()
			f.Handle(rec, tc.request())

			if rec.Code != tc.wantStatus {
				t.Fatalf("Handle() status = %d; want %d; body %s", rec.Code, tc.wantStatus, rec.Body)
			}
			if tc.wantError != "" && !strings.Contains(rec.Body.String(), tc.wantError) {
				t.Errorf("Handle() body = %s; want it to mention %q", rec.Body, tc.wantError)
			}
			if tc.wantStatus >= 400 && tc.wantStatus < 500 {
				if w := writes(client); len(w) > 0 {
					t.Errorf("a refused request wrote to the cluster: %v", w)
				}
			}
			if tc.wantActions != nil {
				if diff := cmp.Diff(tc.wantActions, actions(client), sorted); diff != "" {
					t.Errorf("API actions mismatch (-want +got):\n%s", diff)
				}
			}
			var resp outcome.Response
			_ = json.Unmarshal(rec.Body.Bytes(), &resp) // a refusal's body is checked above
			changes, err := fixture.Changes(tc.objects, client.Actions())
			if err != nil {
				t.Fatal(err)
			}
			checkPatches(t, changes, tc.env["ROLLBACK_DRY_RUN"] == "true", tc.wantImages, resp.Results)
			if tc.wantResults != nil {
				if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
					t.Fatalf("decoding the answer %s: %v", rec.Body, err)
				}
				got := []want{}
				for _, r := range resp.Results {
					got = append(got, want{string(r.Action), string(r.Reason), r.Kind, r.Name, r.FromRevision, r.ToRevision})
					if len(r.AlertName) > 128 || len(r.Fingerprint) > 128 {
						t.Errorf("result carries %d bytes of alert name, %d of fingerprint; want at most 128", len(r.AlertName), len(r.Fingerprint))
					}
				}
				if diff := cmp.Diff(tc.wantResults, got); diff != "" {
					t.Errorf("results mismatch (-want +got):\n%s\nbody: %.2000s", diff, rec.Body)
				}
				if resp.Ignored != tc.wantIgnored {
					t.Errorf("ignored = %d; want %d", resp.Ignored, tc.wantIgnored)
				}
			}
			for key, image := range tc.wantImages {
				ns, name, _ := strings.Cut(key, "/")
				if got := deploymentImage(t, client, ns, name); got != image {
					t.Errorf("Deployment %s image = %q; want %q", key, got, image)
				}
			}
			for _, d := range deployments(t, client) {
				if state := d.Annotations[undo.StateAnnotation]; len(state) > 4096 {
					t.Errorf("Deployment %s state annotation is %d bytes; want it bounded", d.Name, len(state))
				}
			}
		})
	}
	_ = d
}

func TestHandleCloudEvent(t *testing.T) {
	objs, badPod := brokenDeployment(ownNamespace)
	data := notification(firing("pod", badPod))
	tests := []struct {
		name    string
		request func() *http.Request
		// wantHeader is a header of the answer that shows its CloudEvent mode.
		wantHeader, wantHeaderValue string
	}{
		{
			name: "binary",
			request: func() *http.Request {
				r := post(data)
				r.Header.Set("Ce-Specversion", "1.0")
				r.Header.Set("Ce-Id", "evt-1")
				r.Header.Set("Ce-Type", "io.prometheus.alertmanager.notification")
				r.Header.Set("Ce-Source", "/alertmanager")
				return r
			},
			wantHeader: "Ce-Type", wantHeaderValue: ResultEventType,
		},
		{
			name: "structured",
			request: func() *http.Request {
				ev, _ := json.Marshal(map[string]any{
					"specversion": "1.0", "id": "evt-2", "type": "io.prometheus.alertmanager.notification",
					"source": "/alertmanager", "datacontenttype": "application/json", "data": json.RawMessage(data),
				})
				r := post(ev)
				r.Header.Set("Content-Type", "application/cloudevents+json")
				return r
			},
			wantHeader: "Content-Type", wantHeaderValue: "application/cloudevents+json",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := fixture.Clientset(objs...)
			f := start(t, client, nil)
			rec := httptest.NewRecorder()
			f.Handle(rec, tc.request())
			if rec.Code != http.StatusOK {
				t.Fatalf("Handle() status = %d; want 200; body %s", rec.Code, rec.Body)
			}
			if got := rec.Header().Get(tc.wantHeader); !strings.HasPrefix(got, tc.wantHeaderValue) {
				t.Errorf("answer header %s = %q; want %q", tc.wantHeader, got, tc.wantHeaderValue)
			}
			body := rec.Body.Bytes()
			if tc.name == "structured" {
				var ev struct {
					Type string          `json:"type"`
					Data json.RawMessage `json:"data"`
				}
				if err := json.Unmarshal(body, &ev); err != nil || ev.Type != ResultEventType {
					t.Fatalf("structured answer = %s (%v); want a %s event", body, err, ResultEventType)
				}
				body = ev.Data
			}
			var resp outcome.Response
			if err := json.Unmarshal(body, &resp); err != nil || len(resp.Results) != 1 || resp.Results[0].Action != "rolled-back" {
				t.Fatalf("answer data = %s (%v); want one rolled-back result", body, err)
			}
			if got := deploymentImage(t, client, ownNamespace, "checkout-api"); got != "shop/checkout:v1" {
				t.Errorf("image = %q; want shop/checkout:v1", got)
			}
		})
	}
}

// TestHandleConflictThenSuccess: a concurrent writer changes the Deployment between the
// function's read and its write; the write is refused with a conflict, and the function
// reads again and succeeds.
func TestHandleConflictThenSuccess(t *testing.T) {
	objs, badPod := brokenDeployment(ownNamespace)
	client := fixture.Clientset(objs...)
	patches := 0
	client.PrependReactor("patch", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) {
		patches++
		if patches == 1 {
			return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "apps", Resource: "deployments"}, "checkout-api", errors.New("the object has been modified"))
		}
		return false, nil, nil
	})
	f := start(t, client, nil)
	rec := httptest.NewRecorder()
	f.Handle(rec, post(notification(firing("pod", badPod))))
	if rec.Code != http.StatusOK || patches != 2 {
		t.Fatalf("Handle() = %d after %d patches; want 200 after 2; body %s", rec.Code, patches, rec.Body)
	}
	if got := deploymentImage(t, client, ownNamespace, "checkout-api"); got != "shop/checkout:v1" {
		t.Errorf("image = %q; want shop/checkout:v1", got)
	}
}

func TestStartRefusesWithoutCredentials(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr bool
	}{
		{"no token", map[string]string{}, true},
		{"allow unauthenticated", map[string]string{"ROLLBACK_ALLOW_UNAUTHENTICATED": "true"}, false},
		{"token", map[string]string{"ROLLBACK_AUTH_TOKEN": "t"}, false},
		{"token file missing", map[string]string{"ROLLBACK_AUTH_TOKEN_FILE": "/nonexistent/token"}, true},
		{"bad matcher", map[string]string{"ROLLBACK_AUTH_TOKEN": "t", "ROLLBACK_MATCH": "severity"}, true},
		{"bad cooldown", map[string]string{"ROLLBACK_AUTH_TOKEN": "t", "ROLLBACK_COOLDOWN": "soon"}, true},
		{"budget", map[string]string{"ROLLBACK_AUTH_TOKEN": "t", "ROLLBACK_BUDGET": "3/30m"}, false},
		{"budget off", map[string]string{"ROLLBACK_AUTH_TOKEN": "t", "ROLLBACK_BUDGET": "off"}, false},
		{"bad budget", map[string]string{"ROLLBACK_AUTH_TOKEN": "t", "ROLLBACK_BUDGET": "5 per hour"}, true},
		{"notifications at once", map[string]string{"ROLLBACK_AUTH_TOKEN": "t", "ROLLBACK_MAX_CONCURRENT": "20"}, false},
		{"no notification at once", map[string]string{"ROLLBACK_AUTH_TOKEN": "t", "ROLLBACK_MAX_CONCURRENT": "0"}, true},
		{"notifications at once not a number", map[string]string{"ROLLBACK_AUTH_TOKEN": "t", "ROLLBACK_MAX_CONCURRENT": "ten"}, true},
		{"budget of zero", map[string]string{"ROLLBACK_AUTH_TOKEN": "t", "ROLLBACK_BUDGET": "0/1h"}, true},
		{"gitops suspend", map[string]string{"ROLLBACK_AUTH_TOKEN": "t", "ROLLBACK_GITOPS": "suspend"}, false},
		{"bad gitops", map[string]string{"ROLLBACK_AUTH_TOKEN": "t", "ROLLBACK_GITOPS": "pause"}, true},
		{"bad Argo CD namespace", map[string]string{"ROLLBACK_AUTH_TOKEN": "t", "ROLLBACK_ARGOCD_NAMESPACE": "Argo_CD"}, true},
		{"body limit beyond 64 MiB", map[string]string{"ROLLBACK_AUTH_TOKEN": "t", "ROLLBACK_MAX_BODY_BYTES": "9223372036854775807"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := New()
			f.newClient = func(config) (clients, error) {
				return clients{kube: clientset.Wrap(fixture.Clientset()), dynamic: newDynamic(), namespace: "default"}, nil
			}
			err := f.Start(context.Background(), tc.env)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Start() = %v; want error %v", err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, errConfig) {
				t.Errorf("Start() = %v; want errConfig", err)
			}
		})
	}
}

func TestStopDrains(t *testing.T) {
	objs, badPod := brokenDeployment(ownNamespace)
	f := start(t, fixture.Clientset(objs...), nil)
	if ok, _ := f.Ready(context.Background()); !ok {
		t.Fatal("Ready() = false after Start")
	}
	if err := f.Stop(context.Background()); err != nil {
		t.Fatalf("Stop() = %v", err)
	}
	if ok, _ := f.Ready(context.Background()); ok {
		t.Error("Ready() = true after Stop")
	}
	rec := httptest.NewRecorder()
	f.Handle(rec, post(notification(firing("pod", badPod))))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("Handle() after Stop = %d; want 503", rec.Code)
	}
}

func deploymentImage(t *testing.T, c kubernetes.Interface, ns, name string) string {
	t.Helper()
	d, err := c.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get deployment %s/%s: %v", ns, name, err)
	}
	return d.Spec.Template.Spec.Containers[0].Image
}

// checkPatches checks what each patch changed, decoded from the bytes the client sent, not
// only its verb: the pod template, to the image the case expects, and the state annotation
// alone, under the resourceVersion the undo read; the state records the undo the answer
// reports. In dry-run mode every patch is sent with dryRun (the fake stores it anyway, so
// the image is not checked), and only then.
func checkPatches(t *testing.T, changes []fixture.Change, dryRun bool, wantImages map[string]string, results []outcome.Result) {
	t.Helper()
	for _, c := range changes {
		if c.DryRun != dryRun {
			t.Errorf("patch of %s sent with dryRun %v; want %v", c.Key, c.DryRun, dryRun)
		}
		if diff := cmp.Diff([]string{"metadata.annotations", "spec.template"}, c.Fields); diff != "" {
			t.Errorf("patch of %s changed other fields (-want +got):\n%s", c.Key, diff)
		}
		if diff := cmp.Diff([]string{undo.StateAnnotation}, c.Annotations); diff != "" {
			t.Errorf("patch of %s changed other annotations (-want +got):\n%s", c.Key, diff)
		}
		if want, ok := wantImages[c.Key]; !dryRun && (!ok || c.Image != want) {
			t.Errorf("patch of %s sets image %q; want %q", c.Key, c.Image, want)
		}
		if c.Precondition == "" || c.Precondition != c.Read {
			t.Errorf("patch of %s requires resourceVersion %q; want the one read, %q", c.Key, c.Precondition, c.Read)
		}
		var state undo.State
		if err := json.Unmarshal([]byte(c.After[undo.StateAnnotation]), &state); err != nil || state.Last == nil || len(state.Handled) == 0 {
			t.Errorf("patch of %s writes state %q (%v); want the undo and its alert recorded", c.Key, c.After[undo.StateAnnotation], err)
			continue
		}
		ns, name, _ := strings.Cut(c.Key, "/")
		i := slices.IndexFunc(results, func(r outcome.Result) bool {
			return r.Namespace == ns && r.Name == name && r.Action == outcome.RolledBack
		})
		if i < 0 {
			t.Errorf("patched %s; the answer reports no undo of it: %+v", c.Key, results)
			continue
		}
		if r := results[i]; state.Last.From != r.FromRevision || state.Last.To != r.ToRevision {
			t.Errorf("patch of %s records the undo %d -> %d; the answer reports %d -> %d", c.Key, state.Last.From, state.Last.To, r.FromRevision, r.ToRevision)
		}
	}
}

// actions lists the API actions the function made, as "verb resource", Events excluded:
// they are sent asynchronously, so their timing is not the handler's.
func actions(c *fake.Clientset) []string {
	out := []string{}
	for _, a := range c.Actions() {
		if a.GetResource().Resource != "events" {
			out = append(out, a.GetVerb()+" "+a.GetResource().Resource)
		}
	}
	return out
}

func deployments(t *testing.T, c kubernetes.Interface) []appsv1.Deployment {
	t.Helper()
	l, err := c.AppsV1().Deployments("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

// writes lists the actions that changed workloads (events are reports, not changes).
func writes(c *fake.Clientset) []string {
	var out []string
	for _, a := range c.Actions() {
		switch a.GetVerb() {
		case "get", "list", "watch":
			continue
		}
		if a.GetResource().Resource == "events" {
			continue
		}
		out = append(out, a.GetVerb()+" "+a.GetResource().Resource)
	}
	return out
}

// TestTokenFileRotation: a token read from ROLLBACK_AUTH_TOKEN_FILE follows the file, as a
// mounted Secret is rotated in place, even when the rotation keeps the modification time;
// an emptied file keeps the last token; a deleted file lets nobody in.
func TestTokenFileRotation(t *testing.T) {
	objs, _ := brokenDeployment(ownNamespace)
	path := filepath.Join(t.TempDir(), "token")
	write := func(token string, at time.Time) {
		if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, at, at); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	write("first", now)
	f := start(t, fixture.Clientset(objs...), map[string]string{"ROLLBACK_AUTH_TOKEN": "", "ROLLBACK_AUTH_TOKEN_FILE": path})
	status := func(token string) int {
		r := post([]byte(`{"version":"4","alerts":[{"status":"resolved"}]}`))
		r.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		f.Handle(rec, r)
		return rec.Code
	}
	steps := []struct {
		name   string
		write  string // "" leaves the file alone
		token  string
		status int
	}{
		{"the file's token", "", "first", http.StatusOK},
		{"rotated: the new token", "second", "second", http.StatusOK},
		{"rotated: the old token", "", "first", http.StatusUnauthorized},
		{"emptied: the last token stays", " ", "second", http.StatusOK},
		{"rotated keeping the modification time", "third", "third", http.StatusOK},
		{"deleted: nobody gets in", "-", "third", http.StatusUnauthorized},
	}
	for i, s := range steps {
		switch s.write {
		case "":
		case "-":
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		case "third":
			write(s.write, now.Add(time.Duration(i-1)*time.Second)) // the emptied file's time
		default:
			write(s.write, now.Add(time.Duration(i)*time.Second))
		}
		if got := status(s.token); got != s.status {
			t.Errorf("%s: status %d; want %d", s.name, got, s.status)
		}
	}
}

func TestAllowedNamespaces(t *testing.T) {
	tests := []struct {
		name       string
		namespaces string
		namespace  string
		want       bool
	}{
		{"own by default", "", ownNamespace, true},
		{"others not by default", "", "payments", false},
		{"listed", "payments,shop", "payments", true},
		{"not listed", "payments", "orders", false},
		{"star", "*", "orders", true},
		{"star does not reach kube-system", "*", "kube-system", false},
		{"star does not reach kube-public", "*", "kube-public", false},
		{"star does not reach kube-node-lease", "*", "kube-node-lease", false},
		{"kube-system when listed", "*,kube-system", "kube-system", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseConfig(map[string]string{"ROLLBACK_AUTH_TOKEN": "t", "ROLLBACK_NAMESPACES": tc.namespaces})
			if err != nil {
				t.Fatal(err)
			}
			if got := c.allowed(ownNamespace)(tc.namespace); got != tc.want {
				t.Errorf("allowed(%q) with ROLLBACK_NAMESPACES=%q = %v; want %v", tc.namespace, tc.namespaces, got, tc.want)
			}
		})
	}
}

// newDynamic is a fake dynamic client that knows Argo CD's, Flux's and Knative's kinds.
func newDynamic(objs ...runtime.Object) *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		gitops.ApplicationResource:    "ApplicationList",
		gitops.KustomizationResource:  "KustomizationList",
		gitops.HelmReleaseResource:    "HelmReleaseList",
		fixture.KnativeServices:       "ServiceList",
		fixture.KnativeConfigurations: "ConfigurationList",
		fixture.KnativeRevisions:      "RevisionList",
	}, objs...)
}

// TestMaxConcurrent: beyond ROLLBACK_MAX_CONCURRENT notifications at once, the next
// is answered 503 with Retry-After before its body is read, whatever server runs the
// function (func's runtime has no bound of its own); a caller without the token never takes
// a slot, and a slot is free again once its notification is answered.
func TestMaxConcurrent(t *testing.T) {
	objs, badPod := brokenDeployment(ownNamespace)
	client := fixture.Clientset(objs...)
	hold := holdFirstDeploymentRead(client)
	f := start(t, client, map[string]string{"ROLLBACK_MAX_CONCURRENT": "1"})
	body := notification(firing("pod", badPod))
	first := make(chan int, 1)
	go func() {
		rec := httptest.NewRecorder()
		f.Handle(rec, post(body))
		first <- rec.Code
	}()
	hold.waitEntered(t)

	unread := &countingReader{r: bytes.NewReader(body)}
	busy := httptest.NewRequest(http.MethodPost, "/", unread)
	busy.Header.Set("Content-Type", "application/json")
	busy.Header.Set("Authorization", "Bearer "+testToken)
	rec := httptest.NewRecorder()
	f.Handle(rec, busy)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" || unread.n != 0 {
		t.Errorf("a second notification at once = %d, Retry-After %q, %d bytes read; want 503, \"1\", 0", rec.Code, rec.Header().Get("Retry-After"), unread.n)
	}
	noToken := post(body)
	noToken.Header.Del("Authorization")
	rec = httptest.NewRecorder()
	f.Handle(rec, noToken)
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("without a token while full = %d; want 401", rec.Code)
	}

	hold.release()
	if code := <-first; code != http.StatusOK {
		t.Fatalf("the first notification = %d; want 200", code)
	}
	if code, got := handle(t, f, body); code != http.StatusOK || !cmp.Equal(got, []string{"skipped already-handled"}) {
		t.Errorf("once the first was answered = %d %v; want 200 skipped", code, got)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// TestStartSetsMemoryLimit shows that Start itself bounds the heap by the container's
// memory limit, so it holds under func's runtime (which calls Start, and has no main of
// ours) as under cmd/rollback.
func TestStartSetsMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	debug.SetMemoryLimit(math.MaxInt64)
	f := New()
	f.newClient = func(config) (clients, error) {
		return clients{kube: clientset.Wrap(fixture.Clientset()), dynamic: newDynamic(), namespace: "default"}, nil
	}
	f.newLogger = zap.NewNop().Sugar
	f.memoryLimit = func() (uint64, error) { return 134217728, nil }
	if err := f.Start(t.Context(), map[string]string{"ROLLBACK_AUTH_TOKEN": "t"}); err != nil {
		t.Fatal(err)
	}
	limit := float64(134217728)
	if got, want := debug.SetMemoryLimit(-1), int64(limit*memlimit.Share); got != want {
		t.Fatalf("runtime memory limit = %d; want %d (90%% of the cgroup's 128 MiB)", got, want)
	}
}

// noMemoryLimit is a container without a memory limit: tests leave the runtime's alone.
func noMemoryLimit() (uint64, error) { return 0, automemlimit.ErrNoLimit }
