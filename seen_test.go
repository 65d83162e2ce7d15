package function

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/sre-kit/alert-rollback/internal/fixture"
	"github.com/sre-kit/alert-rollback/internal/kinds"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.uber.org/zap"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sre-kit/alert-rollback/internal/kube"
	"github.com/sre-kit/alert-rollback/internal/kube/clientset"
	"github.com/sre-kit/alert-rollback/internal/outcome"
	"github.com/sre-kit/alert-rollback/internal/undo"
)

// countingEvents counts the Events the function records, by reason code.
type countingEvents struct {
	mu sync.Mutex
	n  map[outcome.Reason]int
}

func (c *countingEvents) Record(_ kinds.Ref, _ types.UID, r outcome.Result) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[r.Reason]++
}

func (c *countingEvents) RecordRelated(_ corev1.ObjectReference, r outcome.Result) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n["related "+r.Reason]++
}

func (c *countingEvents) Shutdown() {}

func (c *countingEvents) counts() map[outcome.Reason]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.n)
}

// handle sends body to f and returns the status and the (action, reason) of each result.
func handle(t *testing.T, f *Function, body []byte) (int, []string) {
	t.Helper()
	rec := httptest.NewRecorder()
	f.Handle(rec, post(body))
	var got []string
	for _, r := range decodeResults(t, rec) {
		got = append(got, string(r.Action)+" "+string(r.Reason))
	}
	return rec.Code, got
}

// heldRead holds the first Deployment read of a fake until release, so a test can act while
// a notification is in the middle of its undo.
type heldRead struct {
	entered, proceed chan struct{}
	once             sync.Once
}

func holdFirstDeploymentRead(c *fake.Clientset) *heldRead {
	h := &heldRead{entered: make(chan struct{}), proceed: make(chan struct{})}
	var first sync.Once
	c.PrependReactor("get", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) {
		first.Do(func() { close(h.entered); <-h.proceed })
		return false, nil, nil
	})
	return h
}

// waitEntered returns once the held read has begun; it fails the test if none does.
func (h *heldRead) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-h.entered:
	case <-time.After(10 * time.Second):
		h.release()
		t.Fatal("no notification read the Deployment")
	}
}

func (h *heldRead) release() { h.once.Do(func() { close(h.proceed) }) }

// sorted compares API actions as multisets: a pod and the Deployment its name points at
// are read at once, in either order.
var sorted = cmpopts.SortSlices(func(a, b string) bool { return a < b })

func decodeResults(t *testing.T, rec *httptest.ResponseRecorder) []outcome.Result {
	t.Helper()
	var resp outcome.Response
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatalf("decoding the answer %s: %v", rec.Body, err)
	}
	return resp.Results
}

// TestCopiesAnsweredFromMemory: a copy of an alert occurrence this process saw settle as
// handled is answered with no API call and no Event; anything else still asks the workload.
func TestCopiesAnsweredFromMemory(t *testing.T) {
	objs, badPod := brokenDeployment(ownNamespace)
	seed := firing("pod", badPod)
	// The same occurrence (fingerprint and startsAt) naming another workload label is not
	// a copy of it: it is looked up.
	otherLabel := seed
	otherLabel.Labels = map[string]string{"alertname": "KubePodUnschedulable", "severity": "rollback", "namespace": ownNamespace, "deployment": "checkout-api"}
	later := seed
	later.StartsAt = seed.StartsAt.Add(time.Hour)

	tests := []struct {
		name string
		env  map[string]string
		// handled, when set, is what the Deployment's state annotation lists as handled
		// before the first notification.
		handled     []string
		first, then []byte
		wantFirst   []string
		wantThen    []string
		// wantActions are the API actions of the second notification.
		wantActions []string
		wantEvents  map[outcome.Reason]int // over both notifications
	}{
		{
			name:        "a copy of a notification that rolled back",
			first:       notification(seed),
			then:        notification(seed),
			wantFirst:   []string{"rolled-back rolled-back"},
			wantThen:    []string{"skipped already-handled"},
			wantActions: none,
			wantEvents:  map[outcome.Reason]int{outcome.ReasonRolledBack: 1},
		},
		{
			name:        "a copy of a notification the workload's state said was handled",
			handled:     []string{seed.ID()},
			first:       notification(seed),
			then:        notification(seed),
			wantFirst:   []string{"skipped already-handled"},
			wantThen:    []string{"skipped already-handled"},
			wantActions: none,
			wantEvents:  map[outcome.Reason]int{},
		},
		{
			name:        "only the occurrences the state lists are remembered",
			handled:     []string{seed.ID()},
			first:       notification(seed, later),
			then:        notification(later),
			wantFirst:   []string{"skipped already-handled"},
			wantThen:    []string{"refused cooldown"},
			wantActions: readDeployment,
			wantEvents:  map[outcome.Reason]int{outcome.ReasonCooldown: 1},
		},
		{
			name:        "the same occurrence naming another workload label is looked up",
			first:       notification(seed),
			then:        notification(otherLabel),
			wantFirst:   []string{"rolled-back rolled-back"},
			wantThen:    []string{"skipped already-handled"},
			wantActions: readDeployment,
			wantEvents:  map[outcome.Reason]int{outcome.ReasonRolledBack: 1},
		},
		{
			name:        "a dry run is not remembered",
			env:         map[string]string{"ROLLBACK_DRY_RUN": "true"},
			first:       notification(seed),
			then:        notification(seed),
			wantFirst:   []string{"rolled-back dry-run"},
			wantThen:    []string{"rolled-back dry-run"},
			wantActions: undoDeployment,
			wantEvents:  map[outcome.Reason]int{outcome.ReasonDryRun: 2},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs := objs
			if tc.handled != nil {
				d := objs[len(objs)-2].(*appsv1.Deployment).DeepCopy()
				d.Annotations[undo.StateAnnotation] = fmt.Sprintf(`{"handled":%q,"last":{"at":%q,"fromRevision":3,"toRevision":2}}`,
					tc.handled, time.Now().UTC().Format(time.RFC3339))
				objs = append(append([]runtime.Object{}, objs[:len(objs)-2]...), d, objs[len(objs)-1])
			}
			client := fixture.Clientset(objs...)
			// The fake clientset applies dry-run patches; the API server does not.
			client.PrependReactor("patch", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
				if p, ok := a.(k8stesting.PatchActionImpl); ok && len(p.PatchOptions.DryRun) > 0 {
					o, err := client.Tracker().Get(a.GetResource(), a.GetNamespace(), p.Name)
					return true, o, err
				}
				return false, nil, nil
			})
			f := start(t, client, tc.env)
			ev := &countingEvents{n: map[outcome.Reason]int{}}
			f.state.Load().pipeline.Events = ev

			if status, got := handle(t, f, tc.first); status != http.StatusOK || !cmp.Equal(got, tc.wantFirst) {
				t.Fatalf("first notification: %d %v; want 200 %v", status, got, tc.wantFirst)
			}
			client.ClearActions()
			if status, got := handle(t, f, tc.then); status != http.StatusOK || !cmp.Equal(got, tc.wantThen) {
				t.Fatalf("second notification: %d %v; want 200 %v", status, got, tc.wantThen)
			}
			if diff := cmp.Diff(tc.wantActions, actions(client), sorted); diff != "" {
				t.Errorf("API actions of the second notification (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantEvents, ev.counts()); diff != "" {
				t.Errorf("Events (-want +got):\n%s", diff)
			}
		})
	}
}

// TestCopiesInFlightWait: copies that arrive while the first is being handled wait for it
// instead of reading the cluster themselves, then are answered from memory: the whole burst
// costs the API requests of one undo.
func TestCopiesInFlightWait(t *testing.T) {
	objs, badPod := brokenDeployment(ownNamespace)
	client := fixture.Clientset(objs...)
	hold := holdFirstDeploymentRead(client)
	f := start(t, client, nil)
	f.state.Load().pipeline.Events = &countingEvents{n: map[outcome.Reason]int{}}
	body := notification(firing("pod", badPod))

	const copies = 8
	results := make([][]string, copies)
	var wg sync.WaitGroup
	wg.Go(func() { _, results[0] = handle(t, f, body) })
	hold.waitEntered(t) // the first holds the occurrence, blocked in its Deployment read
	for i := 1; i < copies; i++ {
		wg.Go(func() { _, results[i] = handle(t, f, body) })
	}
	err := wait.PollUntilContextTimeout(context.Background(), time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return f.state.Load().pipeline.Waits() >= copies-1, nil
	})
	if err != nil {
		t.Fatalf("copies waiting: %d; want %d", f.state.Load().pipeline.Waits(), copies-1)
	}
	hold.release()
	wg.Wait()

	rolledBack, skipped := 0, 0
	for _, r := range results {
		switch {
		case cmp.Equal(r, []string{"rolled-back rolled-back"}):
			rolledBack++
		case cmp.Equal(r, []string{"skipped already-handled"}):
			skipped++
		default:
			t.Errorf("a copy got %v", r)
		}
	}
	if rolledBack != 1 || skipped != copies-1 {
		t.Errorf("%d rolled back, %d skipped; want 1 and %d", rolledBack, skipped, copies-1)
	}
	if diff := cmp.Diff(undoDeployment, actions(client), sorted); diff != "" {
		t.Errorf("API actions of the burst (-want +got):\n%s", diff)
	}
}

// TestPodAndDeploymentReadAtOnce: for an alert about a pod, the Deployment its name points
// at is read while the pod is, so the pod path takes the round trips of the workload's own.
// The pod read here answers only once the Deployment read has started: read one after the
// other, it would time out.
func TestPodAndDeploymentReadAtOnce(t *testing.T) {
	objs, badPod := brokenDeployment(ownNamespace)
	client := fixture.Clientset(objs...)
	gated := &gatedClient{Client: clientset.Wrap(client), deploymentRead: make(chan struct{})}
	f := New()
	f.newClient = func(config) (clients, error) {
		return clients{kube: gated, dynamic: newDynamic(), namespace: ownNamespace}, nil
	}
	f.newLogger = zap.NewNop().Sugar
	f.memoryLimit = noMemoryLimit
	if err := f.Start(context.Background(), map[string]string{"ROLLBACK_AUTH_TOKEN": testToken, "ROLLBACK_BUDGET": "off"}); err != nil {
		t.Fatal(err)
	}
	defer f.Stop(context.Background())
	f.state.Load().pipeline.Events = &countingEvents{n: map[outcome.Reason]int{}}
	if status, got := handle(t, f, notification(firing("pod", badPod))); status != http.StatusOK || !cmp.Equal(got, []string{"rolled-back rolled-back"}) {
		t.Fatalf("Handle() = %d %v; want 200 rolled-back", status, got)
	}
	if diff := cmp.Diff(undoDeployment, actions(client), sorted); diff != "" {
		t.Errorf("API actions (-want +got):\n%s", diff)
	}
}

// gatedClient holds a pod read until a Deployment read has started. (The fake clientset
// runs one action at a time, so its reactors cannot wait for each other.)
type gatedClient struct {
	kube.Client
	once           sync.Once
	deploymentRead chan struct{}
}

func (g *gatedClient) Deployments(ns string) kube.Object[*appsv1.Deployment, *appsv1.DeploymentList] {
	g.once.Do(func() { close(g.deploymentRead) })
	return g.Client.Deployments(ns)
}

func (g *gatedClient) Pods(ns string) kube.Object[*corev1.Pod, *corev1.PodList] {
	return gatedPods{g.Client.Pods(ns), g.deploymentRead}
}

type gatedPods struct {
	kube.Object[*corev1.Pod, *corev1.PodList]
	deploymentRead chan struct{}
}

func (p gatedPods) Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Pod, error) {
	select {
	case <-p.deploymentRead:
		return p.Object.Get(ctx, name, opts)
	case <-time.After(5 * time.Second):
		return nil, errors.New("the Deployment was not read while the pod was")
	}
}
