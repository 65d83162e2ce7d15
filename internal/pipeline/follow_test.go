package pipeline

import (
	"context"
	"testing"

	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"

	"github.com/sre-kit/alert-rollback/internal/alert"
	"github.com/sre-kit/alert-rollback/internal/fixture"
	"github.com/sre-kit/alert-rollback/internal/kinds"
	"github.com/sre-kit/alert-rollback/internal/kube/clientset"
	"github.com/sre-kit/alert-rollback/internal/outcome"
	"github.com/sre-kit/alert-rollback/internal/target"
	"github.com/sre-kit/alert-rollback/internal/undo"
)

// TestRunFollowsWorkloadRef: an alert naming a Deployment that an Argo Rollout runs through
// its workloadRef is answered for the Rollout, which the undo acted on, and so is a copy of
// it, from memory; the Event goes to the Rollout too.
func TestRunFollowsWorkloadRef(t *testing.T) {
	ro, rss := fixture.Rollout(ownNamespace, "web", 0, "web:v1", "web:v2")
	d, _ := fixture.Deployment(ownNamespace, "web-app", "web:v2")
	d.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	d.Spec.Template = fixture.Template("web", "web:v2")
	d.Spec.Replicas = ptr.To[int32](0)
	unstructured.RemoveNestedField(ro.Object, "spec", "template")
	_ = unstructured.SetNestedMap(ro.Object, map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "name": d.Name}, "spec", "workloadRef")
	_ = unstructured.SetNestedField(ro.Object, "0", "status", "workloadObservedGeneration")

	c := fixture.Clientset(append(fixture.Objects(rss...), d)...)
	client := clientset.WrapDynamic(c, fixture.Dynamic(ro))
	m, err := alert.ParseMatcher(`severity="rollback"`)
	if err != nil {
		t.Fatal(err)
	}
	ev := &events{n: map[outcome.Reason]int{}}
	p := New(Config{MaxAlerts: 10, MaxTargets: 10, Match: m}, zap.NewNop().Sugar(),
		&target.Resolver{Client: client, OwnNamespace: ownNamespace}, undo.New(client, undo.Options{}), ev)

	a := firing(1, "deployment", "web-app")
	for _, want := range []outcome.Reason{outcome.ReasonRolledBack, outcome.ReasonAlreadyHandled} {
		resp := p.Run(context.Background(), &alert.Message{Alerts: []alert.Alert{a}})
		if len(resp.Results) != 1 {
			t.Fatalf("Run() = %+v; want one result", resp)
		}
		r := resp.Results[0]
		if r.Reason != want || r.Kind != kinds.Rollout.Kind || r.Name != "web" {
			t.Errorf("result %s %s/%s (%s): %s; want %s for Rollout web", r.Kind, r.Namespace, r.Name, r.Reason, r.Message, want)
		}
	}
	if ev.n[outcome.ReasonRolledBack] != 1 {
		t.Errorf("Events %v; want one rolled-back", ev.n)
	}
}
