package undo

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/sre-kit/alert-rollback/internal/fixture"
	"github.com/sre-kit/alert-rollback/internal/kinds"
)

// knativeRevision is the controller reference Knative Serving puts on a Revision's
// Deployment.
var knativeRevision = metav1.OwnerReference{
	APIVersion: "serving.knative.dev/v1", Kind: "Revision", Name: "web-front-end-00002",
	UID: "uid-revision", Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
}

// TestControllerOwned: a Deployment, StatefulSet or DaemonSet that another object controls
// is that controller's to write; an undo would be reverted or fought. Each is refused with
// the owner named, and nothing is written. An owner reference that is not a controller's
// does not write the template, and changes nothing.
func TestControllerOwned(t *testing.T) {
	operator := metav1.OwnerReference{APIVersion: "monitoring.coreos.com/v1", Kind: "Prometheus", Name: "k8s", UID: "uid-prometheus", Controller: ptr.To(true)}
	notController := knativeRevision
	notController.Controller = nil
	deploymentOwnedBy := func(refs ...metav1.OwnerReference) []runtime.Object {
		d, objs := deployment("app:v1", "app:v2")
		d.OwnerReferences = refs
		return objs
	}
	tests := []struct {
		name      string
		objects   []runtime.Object
		req       Request
		wantErr   error
		wantOwner string // in the message
		wantImage string
	}{
		{
			name:    "deployment of a Knative Revision",
			objects: deploymentOwnedBy(knativeRevision),
			req:     request(kinds.Deployment, "web-front-end"), wantErr: ErrControllerOwned,
			wantOwner: "serving.knative.dev/v1 Revision web-front-end-00002", wantImage: "app:v2",
		},
		{
			name: "statefulset of an operator",
			objects: func() []runtime.Object {
				s, crs := fixture.StatefulSet(ns, "db", "db:v1", "db:v2")
				s.OwnerReferences = []metav1.OwnerReference{operator}
				return append(fixture.Objects(crs...), s)
			}(),
			req: request(kinds.StatefulSet, "db"), wantErr: ErrControllerOwned,
			wantOwner: "monitoring.coreos.com/v1 Prometheus k8s", wantImage: "db:v2",
		},
		{
			name: "daemonset of an operator",
			objects: func() []runtime.Object {
				d, crs := fixture.DaemonSet(ns, "agent", "agent:v1", "agent:v2")
				d.OwnerReferences = []metav1.OwnerReference{operator}
				return append(fixture.Objects(crs...), d)
			}(),
			req: request(kinds.DaemonSet, "agent"), wantErr: ErrControllerOwned,
			wantOwner: "monitoring.coreos.com/v1 Prometheus k8s", wantImage: "agent:v2",
		},
		{
			name:    "an owner that is not a controller writes nothing: rolled back",
			objects: deploymentOwnedBy(notController),
			req:     request(kinds.Deployment, "web-front-end"), wantImage: "app:v1",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := fixture.Clientset(tc.objects...)
			_, err := undoer(client, false).Undo(context.Background(), tc.req)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Undo() = %v; want %v", err, tc.wantErr)
			}
			if tc.wantErr != nil {
				if !strings.Contains(err.Error(), tc.wantOwner) || !strings.Contains(err.Error(), "roll back that owner instead") {
					t.Errorf("Undo() = %q; want it to name %s and say to roll it back instead", err, tc.wantOwner)
				}
				if w := writesOf(client); len(w) > 0 {
					t.Fatalf("refused, but wrote: %v", w)
				}
			}
			if got := image(t, client, tc.req.Ref.GroupKind(), tc.req.Ref.Name); got != tc.wantImage {
				t.Fatalf("image = %s; want %s", got, tc.wantImage)
			}
		})
	}
}

// TestControllerOwnedAfterResolution: what counts is the workload as read for the write. An
// alert resolved while the Deployment had no controller, which one gains before the write
// (Knative adopting it, say), is refused: the write conflicts, and the attempt after it reads
// the controller reference.
func TestControllerOwnedAfterResolution(t *testing.T) {
	_, objs := deployment("app:v1", "app:v2")
	client := fixture.Clientset(objs...)
	u := undoer(client, false)
	reads := u.NewReads()
	// The resolution's read, as package target makes it, before the owner arrives.
	if _, _, err := reads.Deployment(context.Background(), ns, "web-front-end"); err != nil {
		t.Fatal(err)
	}
	adopt(t, client)
	req := request(kinds.Deployment, "web-front-end")
	req.Reads = reads
	_, err := u.Undo(context.Background(), req)
	if !errors.Is(err, ErrControllerOwned) {
		t.Fatalf("Undo() = %v; want %v", err, ErrControllerOwned)
	}
	// The first attempt, on the resolution's read, wrote and conflicted; the next did not.
	if w := writesOf(client); len(w) != 1 {
		t.Errorf("writes = %d; want only the first attempt's, which conflicted", len(w))
	}
	if got := image(t, client, kinds.Deployment, "web-front-end"); got != "app:v2" {
		t.Fatalf("image = %s; want app:v2", got)
	}
}

// adopt gives the Deployment a controller reference, and makes the next write to it
// conflict, as the apiserver's resourceVersion precondition does once it has changed: the
// fake does not check preconditions on patches.
func adopt(t *testing.T, client *fake.Clientset) {
	t.Helper()
	ctx := context.Background()
	d, err := client.AppsV1().Deployments(ns).Get(ctx, "web-front-end", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.OwnerReferences = []metav1.OwnerReference{knativeRevision}
	d.ResourceVersion = "101"
	if err := client.Tracker().Update(appsv1.SchemeGroupVersion.WithResource("deployments"), d, ns); err != nil {
		t.Fatal(err)
	}
	client.PrependReactor("patch", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		var ops []struct{ Path, Value any }
		if err := json.Unmarshal(a.(k8stesting.PatchAction).GetPatch(), &ops); err != nil {
			return true, nil, err
		}
		for _, op := range ops {
			if op.Path == "/metadata/resourceVersion" && op.Value != d.ResourceVersion {
				return true, nil, apierrors.NewConflict(appsv1.Resource("deployments"), d.Name, errors.New("the object has been modified"))
			}
		}
		return false, nil, nil
	})
}
