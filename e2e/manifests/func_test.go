package manifests

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
)

// funcSchemaRel is func.yaml's JSON schema, in the shared folder.
const funcSchemaRel = "shared/schemas/func_yaml-schema.json"

// sharedFile returns the path of rel (starting "shared/") in the shared/ folder beside the
// repository; without it the test cannot run.
func sharedFile(t testing.TB, rel string) string {
	t.Helper()
	path, err := cluster.SharedFile(strings.TrimPrefix(rel, "shared/"))
	if err != nil {
		missingPrerequisite(t, "%v", err)
	}
	return path
}

// funcSchema compiles func.yaml's JSON schema. Formats (created's date-time) are asserted, not
// only annotated.
func funcSchema(t testing.TB) *jsonschema.Schema {
	t.Helper()
	path := sharedFile(t, funcSchemaRel)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(path, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(path)
	if err != nil {
		t.Fatalf("compile %s: %v", path, err)
	}
	return sch
}

// validateFuncYAML validates a func.yaml document against the schema, as JSON.
func validateFuncYAML(sch *jsonschema.Schema, data []byte) error {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		return err
	}
	return sch.Validate(inst)
}

func TestFuncYAMLSchema(t *testing.T) {
	sch := funcSchema(t)
	shipped := string(readRepoFile(t, "func.yaml"))

	// edit returns func.yaml with old replaced by new, failing if old is not there (so a case
	// never silently tests the unchanged file).
	edit := func(t *testing.T, old, new string) string {
		t.Helper()
		if !strings.Contains(shipped, old) {
			t.Fatalf("func.yaml has no %q to replace", old)
		}
		return strings.Replace(shipped, old, new, 1)
	}
	tests := []struct {
		name    string
		doc     func(*testing.T) string
		wantErr string // substring of the validation error; "" means valid
	}{
		{name: "as shipped", doc: func(*testing.T) string { return shipped }},
		{
			name:    "unknown top-level field",
			doc:     func(t *testing.T) string { return edit(t, "runtime: go\n", "runtime: go\nruntimes: go\n") },
			wantErr: "runtimes",
		},
		{
			// The CLI's own spelling is serviceAccountName; a near miss must not pass.
			name:    "misspelt deploy field",
			doc:     func(t *testing.T) string { return edit(t, "  serviceAccountName:", "  serviceAccount:") },
			wantErr: "serviceAccount",
		},
		{
			name:    "created missing",
			doc:     func(t *testing.T) string { return edit(t, "created:", "# created:") },
			wantErr: "created",
		},
		{
			name:    "created not a date-time",
			doc:     func(t *testing.T) string { return edit(t, `created: "2026-11-26T00:00:00Z"`, `created: "yesterday"`) },
			wantErr: "date-time",
		},
		{
			// The CLI accepts `host`, but the schema does not list it.
			name:    "builder outside the schema's enum",
			doc:     func(t *testing.T) string { return edit(t, "builder: pack", "builder: host") },
			wantErr: "builder",
		},
		{
			name: "env given as a map",
			doc: func(t *testing.T) string {
				return edit(t, "  envs:\n", "  envs:\n    ROLLBACK_DRY_RUN: \"true\"\n  old_envs:\n")
			},
			wantErr: "envs",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, validateFuncYAML(sch, []byte(tt.doc(t))), tt.wantErr)
		})
	}
}

// funcFile is the part of func.yaml that must agree with kservice.yaml.
type funcFile struct {
	Name string `json:"name"`
	Run  struct {
		Envs []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"envs"`
	} `json:"run"`
	Deploy struct {
		ServiceAccountName string `json:"serviceAccountName"`
		Labels             []struct {
			Key   string `json:"key"`
			Value string `json:"value"`
		} `json:"labels"`
		HealthEndpoints struct {
			Liveness  string `json:"liveness"`
			Readiness string `json:"readiness"`
		} `json:"healthEndpoints"`
		Options struct {
			Scale struct {
				Min *int `json:"min"`
				Max *int `json:"max"`
			} `json:"scale"`
			Resources struct {
				Requests map[string]string `json:"requests"`
				Limits   struct {
					CPU         string `json:"cpu"`
					Memory      string `json:"memory"`
					Concurrency *int64 `json:"concurrency"`
				} `json:"limits"`
			} `json:"resources"`
		} `json:"options"`
	} `json:"deploy"`
}

// funcRuntimeOnly are func.yaml's settings that kservice.yaml has no use for: they keep
// func's runtime on loopback, behind Knative's queue-proxy, and have the function answer
// kubelet's liveness probe on the pod's address (liveness.go). cmd/rollback, which
// kservice.yaml runs, faces the network with limits of its own.
var funcRuntimeOnly = map[string]string{"LISTEN_ADDRESS": "127.0.0.1:8080", "ROLLBACK_LIVENESS_ADDRESS": ":8080"}

// TestFuncYAMLMatchesKService checks that `func deploy` and `kubectl apply -f kservice.yaml`
// deploy the same function: name, identity, visibility, scale, resources and environment.
func TestFuncYAMLMatchesKService(t *testing.T) {
	var f funcFile
	if err := yaml.Unmarshal(readRepoFile(t, "func.yaml"), &f); err != nil {
		t.Fatal(err)
	}
	svc := knativeService(t)
	c := svc.Spec.Template.Spec.Containers[0]

	// The environment, as func renders it: {{ secret:NAME:KEY }} becomes a secretKeyRef.
	render := func(value string) string {
		if ref, ok := strings.CutPrefix(strings.TrimSpace(value), "{{ secret:"); ok {
			return "secretKeyRef " + strings.Replace(strings.TrimSuffix(ref, " }}"), ":", "/", 1)
		}
		return value
	}
	funcEnv := make(map[string]string)
	for _, e := range f.Run.Envs {
		funcEnv[e.Name] = render(e.Value)
	}
	for name, want := range funcRuntimeOnly {
		if got := funcEnv[name]; got != want {
			t.Errorf("func.yaml: %s=%q; want %q", name, got, want)
		}
		delete(funcEnv, name)
	}
	svcEnv := make(map[string]string)
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			svcEnv[e.Name] = "secretKeyRef " + e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
			continue
		}
		svcEnv[e.Name] = e.Value
	}
	if diff := cmp.Diff(svcEnv, funcEnv); diff != "" {
		t.Errorf("environment: func.yaml differs from kservice.yaml (-kservice +func):\n%s", diff)
	}

	funcLabels := make(map[string]string)
	for _, l := range f.Deploy.Labels {
		funcLabels[l.Key] = l.Value
	}
	intString := func(p *int) string {
		if p == nil {
			return "<unset>"
		}
		return strconv.Itoa(*p)
	}
	quantity := func(rl corev1.ResourceList, name corev1.ResourceName) string {
		q := rl[name]
		return q.String()
	}
	pairs := []struct {
		name            string
		kservice, fnval any
	}{
		{"name", svc.Name, f.Name},
		{"serviceAccountName", svc.Spec.Template.Spec.ServiceAccountName, f.Deploy.ServiceAccountName},
		{"visibility label", svc.Labels["networking.knative.dev/visibility"], funcLabels["networking.knative.dev/visibility"]},
		{"min-scale", svc.Spec.Template.Annotations["autoscaling.knative.dev/min-scale"], intString(f.Deploy.Options.Scale.Min)},
		{"max-scale", svc.Spec.Template.Annotations["autoscaling.knative.dev/max-scale"], intString(f.Deploy.Options.Scale.Max)},
		{"containerConcurrency", *svc.Spec.Template.Spec.ContainerConcurrency, derefOr(f.Deploy.Options.Resources.Limits.Concurrency, -1)},
		{"requests.cpu", quantity(c.Resources.Requests, corev1.ResourceCPU), f.Deploy.Options.Resources.Requests["cpu"]},
		{"requests.memory", quantity(c.Resources.Requests, corev1.ResourceMemory), f.Deploy.Options.Resources.Requests["memory"]},
		{"limits.cpu", quantity(c.Resources.Limits, corev1.ResourceCPU), f.Deploy.Options.Resources.Limits.CPU},
		{"limits.memory", quantity(c.Resources.Limits, corev1.ResourceMemory), f.Deploy.Options.Resources.Limits.Memory},
		{"liveness path", c.LivenessProbe.HTTPGet.Path, f.Deploy.HealthEndpoints.Liveness},
		{"readiness path", c.ReadinessProbe.HTTPGet.Path, f.Deploy.HealthEndpoints.Readiness},
	}
	for _, p := range pairs {
		if !cmp.Equal(p.kservice, p.fnval) {
			t.Errorf("%s: kservice.yaml has %v, func.yaml %v", p.name, p.kservice, p.fnval)
		}
	}
}

func derefOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}
