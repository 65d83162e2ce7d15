package faults

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sre-kit/alert-rollback/internal/fixture"
	"github.com/sre-kit/alert-rollback/internal/kinds"
	"github.com/sre-kit/alert-rollback/internal/kube/clientset"
	"github.com/sre-kit/alert-rollback/internal/outcome"
	"github.com/sre-kit/alert-rollback/internal/undo"
)

// TestUndoDeadline is the unit-sized form of what "the write hangs past the API timeout"
// and "etcd killed during the write" show on the real control plane: an API call of the
// undo that runs out of time (client-go wraps context.DeadlineExceeded in a *url.Error
// when rest.Config.Timeout or the request's deadline passes) must end the undo with a
// retryable failure, never with a rollback that did not happen.
func TestUndoDeadline(t *testing.T) {
	tests := []struct {
		name     string
		kind     schema.GroupKind
		verb     string
		resource string
		err      error
	}{
		{"Deployment write times out", kinds.Deployment, "patch", "deployments", context.DeadlineExceeded},
		{"Deployment write cancelled", kinds.Deployment, "patch", "deployments", context.Canceled},
		{"Deployment read times out", kinds.Deployment, "get", "deployments", context.DeadlineExceeded},
		{"StatefulSet write times out", kinds.StatefulSet, "patch", "statefulsets", context.DeadlineExceeded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var objs []runtime.Object
			switch tc.kind {
			case kinds.Deployment:
				d, rss := fixture.Deployment("shop", "web", "app:v1", "app:v2")
				objs = append(fixture.Objects(d), fixture.Objects(rss...)...)
			case kinds.StatefulSet:
				s, crs := fixture.StatefulSet("shop", "web", "app:v1", "app:v2")
				objs = append(fixture.Objects(s), fixture.Objects(crs...)...)
			}
			client := fake.NewClientset(objs...)
			client.PrependReactor(tc.verb, tc.resource, func(k8stesting.Action) (bool, runtime.Object, error) {
				// What client-go returns when the call's deadline passes.
				return true, nil, &url.Error{Op: "Patch", URL: "https://127.0.0.1/" + tc.resource, Err: tc.err}
			})
			u := undo.New(clientset.Wrap(client), undo.Options{Now: time.Now})
			req := undo.Request{Ref: kinds.RefOf(tc.kind, "shop", "web"), AlertIDs: []string{"fp@1"}, Alert: "Broken"}
			c, err := u.Undo(context.Background(), req)
			action, reason := outcome.Classify(err)
			if err == nil || action != outcome.Failed || !outcome.Retryable(reason) {
				t.Errorf("Undo(%s) = %+v, %v (%s, %s); want a retryable failure: the %s of %s failed with %v",
					req.Ref, c, err, action, reason, tc.verb, tc.resource, fmt.Errorf("%w", tc.err))
			}
		})
	}
}
