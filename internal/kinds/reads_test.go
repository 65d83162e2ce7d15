package kinds

import (
	"context"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sre-kit/alert-rollback/internal/fixture"
	"github.com/sre-kit/alert-rollback/internal/kube"
	"github.com/sre-kit/alert-rollback/internal/kube/clientset"
)

const ns = "shop"

// listRecorder records the options of every ReplicaSet list: the fake's actions drop the
// resourceVersion, which is what readDeployment's guarantee is about.
type listRecorder struct {
	kube.Client
	mu   sync.Mutex
	opts []string
}

type recordingReplicaSets struct {
	kube.Object[*appsv1.ReplicaSet, *appsv1.ReplicaSetList]
	r *listRecorder
}

func (r *listRecorder) ReplicaSets(ns string) kube.Object[*appsv1.ReplicaSet, *appsv1.ReplicaSetList] {
	return recordingReplicaSets{r.Client.ReplicaSets(ns), r}
}

func (x recordingReplicaSets) List(ctx context.Context, opts metav1.ListOptions) (*appsv1.ReplicaSetList, error) {
	x.r.mu.Lock()
	x.r.opts = append(x.r.opts, opts.LabelSelector+" rv="+opts.ResourceVersion+" "+string(opts.ResourceVersionMatch))
	x.r.mu.Unlock()
	return x.Object.List(ctx, opts)
}

// Once a Deployment has been read, its ReplicaSets are listed while it is read again (a
// consistent list), and that list is used only when it is of the same Deployment and
// not older than it: otherwise they are listed again as on a first read.
func TestReadDeploymentListsAtOnceWhenTheSelectorIsKnown(t *testing.T) {
	d, rss := fixture.Deployment(ns, "web", "shop/web:v1", "shop/web:v2")
	const first = "app=web rv=100 NotOlderThan"
	tests := []struct {
		name    string
		between func(c *fake.Clientset) // after the first read
		want    []string                // the second read's lists
		wantUID types.UID
	}{
		{
			name:    "the same Deployment: one list, made while it is read",
			between: func(*fake.Clientset) {},
			want:    []string{"app=web rv= "},
			wantUID: d.UID,
		},
		{
			name: "a list older than the Deployment read is made again",
			between: func(c *fake.Clientset) {
				react := k8stesting.ObjectReaction(c.Tracker())
				c.PrependReactor("list", "replicasets", func(a k8stesting.Action) (bool, runtime.Object, error) {
					_, obj, err := react(a)
					obj.(metav1.ListInterface).SetResourceVersion("99")
					return true, obj, err
				})
			},
			want:    []string{"app=web rv= ", first},
			wantUID: d.UID,
		},
		{
			name: "a Deployment deleted and created again under its name is listed by its own selector",
			between: func(c *fake.Clientset) {
				again := d.DeepCopy()
				again.UID = "uid-again"
				again.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web", "track": "new"}}
				if err := c.Tracker().Update(appsv1.SchemeGroupVersion.WithResource("deployments"), again, ns); err != nil {
					t.Fatal(err)
				}
			},
			want:    []string{"app=web rv= ", "app=web,track=new rv=100 NotOlderThan"},
			wantUID: "uid-again",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fixture.Clientset(append(fixture.Objects(rss...), d)...)
			rec := &listRecorder{Client: clientset.Wrap(c)}
			e := NewEnv(rec)
			if _, _, err := e.readDeployment(context.Background(), ns, "web"); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]string{first}, rec.opts); diff != "" {
				t.Fatalf("first read's lists (-want +got):\n%s", diff)
			}
			tt.between(c)
			rec.opts = nil
			dep, got, err := e.readDeployment(context.Background(), ns, "web")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, rec.opts); diff != "" {
				t.Errorf("second read's lists (-want +got):\n%s", diff)
			}
			if dep.UID != tt.wantUID {
				t.Errorf("read Deployment %s; want %s", dep.UID, tt.wantUID)
			}
			if tt.wantUID == d.UID && len(got) != len(rss) {
				t.Errorf("%d ReplicaSets; want %d", len(got), len(rss))
			}
		})
	}
}
