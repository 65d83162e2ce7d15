package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/google/go-cmp/cmp"

	"github.com/sre-kit/alert-rollback/e2e/fixture"
	"github.com/sre-kit/alert-rollback/internal/outcome"
)

// TestKubectlParity runs, for several rollout histories, `kubectl rollout undo` (the
// pinned kubectl) on one Deployment and the function on an identical twin: afterwards
// their pod templates (hash label aside) and the annotations kubectl shows are identical,
// and so are the refusals.
func TestKubectlParity(t *testing.T) {
	e := newEnv(t)
	f := e.startFunction("rollback", map[string]string{"ROLLBACK_COOLDOWN": "0s"})

	steps := func(n int) []step {
		var s []step
		for i := 1; i <= n; i++ {
			s = append(s, step{image: fmt.Sprintf("registry.invalid/app:v%d", i)})
		}
		return s
	}
	tests := []struct {
		name         string
		steps        []step
		historyLimit *int32
		paused       bool
		// wantRefused is the refusal both must give, in kubectl's words, which the
		// function's message repeats; "" for a rollback. wantReason is the function's code.
		wantRefused string
		wantReason  outcome.Reason
	}{
		{name: "one revision", steps: steps(1), wantRefused: "no rollout history found", wantReason: outcome.ReasonNoPreviousRevision},
		{name: "two revisions", steps: steps(2)},
		{name: "three revisions", steps: steps(3)},
		{name: "five revisions", steps: steps(5)},
		{name: "paused", steps: steps(2), paused: true, wantRefused: "resume it first with 'kubectl rollout resume'", wantReason: outcome.ReasonPaused},
		{name: "change-cause and other annotations", steps: []step{
			{image: "registry.invalid/app:v1", annotations: map[string]string{"kubernetes.io/change-cause": "deploy v1", "team": "checkout"}},
			{image: "registry.invalid/app:v2", annotations: map[string]string{"kubernetes.io/change-cause": "deploy v2", "ticket": "OPS-42"}},
		}},
		{name: "revisionHistoryLimit 1", steps: steps(4), historyLimit: ptr(int32(1))},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			names := [2]string{fmt.Sprintf("kubectl-%d", i), fmt.Sprintf("function-%d", i)}
			for _, name := range names {
				e.rollout(name, tc.historyLimit, tc.paused, tc.steps)
			}
			revision := int64(len(tc.steps))

			out, kubectlErr := kube.Kubectl(ctx, "rollout", "undo", "-n", e.ns, "deployment/"+names[0])
			status, resp, err := f.Post(ctx, notification(alertWith(map[string]string{
				"alertname": "Parity", "severity": "rollback", "namespace": e.ns, "deployment": names[1],
			}, time.Now())), e.token)
			if err != nil || status != http.StatusOK || len(resp.Results) != 1 {
				t.Fatalf("function = %d %+v %v; want 200 and one result", status, resp, err)
			}
			r := resp.Results[0]
			if tc.wantRefused != "" {
				if kubectlErr == nil || !strings.Contains(kubectlErr.Error()+out, tc.wantRefused) {
					t.Errorf("kubectl = %v %q; want a refusal saying %q", kubectlErr, out, tc.wantRefused)
				}
				if r.Action != outcome.Refused || r.Reason != tc.wantReason {
					t.Errorf("function = %s (%s) %q; want %s (%s)", r.Action, r.Reason, r.Message, outcome.Refused, tc.wantReason)
				}
				// The same advice as kubectl's, in its words.
				if !strings.Contains(r.Message, tc.wantRefused) {
					t.Errorf("function's message = %q; want it to say, as kubectl does, %q", r.Message, tc.wantRefused)
				}
				revision-- // nothing changes: compare as they are
			} else {
				if kubectlErr != nil {
					t.Fatalf("kubectl rollout undo: %v: %s", kubectlErr, out)
				}
				if r.Action != outcome.RolledBack || r.Reason != outcome.ReasonRolledBack {
					t.Fatalf("function = %s (%s) %q; want %s (%s)", r.Action, r.Reason, r.Message, outcome.RolledBack, outcome.ReasonRolledBack)
				}
			}
			// Both controllers must have made the next revision before comparing.
			for _, name := range names {
				if err := fixture.WaitDeploymentRevision(ctx, e.cs, e.ns, name, revision+1); err != nil {
					t.Fatal(err)
				}
			}
			a, b := e.deployment(names[0]), e.deployment(names[1])
			if !fixture.SameTemplate(relabel(a.Spec.Template, names[0]), relabel(b.Spec.Template, names[1])) {
				t.Errorf("templates differ:\nkubectl:  %+v\nfunction: %+v", a.Spec.Template, b.Spec.Template)
			}
			if diff := cmp.Diff(kubectlVisible(a.Annotations), kubectlVisible(b.Annotations)); diff != "" {
				t.Errorf("annotations differ (-kubectl +function):\n%s", diff)
			}
		})
	}
}

// step is one rollout: the image and the annotations the user sets on the Deployment.
type step struct {
	image       string
	annotations map[string]string
}

// rollout creates the Deployment at steps[0] and rolls out each later step, waiting for
// each revision.
func (e *env) rollout(name string, historyLimit *int32, paused bool, steps []step) {
	e.t.Helper()
	ctx := context.Background()
	d := fixture.Deployment(e.ns, name, fixture.Container(steps[0].image, "100m"))
	d.Spec.RevisionHistoryLimit = historyLimit
	d.Annotations = steps[0].annotations
	if _, err := e.cs.AppsV1().Deployments(e.ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	if err := fixture.WaitDeploymentRevision(ctx, e.cs, e.ns, name, 1); err != nil {
		e.t.Fatal(err)
	}
	for i, s := range steps[1:] {
		err := fixture.UpdateDeployment(ctx, e.cs, e.ns, name, int64(i+2), func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.Containers[0].Image = s.image
			for k, v := range s.annotations {
				d.Annotations[k] = v
			}
		})
		if err != nil {
			e.t.Fatal(err)
		}
	}
	if paused {
		err := fixture.UpdateDeployment(ctx, e.cs, e.ns, name, int64(len(steps)), func(d *appsv1.Deployment) { d.Spec.Paused = true })
		if err != nil {
			e.t.Fatal(err)
		}
	}
}

// relabel makes the twins' templates comparable: they differ only by their app label.
func relabel(t corev1.PodTemplateSpec, name string) corev1.PodTemplateSpec {
	t = *t.DeepCopy()
	if t.Labels["app"] == name {
		t.Labels["app"] = "twin"
	}
	return t
}

// kubectlVisible drops the function's own annotations (alert-rollback.dev/...), which
// kubectl neither writes nor reads.
func kubectlVisible(a map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		if !strings.HasPrefix(k, "alert-rollback.dev/") {
			out[k] = v
		}
	}
	return out
}

func ptr[T any](v T) *T { return &v }
