package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/sre-kit/alert-rollback/e2e/fixture"
	"github.com/sre-kit/alert-rollback/internal/outcome"
)

// TestKubectlParityControllerRevisions does for StatefulSets and DaemonSets what
// TestKubectlParity does for Deployments: `kubectl rollout undo` on one twin, the
// function on the other, the same template afterwards, and the same refusals.
func TestKubectlParityControllerRevisions(t *testing.T) {
	e := newEnv(t)
	f := e.startFunction("rollback", map[string]string{"ROLLBACK_COOLDOWN": "0s"})
	tests := []struct {
		kind        string
		revisions   int
		wantRefused string
	}{
		{"StatefulSet", 1, "no last revision"},
		{"StatefulSet", 2, ""},
		{"StatefulSet", 3, ""},
		{"DaemonSet", 1, "no last revision"},
		{"DaemonSet", 2, ""},
		{"DaemonSet", 3, ""},
	}
	for i, tc := range tests {
		t.Run(fmt.Sprintf("%s with %d revisions", tc.kind, tc.revisions), func(t *testing.T) {
			ctx := context.Background()
			kind := strings.ToLower(tc.kind)
			names := [2]string{fmt.Sprintf("kubectl-%d", i), fmt.Sprintf("function-%d", i)}
			for _, name := range names {
				e.revisionRollout(tc.kind, name, tc.revisions)
			}
			out, kubectlErr := kube.Kubectl(ctx, "rollout", "undo", "-n", e.ns, kind+"/"+names[0])
			status, resp, err := f.Post(ctx, notification(alertWith(map[string]string{
				"alertname": "Parity", "severity": "rollback", "namespace": e.ns, kind: names[1],
			}, time.Now())), e.token)
			if err != nil || status != http.StatusOK || len(resp.Results) != 1 {
				t.Fatalf("function = %d %+v %v; want 200 and one result", status, resp, err)
			}
			r := resp.Results[0]
			want := int64(tc.revisions + 1)
			if tc.wantRefused != "" {
				if kubectlErr == nil || !strings.Contains(kubectlErr.Error()+out, tc.wantRefused) {
					t.Errorf("kubectl = %v %q; want a refusal saying %q", kubectlErr, out, tc.wantRefused)
				}
				if r.Action != "refused" {
					t.Errorf("function = %s %q; want refused", r.Action, r.Message)
				}
				want--
			} else if kubectlErr != nil || r.Action != "rolled-back" || r.Kind != tc.kind {
				t.Fatalf("kubectl = %v %s; function = %+v; want both to roll back", kubectlErr, out, r)
			}
			for _, name := range names {
				if err := fixture.WaitControllerRevision(ctx, e.cs, e.ns, name, want); err != nil {
					t.Fatal(err)
				}
			}
			a, b := e.podTemplate(tc.kind, names[0]), e.podTemplate(tc.kind, names[1])
			if !fixture.SameTemplate(relabel(a, names[0]), relabel(b, names[1])) {
				t.Errorf("templates differ:\nkubectl:  %+v\nfunction: %+v", a, b)
			}
		})
	}
}

// TestKubectlParityAlreadyAtTarget: with the controllers paused, the Deployment's template
// is set back to revision 1's before any revision records it. kubectl then skips ("current
// template already matches revision 1"), and so does the function; neither writes.
func TestKubectlParityAlreadyAtTarget(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	f := e.startFunction("rollback", map[string]string{"ROLLBACK_COOLDOWN": "0s"})
	names := [2]string{"kubectl-twin", "function-twin"}
	for _, name := range names {
		e.rollout(name, nil, false, []step{{image: "registry.invalid/app:v1"}, {image: "registry.invalid/app:v2"}})
	}
	resume := kube.PauseControllers()
	defer func() {
		if err := resume(); err != nil {
			t.Fatal(err)
		}
	}()
	versions := map[string]string{}
	for _, name := range names {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			d := e.deployment(name)
			d.Spec.Template.Spec.Containers[0].Image = "registry.invalid/app:v1"
			d, err := e.cs.AppsV1().Deployments(e.ns).Update(ctx, d, metav1.UpdateOptions{})
			if err == nil {
				versions[name] = d.ResourceVersion
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	out, err := kube.Kubectl(ctx, "rollout", "undo", "-n", e.ns, "deployment/"+names[0])
	if err != nil || !strings.Contains(out, "current template already matches revision") {
		t.Errorf("kubectl = %v %q; want it to skip", err, out)
	}
	status, resp, err := f.Post(ctx, notification(alertWith(map[string]string{
		"alertname": "Parity", "severity": "rollback", "namespace": e.ns, "deployment": names[1],
	}, time.Now())), e.token)
	if err != nil || status != http.StatusOK || len(resp.Results) != 1 || resp.Results[0].Action != "skipped" ||
		resp.Results[0].Reason != outcome.ReasonAlreadyAtTarget {
		t.Errorf("function = %d %+v %v; want skipped: already at revision 1", status, resp, err)
	}
	for _, name := range names {
		if got := e.deployment(name).ResourceVersion; got != versions[name] {
			t.Errorf("%s changed (resourceVersion %s -> %s); want no write", name, versions[name], got)
		}
	}
}

// revisionRollout creates a StatefulSet or DaemonSet and rolls out n revisions of it.
func (e *env) revisionRollout(kind, name string, n int) {
	e.t.Helper()
	ctx := context.Background()
	c := func(i int) corev1.Container {
		return fixture.Container(fmt.Sprintf("registry.invalid/%s:v%d", strings.ToLower(kind), i), "100m")
	}
	var err error
	switch kind {
	case "StatefulSet":
		_, err = e.cs.AppsV1().StatefulSets(e.ns).Create(ctx, fixture.StatefulSet(e.ns, name, c(1)), metav1.CreateOptions{})
	default:
		_, err = e.cs.AppsV1().DaemonSets(e.ns).Create(ctx, fixture.DaemonSet(e.ns, name, c(1)), metav1.CreateOptions{})
	}
	if err != nil {
		e.t.Fatal(err)
	}
	if err := fixture.WaitControllerRevision(ctx, e.cs, e.ns, name, 1); err != nil {
		e.t.Fatal(err)
	}
	for i := 2; i <= n; i++ {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			switch kind {
			case "StatefulSet":
				s, err := e.cs.AppsV1().StatefulSets(e.ns).Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					return err
				}
				s.Spec.Template.Spec.Containers[0] = c(i)
				_, err = e.cs.AppsV1().StatefulSets(e.ns).Update(ctx, s, metav1.UpdateOptions{})
				return err
			default:
				d, err := e.cs.AppsV1().DaemonSets(e.ns).Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					return err
				}
				d.Spec.Template.Spec.Containers[0] = c(i)
				_, err = e.cs.AppsV1().DaemonSets(e.ns).Update(ctx, d, metav1.UpdateOptions{})
				return err
			}
		})
		if err != nil {
			e.t.Fatal(err)
		}
		if err := fixture.WaitControllerRevision(ctx, e.cs, e.ns, name, int64(i)); err != nil {
			e.t.Fatal(err)
		}
	}
}

func (e *env) podTemplate(kind, name string) corev1.PodTemplateSpec {
	e.t.Helper()
	ctx := context.Background()
	if kind == "StatefulSet" {
		s, err := e.cs.AppsV1().StatefulSets(e.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			e.t.Fatal(err)
		}
		return s.Spec.Template
	}
	d, err := e.cs.AppsV1().DaemonSets(e.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return d.Spec.Template
}
