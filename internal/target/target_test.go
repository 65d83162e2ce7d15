package target

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/sre-kit/alert-rollback/internal/fixture"
	"github.com/sre-kit/alert-rollback/internal/kinds"
	"github.com/sre-kit/alert-rollback/internal/kube/clientset"
)

const ns = "shop"

// TestResolve: alert labels lead to the workload they name, on a fake clientset holding a
// Deployment (with its ReplicaSets and a pod), a StatefulSet and a DaemonSet (with a pod
// each) and a Job's pod. Expected workloads are written as group, kind, namespace, name.
func TestResolve(t *testing.T) {
	d, rss := fixture.Deployment(ns, "checkout-api", "shop/checkout:v1", "shop/checkout:v2")
	sts, crs := fixture.StatefulSet(ns, "db", "db:v1", "db:v2")
	ds, dcrs := fixture.DaemonSet(ns, "agent", "agent:v1", "agent:v2")
	stsPod := fixture.ControlledPod(sts, "StatefulSet", "db-0", crs[1].Name)
	// The DaemonSet controller labels pods with the hash alone; the StatefulSet controller
	// with the ControllerRevision's name.
	dsPod := fixture.ControlledPod(ds, "DaemonSet", "agent-x7k2p", fixture.Hash("agent:v2"))
	deployPod := fixture.Pod(rss[1], "x7k2p")
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "migrate", UID: "job-uid"}}
	jobPod := fixture.ControlledPod(job, "Job", "migrate-q8w2z", "")
	jobPod.OwnerReferences[0].APIVersion = "batch/v1"
	_, rors := fixture.Rollout(ns, "web", 0, "shop/web:v1", "shop/web:v2")
	rolloutPod := fixture.Pod(rors[1], "q7w2z")
	objects := slices.Concat([]runtime.Object{d, sts, ds, stsPod, dsPod, deployPod, jobPod, rolloutPod},
		fixture.Objects(rss...), fixture.Objects(crs...), fixture.Objects(dcrs...), fixture.Objects(rors...))
	argo := func(name string) kinds.Ref {
		return kinds.Ref{Group: kinds.Rollout.Group, Kind: kinds.Rollout.Kind, Namespace: ns, Name: name}
	}

	svc, cfg, revs := fixture.KnativeService(ns, "web", "web:v1", "web:v2")
	dynObjects := []runtime.Object{svc, cfg, revs[0], revs[1]}
	knativeService := kinds.RefOf(kinds.KnativeService, ns, "web")
	k, _ := kinds.For(kinds.KnativeService)
	w, err := k.Load(context.Background(), kinds.NewEnv(clientset.WrapDynamic(fixture.Clientset(), fixture.Dynamic(dynObjects...))), ns, "web", nil)
	if err != nil {
		t.Fatal(err)
	}
	rev2 := w.History[0].ID

	apps := func(kind, name string) kinds.Ref {
		return kinds.Ref{Group: appsv1.GroupName, Kind: kind, Namespace: ns, Name: name}
	}
	tests := []struct {
		name      string
		namespace string // ns when empty
		labels    map[string]string
		allowed   []string // every namespace when nil
		want      kinds.Ref
		wantUID   string
		wantRev   string
		wantErr   error
		wantReads int // API requests (with no shared reads)
		// wantDynamicReads are the requests of the dynamic client (Knative's objects).
		wantDynamicReads int
	}{
		{name: "deployment label", labels: map[string]string{"deployment": "checkout-api"}, want: apps("Deployment", "checkout-api")},
		{name: "statefulset label", labels: map[string]string{"statefulset": "db"}, want: apps("StatefulSet", "db")},
		{name: "daemonset label", labels: map[string]string{"daemonset": "agent"}, want: apps("DaemonSet", "agent")},
		{name: "a named workload wins over its pod", labels: map[string]string{"pod": "db-0", "deployment": "checkout-api"}, want: apps("Deployment", "checkout-api")},
		{name: "replicaset label leads to its Deployment", labels: map[string]string{"replicaset": rss[0].Name},
			want: apps("Deployment", "checkout-api"), wantUID: string(d.UID), wantRev: fixture.Hash("shop/checkout:v1"), wantReads: 1},
		{name: "pod of a Deployment", labels: map[string]string{"pod": deployPod.Name},
			want: apps("Deployment", "checkout-api"), wantUID: string(d.UID), wantRev: fixture.Hash("shop/checkout:v2"), wantReads: 2},
		{name: "pod of a StatefulSet", labels: map[string]string{"pod": "db-0"},
			want: apps("StatefulSet", "db"), wantUID: string(sts.UID), wantRev: crs[1].Name, wantReads: 1},
		{name: "pod of a DaemonSet", labels: map[string]string{"pod": dsPod.Name},
			want: apps("DaemonSet", "agent"), wantUID: string(ds.UID), wantRev: dcrs[1].Name, wantReads: 1},
		{name: "rollout label", labels: map[string]string{"rollout": "web"}, want: argo("web")},
		{name: "replicaset label of a Rollout leads to it", labels: map[string]string{"replicaset": rors[0].Name},
			want: argo("web"), wantUID: string(rors[0].OwnerReferences[0].UID), wantRev: fixture.Hash("shop/web:v1"), wantReads: 1},
		{name: "pod of a Rollout", labels: map[string]string{"pod": rolloutPod.Name},
			want: argo("web"), wantUID: string(rors[0].OwnerReferences[0].UID), wantRev: fixture.Hash("shop/web:v2"), wantReads: 2},
		{name: "pod of a Job", labels: map[string]string{"pod": jobPod.Name}, wantErr: ErrUnsupportedOwner, wantReads: 1},
		{name: "pod gone, not a Deployment's", labels: map[string]string{"pod": "db-7"}, wantErr: ErrNotFound, wantReads: 1},
		{name: "no workload label", labels: map[string]string{"alertname": "X"}, wantErr: ErrNoWorkloadLabel},
		{name: "knative_service label", labels: map[string]string{"knative_service": "web"}, want: knativeService},
		{name: "Knative's own metric label kn_service_name", labels: map[string]string{"kn_service_name": "web"}, want: knativeService},
		{name: "Knative's kn_revision_name leads to its Service", labels: map[string]string{"kn_revision_name": "web-00002"},
			want: knativeService, wantUID: string(svc.GetUID()), wantRev: rev2, wantDynamicReads: 2},
		// kube-state-metrics' `service` label is a core Service, never a Knative one.
		{name: "a service label names no workload", labels: map[string]string{"service": "web"}, wantErr: ErrNoWorkloadLabel},
		{name: "invalid name", labels: map[string]string{"deployment": "Checkout_API"}, wantErr: ErrInvalidName},
		{name: "invalid namespace", namespace: "Shop", labels: map[string]string{"deployment": "checkout-api"}, wantErr: ErrInvalidName},
		{name: "namespace not allowed", labels: map[string]string{"pod": deployPod.Name}, allowed: []string{"payments"}, wantErr: ErrNamespaceDenied},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client, dyn := fixture.Clientset(objects...), fixture.Dynamic(dynObjects...)
			r := &Resolver{Client: clientset.WrapDynamic(client, dyn), OwnNamespace: "alert-rollback"}
			if tc.allowed != nil {
				r.Allowed = func(ns string) bool { return slices.Contains(tc.allowed, ns) }
			}
			namespace := tc.namespace
			if namespace == "" {
				namespace = ns
			}
			got, err := r.Resolve(context.Background(), namespace, tc.labels, nil)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Resolve(%v) = %v; want %v", tc.labels, err, tc.wantErr)
			}
			if err == nil {
				if diff := cmp.Diff(tc.want, got.Ref); diff != "" {
					t.Errorf("Resolve(%v) workload mismatch (-want +got):\n%s", tc.labels, diff)
				}
				if string(got.UID) != tc.wantUID || got.Revision != tc.wantRev {
					t.Errorf("Resolve(%v) UID %q, revision %q; want %q, %q", tc.labels, got.UID, got.Revision, tc.wantUID, tc.wantRev)
				}
			}
			if n := len(client.Actions()); n != tc.wantReads {
				t.Errorf("Resolve(%v) made %d API requests; want %d: %v", tc.labels, n, tc.wantReads, client.Actions())
			}
			if n := len(dyn.Actions()); n != tc.wantDynamicReads {
				t.Errorf("Resolve(%v) made %d requests of Knative's objects; want %d: %v", tc.labels, n, tc.wantDynamicReads, dyn.Actions())
			}
		})
	}
}

// TestNamespace: the namespace label decides; without it a pod is looked for in the
// function's own namespace, and a workload only in ROLLBACK_DEFAULT_NAMESPACE, if set.
func TestNamespace(t *testing.T) {
	tests := []struct {
		name      string
		labels    map[string]string
		defaultNS string
		want      string
		wantErr   error
	}{
		{"namespace label", map[string]string{"namespace": "payments", "deployment": "api"}, "", "payments", nil},
		{"pod without namespace", map[string]string{"pod": "api-0"}, "", "alert-rollback", nil},
		{"workload without namespace", map[string]string{"deployment": "api"}, "", "", ErrNoNamespace},
		{"workload, default namespace set", map[string]string{"statefulset": "db"}, "shop", "shop", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &Resolver{OwnNamespace: "alert-rollback", DefaultNamespace: tc.defaultNS}
			got, err := r.Namespace(tc.labels)
			if got != tc.want || !errors.Is(err, tc.wantErr) {
				t.Errorf("Namespace(%v) = %q, %v; want %q, %v", tc.labels, got, err, tc.want, tc.wantErr)
			}
		})
	}
}
