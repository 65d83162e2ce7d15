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
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sre-kit/alert-rollback/alert"
	"github.com/sre-kit/alert-rollback/internal/fixture"
	"github.com/sre-kit/alert-rollback/report"
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
	cfg := map[string]string{"ROLLBACK_AUTH_TOKEN": testToken}
	for k, v := range env {
		cfg[k] = v
	}
	f := New()
	f.newClient = func(config) (kubernetes.Interface, string, error) { return client, ownNamespace, nil }
	f.newLogger = zap.NewNop().Sugar
	if err := f.Start(context.Background(), cfg); err != nil {
		t.Fatalf("Start() = %v", err)
	}
	return f
}

// firing is a firing alert that matches the default ROLLBACK_MATCH, with labels given as
// key, value pairs.
func firing(kv ...string) alert.Alert {
	a := alert.Alert{
		Status:      "firing",
		Labels:      map[string]string{"alertname": "KubePodUnschedulable", "severity": "rollback"},
		StartsAt:    time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC),
		Fingerprint: fmt.Sprintf("fp%x", len(kv)),
	}
	for i := 0; i+1 < len(kv); i += 2 {
		a.Labels[kv[i]] = kv[i+1]
	}
	a.Fingerprint = fmt.Sprintf("%016x", len(strings.Join(kv, "/"))*7919)
	return a
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
	Action, Kind, Name string
	From, To           int64
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

	tests := []struct {
		name        string
		objects     []runtime.Object
		env         map[string]string
		reactors    func(*fake.Clientset)
		request     func() *http.Request
		wantStatus  int
		wantResults []want
		wantIgnored int
		wantImages  map[string]string // namespace/name -> image of the Deployment afterwards
		wantError   string            // in the body of a refused request
	}{
		{
			name:        "seed alert on a pod rolls its hyphenated Deployment back",
			objects:     objs,
			request:     func() *http.Request { return post(notification(firing("pod", badPod))) },
			wantStatus:  http.StatusOK,
			wantResults: []want{{"rolled-back", "Deployment", "checkout-api", 2, 1}},
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v1"},
		},
		{
			name:        "deployment label",
			objects:     objs,
			request:     func() *http.Request { return post(notification(firing("deployment", "checkout-api"))) },
			wantStatus:  http.StatusOK,
			wantResults: []want{{"rolled-back", "Deployment", "checkout-api", 2, 1}},
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v1"},
		},
		{
			name:        "replicaset label",
			objects:     objs,
			request:     func() *http.Request { return post(notification(firing("replicaset", rss[1].Name))) },
			wantStatus:  http.StatusOK,
			wantResults: []want{{"rolled-back", "Deployment", "checkout-api", 2, 1}},
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v1"},
		},
		{
			name:        "pod gone resolves through its ReplicaSet",
			objects:     objs,
			request:     func() *http.Request { return post(notification(firing("pod", gonePod))) },
			wantStatus:  http.StatusOK,
			wantResults: []want{{"rolled-back", "Deployment", "checkout-api", 2, 1}},
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v1"},
		},
		{
			name:        "a ReplicaSet not owned by a Deployment is refused",
			objects:     append(objs, orphanRS),
			request:     func() *http.Request { return post(notification(firing("replicaset", orphanRS.Name))) },
			wantStatus:  http.StatusOK,
			wantResults: []want{{"refused", "", "", 0, 0}},
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v2"},
		},
		{
			name:    "three alerts for one Deployment make one undo",
			objects: objs,
			request: func() *http.Request {
				return post(notification(firing("pod", badPod), firing("pod", gonePod, "x", "y"), firing("deployment", "checkout-api", "a", "b", "c", "d")))
			},
			wantStatus:  http.StatusOK,
			wantResults: []want{{"rolled-back", "Deployment", "checkout-api", 2, 1}},
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
			wantResults: []want{{"rolled-back", "Deployment", "checkout-api", 2, 1}, {"rolled-back", "Deployment", "checkout-api", 2, 1}},
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
			wantResults: []want{{"refused", "Deployment", "checkout-api", 0, 0}, {"refused", "Deployment", "checkout-api", 0, 0}},
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v2", "payments/checkout-api": "shop/checkout:v2"},
		},
		{
			name:    "a failed lookup counts toward ROLLBACK_MAX_TARGETS",
			objects: append(objs, otherObjs...),
			env:     map[string]string{"ROLLBACK_NAMESPACES": "shop,payments", "ROLLBACK_MAX_TARGETS": "1"},
			reactors: func(c *fake.Clientset) {
				c.PrependReactor("get", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
					if a.GetNamespace() == "payments" {
						return true, nil, apierrors.NewServiceUnavailable("apiserver overloaded")
					}
					return false, nil, nil
				})
			},
			request: func() *http.Request {
				return post(notification(firing("pod", badPod), firing("namespace", "payments", "pod", otherPod)))
			},
			wantStatus:  http.StatusOK,
			wantResults: []want{{"refused", "Deployment", "checkout-api", 0, 0}, {"refused", "", "", 0, 0}},
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v2", "payments/checkout-api": "shop/checkout:v2"},
		},
		{
			name:        "a namespace not allowed is refused and untouched",
			objects:     append(objs, otherObjs...),
			request:     func() *http.Request { return post(notification(firing("namespace", "payments", "pod", otherPod))) },
			wantStatus:  http.StatusOK,
			wantResults: []want{{"refused", "", "", 0, 0}},
			wantImages:  map[string]string{"payments/checkout-api": "shop/checkout:v2"},
		},
		{
			name:    "resolved and unmatched alerts are ignored",
			objects: objs,
			request: func() *http.Request {
				resolved := firing("pod", badPod)
				resolved.Status = "resolved"
				other := firing("pod", badPod)
				other.Labels["severity"] = "page"
				return post(notification(resolved, other))
			},
			wantStatus:  http.StatusOK,
			wantResults: []want{},
			wantIgnored: 2,
			wantImages:  map[string]string{"shop/checkout-api": "shop/checkout:v2"},
		},
		{
			name:        "an invalid name is refused before any API call",
			objects:     objs,
			request:     func() *http.Request { return post(notification(firing("deployment", "Checkout_API"))) },
			wantStatus:  http.StatusOK,
			wantResults: []want{{"refused", "", "", 0, 0}},
		},
		{
			name:        "an alert naming no workload is refused",
			objects:     objs,
			request:     func() *http.Request { return post(notification(firing("service", "checkout"))) },
			wantStatus:  http.StatusOK,
			wantResults: []want{{"refused", "", "", 0, 0}},
		},
		{
			name:        "the API failing answers 503 so Alertmanager retries",
			objects:     objs,
			reactors:    unavailable,
			request:     func() *http.Request { return post(notification(firing("deployment", "checkout-api"))) },
			wantStatus:  http.StatusServiceUnavailable,
			wantResults: []want{{"failed", "Deployment", "checkout-api", 0, 0}},
		},
		{
			name:    "unauthenticated",
			objects: objs,
			request: func() *http.Request {
				r := post(notification(firing("pod", badPod)))
				r.Header.Del("Authorization")
				return r
			},
			wantStatus: http.StatusUnauthorized,
			wantError:  "credentials",
			wantImages: map[string]string{"shop/checkout-api": "shop/checkout:v2"},
		},
		{
			name:    "wrong token",
			objects: objs,
			request: func() *http.Request {
				r := post(notification(firing("pod", badPod)))
				r.Header.Set("Authorization", "Bearer "+testToken+"x")
				return r
			},
			wantStatus: http.StatusUnauthorized,
			wantError:  "credentials",
			wantImages: map[string]string{"shop/checkout-api": "shop/checkout:v2"},
		},
		{
			name:    "oversized",
			objects: objs,
			env:     map[string]string{"ROLLBACK_MAX_BODY_BYTES": "512"},
			request: func() *http.Request {
				return post(notification(firing("pod", badPod, "pad", strings.Repeat("x", 600))))
			},
			wantStatus: http.StatusRequestEntityTooLarge,
			wantError:  "too large",
			wantImages: map[string]string{"shop/checkout-api": "shop/checkout:v2"},
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
			wantStatus: http.StatusRequestEntityTooLarge,
			wantError:  "too large",
		},
		{
			name:    "wrong method",
			objects: objs,
			request: func() *http.Request {
				r := post(nil)
				r.Method = http.MethodGet
				return r
			},
			wantStatus: http.StatusMethodNotAllowed,
			wantError:  "method",
		},
		{
			name:    "wrong content type",
			objects: objs,
			request: func() *http.Request {
				r := post(notification(firing("pod", badPod)))
				r.Header.Set("Content-Type", "text/plain")
				return r
			},
			wantStatus: http.StatusUnsupportedMediaType,
			wantError:  "content type",
			wantImages: map[string]string{"shop/checkout-api": "shop/checkout:v2"},
		},
		{
			name:       "malformed JSON",
			objects:    objs,
			request:    func() *http.Request { return post([]byte(`{"version":"4","alerts":[`)) },
			wantStatus: http.StatusBadRequest,
			wantError:  "malformed JSON",
		},
		{
			name:       "wrong version",
			objects:    objs,
			request:    func() *http.Request { return post([]byte(`{"version":"3","alerts":[{"status":"firing"}]}`)) },
			wantStatus: http.StatusBadRequest,
			wantError:  `version \"3\"`,
		},
		{
			name:       "no alerts",
			objects:    objs,
			request:    func() *http.Request { return post([]byte(`{"version":"4","alerts":[]}`)) },
			wantStatus: http.StatusBadRequest,
			wantError:  "no alerts",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset(tc.objects...)
			if tc.reactors != nil {
				tc.reactors(client)
			}
			f := start(t, client, tc.env)
			rec := httptest.NewRecorder()
			f.Handle(rec, tc.request())

			if rec.Code != tc.wantStatus {
				t.Fatalf("Handle() status = %d; want %d; body %s", rec.Code, tc.wantStatus, rec.Body)
			}
			if tc.wantError != "" {
				if !strings.Contains(rec.Body.String(), tc.wantError) {
					t.Errorf("Handle() body = %s; want it to mention %q", rec.Body, tc.wantError)
				}
				if w := writes(client); len(w) > 0 {
					t.Errorf("a refused request wrote to the cluster: %v", w)
				}
			}
			if tc.wantResults != nil {
				var resp report.Response
				if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
					t.Fatalf("decoding the answer %s: %v", rec.Body, err)
				}
				got := []want{}
				for _, r := range resp.Results {
					got = append(got, want{string(r.Action), r.Kind, r.Name, r.FromRevision, r.ToRevision})
				}
				if diff := cmp.Diff(tc.wantResults, got); diff != "" {
					t.Errorf("results mismatch (-want +got):\n%s\nbody: %s", diff, rec.Body)
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
		})
	}
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
			client := fake.NewClientset(objs...)
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
			var resp report.Response
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
	client := fake.NewClientset(objs...)
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
		{"body limit beyond 64 MiB", map[string]string{"ROLLBACK_AUTH_TOKEN": "t", "ROLLBACK_MAX_BODY_BYTES": "9223372036854775807"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := New()
			f.newClient = func(config) (kubernetes.Interface, string, error) { return fake.NewClientset(), "default", nil }
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
	f := start(t, fake.NewClientset(objs...), nil)
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
// mounted Secret is rotated in place; an emptied file keeps the last token.
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
	f := start(t, fake.NewClientset(objs...), map[string]string{"ROLLBACK_AUTH_TOKEN": "", "ROLLBACK_AUTH_TOKEN_FILE": path})
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
	}
	for i, s := range steps {
		if s.write != "" {
			write(s.write, now.Add(time.Duration(i)*time.Second))
		}
		if got := status(s.token); got != s.status {
			t.Errorf("%s: status %d; want %d", s.name, got, s.status)
		}
	}
}
