package cluster_test

import (
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
)

// release is a cut of Knative's release YAML with what KnativeManifests edits, and one
// object it must leave alone.
const release = `apiVersion: v1
kind: ConfigMap
metadata:
  name: config-autoscaler
  namespace: knative-serving
data:
  _example: |
    stable-window: "60s"
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: config-network
  namespace: knative-serving
data:
  _example: |
    ingress-class: "kourier.ingress.networking.knative.dev"
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: config-deployment
  namespace: knative-serving
data:
  queue-sidecar-image: ko://knative.dev/serving/cmd/queue
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: activator
  namespace: knative-serving
spec:
  template:
    spec:
      containers:
        - name: activator
          image: ko://knative.dev/serving/cmd/activator
`

func TestKnativeManifests(t *testing.T) {
	out, err := cluster.KnativeManifests([]byte(release))
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string]map[string]any{}
	for _, doc := range strings.Split(string(out), "---\n") {
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil || obj == nil {
			continue
		}
		docs[obj["metadata"].(map[string]any)["name"].(string)] = obj
	}
	data := func(name, key string) string {
		d, _ := docs[name]["data"].(map[string]any)
		s, _ := d[key].(string)
		return s
	}
	tests := []struct {
		name, configMap, key, want string
	}{
		{"stable window at its minimum", "config-autoscaler", "stable-window", "6s"},
		{"scale-to-zero grace at its minimum", "config-autoscaler", "scale-to-zero-grace-period", "6s"},
		{"the example kept", "config-autoscaler", "_example", "stable-window: \"60s\"\n"},
		{"Traefik as the ingress", "config-network", "ingress-class", "traefik.ingress.networking.knative.dev"},
		{"the queue-proxy built locally", "config-deployment", "queue-sidecar-image", "dev.local/knative/queue:v0.50.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := data(tt.configMap, tt.key); got != tt.want {
				t.Errorf("%s %s = %q; want %q", tt.configMap, tt.key, got, tt.want)
			}
		})
	}
	if !strings.Contains(string(out), "image: dev.local/knative/activator:v0.50.0") || strings.Contains(string(out), "ko://") {
		t.Errorf("images not all replaced:\n%s", out)
	}

	// An image the local build does not make is an error, not a Deployment that never starts.
	if _, err := cluster.KnativeManifests([]byte(release + "---\nkind: Deployment\nimage: ko://knative.dev/serving/cmd/other\n")); err == nil {
		t.Error("KnativeManifests accepted an image it cannot provide")
	}
}
