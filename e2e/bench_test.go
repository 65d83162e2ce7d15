package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"k8s.io/kubectl/pkg/polymorphichelpers"

	"github.com/sre-kit/alert-rollback/e2e/fixture"
	"github.com/sre-kit/alert-rollback/internal/kinds"
	"github.com/sre-kit/alert-rollback/internal/kube/clientset"
	"github.com/sre-kit/alert-rollback/internal/undo"
)

// BenchmarkUndo measures one Deployment undo on the real API server, side by side:
// kubectl's own rollback code (k8s.io/kubectl polymorphichelpers, what `kubectl rollout
// undo` runs, in process so no process start is counted) and this function's undo
// package, with all its guards. Before each timed undo both get the same untimed write to
// the cluster, as a real rollback follows a rollout. It reports API requests per undo.
func BenchmarkUndo(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	for _, name := range []string{"bench-kubectl", "bench-function"} {
		e.rollout(name, nil, false, []step{{image: "registry.invalid/app:v1"}, {image: "registry.invalid/app:v2"}})
	}
	var requests atomic.Int64
	cfg := rest.CopyConfig(kube.Config)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			requests.Add(1)
			return rt.RoundTrip(r)
		})
	}
	cs := kubernetes.NewForConfigOrDie(cfg)

	// touch writes to the Deployment: a fresh write, and (for the function) a cleared
	// guard state, so every iteration is a real undo of a fresh rollout.
	touch := func(b *testing.B, name string, i int) {
		patch := fmt.Sprintf(`{"metadata":{"annotations":{"bench/i":"%d","alert-rollback.dev/state":null}}}`, i)
		if _, err := kube.Clientset.AppsV1().Deployments(e.ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	run1 := func(b *testing.B, name string, undoOnce func(i int)) {
		requests.Store(0)
		var rev int64
		fmt.Sscan(e.deployment(name).Annotations["deployment.kubernetes.io/revision"], &rev)
		for i := range b.N {
			b.StopTimer()
			touch(b, name, i)
			b.StartTimer()
			undoOnce(i)
			b.StopTimer()
			// Let the controller record the new revision before the next round.
			if err := fixture.WaitDeploymentRevision(ctx, kube.Clientset, e.ns, name, rev+int64(i)+1); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		b.ReportMetric(float64(requests.Load())/float64(b.N), "requests/op")
	}

	b.Run("kubectl", func(b *testing.B) {
		rb, err := polymorphichelpers.RollbackerFor(schema.GroupKind{Group: "apps", Kind: "Deployment"}, cs)
		if err != nil {
			b.Fatal(err)
		}
		d := fixture.Deployment(e.ns, "bench-kubectl", fixture.Container("x", "1m"))
		run1(b, "bench-kubectl", func(int) {
			if _, err := rb.Rollback(d, nil, 0, cmdutil.DryRunNone); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("function", func(b *testing.B) {
		u := undo.New(clientset.Wrap(cs), undo.Options{})
		ref := kinds.RefOf(kinds.Deployment, e.ns, "bench-function")
		run1(b, "bench-function", func(i int) {
			if _, err := u.Undo(ctx, undo.Request{Ref: ref, AlertIDs: []string{fmt.Sprintf("bench@%d", i)}}); err != nil {
				b.Fatal(err)
			}
		})
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
