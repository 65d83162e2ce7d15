package kinds

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestKnativeTemplate: a Revision's template, read back without what Knative's controllers
// add, is the template of the Service that made it (same ID); a different spec, label or
// annotation is a different template; the template's revision name is never part of it.
func TestKnativeTemplate(t *testing.T) {
	spec := func(image string) map[string]any {
		return map[string]any{"containerConcurrency": int64(0), "timeoutSeconds": int64(300),
			"containers": []any{map[string]any{"name": "user-container", "image": image}}}
	}
	service := func(meta map[string]any, image string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{
			"template": map[string]any{"metadata": meta, "spec": spec(image)}}}}
	}
	revision := func(labels, annotations map[string]any, image string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"metadata": map[string]any{"name": "web-00002", "labels": labels, "annotations": annotations},
			"spec":     spec(image)}}
	}
	knative := map[string]any{
		configurationLabel: "web", configurationGenerationLabel: "2", serviceUIDLabel: "u",
		knativeGroup + "/service": "web", knativeGroup + "/configurationUID": "c", knativeGroup + "/routingState": "active",
	}
	with := func(m map[string]any, k, v string) map[string]any {
		out := map[string]any{k: v}
		for key, val := range m {
			out[key] = val
		}
		return out
	}
	tests := []struct {
		name string
		svc  *unstructured.Unstructured
		rev  *unstructured.Unstructured
		same bool
	}{
		{"Knative's labels and annotations are not the template's", service(nil, "app:v1"),
			revision(knative, map[string]any{knativeGroup + "/routes": "web", knativeGroup + "/creator": "admin"}, "app:v1"), true},
		{"a brought revision name is not part of it", service(map[string]any{"name": "web-green"}, "app:v1"), revision(knative, nil, "app:v1"), true},
		{"the template's own labels count", service(map[string]any{"labels": map[string]any{"team": "a"}}, "app:v1"),
			revision(with(knative, "team", "a"), nil, "app:v1"), true},
		{"another image", service(nil, "app:v2"), revision(knative, nil, "app:v1"), false},
		{"another label", service(map[string]any{"labels": map[string]any{"team": "a"}}, "app:v1"),
			revision(with(knative, "team", "b"), nil, "app:v1"), false},
		{"another annotation", service(nil, "app:v1"),
			revision(knative, map[string]any{"autoscaling.knative.dev/max-scale": "3"}, "app:v1"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := serviceTemplate(tc.svc)
			if err != nil {
				t.Fatal(err)
			}
			r, err := knativeTemplateOf(tc.rev)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.id == r.id && EqualIgnoreHash(s.compared, r.compared); got != tc.same {
				t.Errorf("same = %v; want %v\nservice:  %s\nrevision: %s", got, tc.same, s.raw, r.raw)
			}
		})
	}
}

// TestFollowsLatest: some traffic must go to the latest revision, in the form Knative's
// webhook defaults spec.traffic to.
func TestFollowsLatest(t *testing.T) {
	target := func(rev string, latest bool, percent int64) any {
		m := map[string]any{"latestRevision": latest, "percent": percent}
		if rev != "" {
			m["revisionName"] = rev
		}
		return m
	}
	tests := []struct {
		name    string
		traffic []any
		want    bool
	}{
		{"no spec.traffic", nil, true},
		{"all to the latest", []any{target("", true, 100)}, true},
		{"pinned to a name", []any{target("web-00001", false, 100)}, false},
		{"pinned, the latest only tagged", []any{target("web-00001", false, 100), target("", true, 0)}, false},
		{"a share to the latest", []any{target("web-00001", false, 90), target("", true, 10)}, true},
		{"the current revision by name", []any{target("web-00002", false, 100)}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svc := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{}}}
			if tc.traffic != nil {
				svc.Object["spec"].(map[string]any)["traffic"] = tc.traffic
			}
			if got := followsLatest(svc); got != tc.want {
				t.Errorf("followsLatest = %v; want %v", got, tc.want)
			}
		})
	}
}

// TestKnativeRollout: a Knative Service's rollout is done when it has observed its
// generation, is Ready, and its latest created revision is the latest Ready one and takes the
// latest revision's traffic; failed when its Configuration is not Ready.
func TestKnativeRollout(t *testing.T) {
	svc := func(observed int64, ready, configs, created, readyRev, traffic string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"metadata": map[string]any{"generation": int64(3)},
			"status": map[string]any{
				"observedGeneration": observed,
				"conditions": []any{
					map[string]any{"type": "Ready", "status": ready, "reason": "RevisionMissing"},
					map[string]any{"type": "ConfigurationsReady", "status": configs, "reason": "RevisionFailed", "message": "Revision web-00003 failed"},
				},
				"latestCreatedRevisionName": created, "latestReadyRevisionName": readyRev,
				"traffic": []any{map[string]any{"revisionName": traffic, "latestRevision": true, "percent": int64(100)}},
			},
		}}
	}
	tests := []struct {
		name         string
		svc          *unstructured.Unstructured
		done, failed bool
	}{
		{"done", svc(3, "True", "True", "web-00003", "web-00003", "web-00003"), true, false},
		{"generation not observed", svc(2, "True", "True", "web-00002", "web-00002", "web-00002"), false, false},
		{"new revision not Ready yet", svc(3, "Unknown", "Unknown", "web-00003", "web-00001", "web-00001"), false, false},
		{"traffic not moved yet", svc(3, "True", "True", "web-00003", "web-00003", "web-00001"), false, false},
		{"the revision failed", svc(3, "False", "False", "web-00003", "web-00001", "web-00001"), false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			done, failed, msg := knativeRollout(tc.svc)
			if done != tc.done || failed != tc.failed || msg == "" {
				t.Errorf("knativeRollout = %v, %v, %q; want done %v, failed %v", done, failed, msg, tc.done, tc.failed)
			}
		})
	}
}
