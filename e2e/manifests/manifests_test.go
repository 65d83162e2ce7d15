// Package manifests tests the files that deploy alert-rollback: kservice.yaml (decoded
// strictly and checked by Knative's own validation), the RBAC it carries (the exact grants),
// func.yaml (against func's JSON schema), the Alertmanager configuration and the Prometheus rule
// (with the real amtool and promtool), and the RBAC on a real apiserver.
package manifests

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	authv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"knative.dev/pkg/apis"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
	"sigs.k8s.io/yaml"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
	"github.com/sre-kit/alert-rollback/internal/budget"
	"github.com/sre-kit/alert-rollback/internal/readme"
)

// koImage is the image kservice.yaml names, and resolvedImage what `ko resolve` puts in its
// place: a pushed image by digest.
const (
	koImage       = "ko://github.com/sre-kit/alert-rollback/cmd/rollback"
	resolvedImage = "registry.example/alert-rollback/rollback@sha256:0d3a5d1f6f1b0a7c9b8e7f6a5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c"
)

// The names every manifest agrees on.
const (
	name       = "alert-rollback"
	secretName = "alert-rollback-auth"
	secretKey  = "token"
)

// repoRoot returns the repository's root folder.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := cluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// readRepoFile returns the file at the slash-separated path rel under the repository root.
func readRepoFile(t testing.TB, rel string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// missingPrerequisite stops a test that cannot run here. Under `make test`
// (ROLLBACK_REQUIRE_TOOLS=1) that is a failure, so CI cannot pass by skipping; a plain
// `go test` skips, saying why.
func missingPrerequisite(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("ROLLBACK_REQUIRE_TOOLS") == "1" {
		t.Fatal(msg)
	}
	t.Skip("skipping: " + msg)
}

// splitDocuments splits a YAML stream into its documents, leaving out those that hold
// nothing but comments.
func splitDocuments(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		var content map[string]any
		if err := yaml.Unmarshal(doc, &content); err != nil {
			return nil, fmt.Errorf("document %d: %w", len(docs)+1, err)
		}
		if len(content) > 0 {
			docs = append(docs, doc)
		}
	}
}

// newObject returns an empty value of the Go type for a document's apiVersion and kind: the
// only kinds the manifests may hold.
func newObject(tm metav1.TypeMeta) (metav1.Object, error) {
	switch tm.APIVersion + ", " + tm.Kind {
	case "v1, ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "rbac.authorization.k8s.io/v1, Role":
		return &rbacv1.Role{}, nil
	case "rbac.authorization.k8s.io/v1, RoleBinding":
		return &rbacv1.RoleBinding{}, nil
	case "rbac.authorization.k8s.io/v1, ClusterRole":
		return &rbacv1.ClusterRole{}, nil
	case "rbac.authorization.k8s.io/v1, ClusterRoleBinding":
		return &rbacv1.ClusterRoleBinding{}, nil
	case "serving.knative.dev/v1, Service":
		return &servingv1.Service{}, nil
	case "coordination.k8s.io/v1, Lease":
		return &coordinationv1.Lease{}, nil
	}
	return nil, fmt.Errorf("unexpected object apiVersion %q kind %q", tm.APIVersion, tm.Kind)
}

// decodeStrict decodes one document into its Go type; a field the type does not have (a typo,
// a misplaced key) or a duplicate key is an error, as it is for `kubectl apply`.
func decodeStrict(doc []byte) (metav1.Object, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, err
	}
	obj, err := newObject(tm)
	if err != nil {
		return nil, err
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	return obj, nil
}

// decodeFile decodes every document of the repository file rel strictly, keyed "Kind/name".
func decodeFile(t testing.TB, rel string) map[string]metav1.Object {
	t.Helper()
	docs, err := splitDocuments(readRepoFile(t, rel))
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	objs := make(map[string]metav1.Object)
	for i, doc := range docs {
		obj, err := decodeStrict(doc)
		if err != nil {
			t.Fatalf("%s, document %d: %v", rel, i+1, err)
		}
		key := kindOf(obj) + "/" + obj.GetName()
		if _, dup := objs[key]; dup {
			t.Fatalf("%s: %s appears twice", rel, key)
		}
		objs[key] = obj
	}
	return objs
}

func kindOf(obj metav1.Object) string {
	switch obj.(type) {
	case *corev1.ServiceAccount:
		return "ServiceAccount"
	case *rbacv1.Role:
		return "Role"
	case *rbacv1.RoleBinding:
		return "RoleBinding"
	case *rbacv1.ClusterRole:
		return "ClusterRole"
	case *rbacv1.ClusterRoleBinding:
		return "ClusterRoleBinding"
	case *servingv1.Service:
		return "Service"
	case *coordinationv1.Lease:
		return "Lease"
	}
	return fmt.Sprintf("%T", obj)
}

// knativeService returns kservice.yaml's Knative Service, decoded strictly.
func knativeService(t testing.TB) *servingv1.Service {
	t.Helper()
	obj, ok := decodeFile(t, "kservice.yaml")["Service/"+name]
	if !ok {
		t.Fatalf("kservice.yaml has no Knative Service %q", name)
	}
	return obj.(*servingv1.Service)
}

func TestKServiceDocuments(t *testing.T) {
	objs := decodeFile(t, "kservice.yaml")

	var got []string
	for key, obj := range objs {
		got = append(got, key)
		// `kubectl apply -n NS` must decide the namespace: a namespace in the file would
		// either conflict with -n or silently win over it.
		if ns := obj.GetNamespace(); ns != "" {
			t.Errorf("%s names namespace %q; kservice.yaml must work in any namespace", key, ns)
		}
	}
	slices.Sort(got)
	want := []string{"Lease/" + budget.LeaseName, "Role/" + name, "RoleBinding/" + name, "Service/" + name, "ServiceAccount/" + name}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("kservice.yaml objects mismatch (-want +got):\n%s", diff)
	}

	// `kubectl apply -l app.kubernetes.io/component=rbac -f kservice.yaml`, the step before
	// `func deploy`, must select exactly the ServiceAccount, its permissions and the budget's
	// Lease (which the Role may update but not create).
	var rbac []string
	for key, obj := range objs {
		if obj.GetLabels()["app.kubernetes.io/component"] == "rbac" {
			rbac = append(rbac, key)
		}
	}
	slices.Sort(rbac)
	wantRBAC := []string{"Lease/" + budget.LeaseName, "Role/" + name, "RoleBinding/" + name, "ServiceAccount/" + name}
	if diff := cmp.Diff(wantRBAC, rbac); diff != "" {
		t.Errorf("objects labelled app.kubernetes.io/component=rbac mismatch (-want +got):\n%s", diff)
	}
}

// TestDecodeStrict proves the strict decoding above can fail: a typo, a misplaced field and an
// unexpected kind are each rejected.
func TestDecodeStrict(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		wantErr string // substring; "" means it must decode
	}{
		{
			name: "valid service account",
			doc:  "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: x\n",
		},
		{
			name:    "unknown field",
			doc:     "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: x\n  labelz: {}\n",
			wantErr: `unknown field "labelz"`,
		},
		{
			name: "field at the wrong level",
			doc: "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: x\n" +
				"spec:\n  template:\n    spec:\n      containers:\n      - image: x\n    serviceAccountName: x\n",
			wantErr: `unknown field "serviceAccountName"`,
		},
		{
			name:    "duplicate key",
			doc:     "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: x\n  name: y\n",
			wantErr: "already set",
		},
		{
			name:    "unexpected kind",
			doc:     "apiVersion: v1\nkind: Secret\nmetadata:\n  name: x\n",
			wantErr: "unexpected object",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeStrict([]byte(tt.doc))
			checkErr(t, err, tt.wantErr)
		})
	}
}

// checkErr fails t unless err matches want: nil for "", else an error containing want.
func checkErr(t testing.TB, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("error = %v; want none", err)
	case want != "" && err == nil:
		t.Errorf("error = nil; want one containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Errorf("error = %v; want one containing %q", err, want)
	}
}

// knativeValidate does to svc what Knative's admission webhooks do to a Service being created:
// the defaulting webhook's SetDefaults, then the validating webhook's Validate, both within a
// create by a user. Without a config store in the context both use Knative's default
// configuration (config-defaults, config-features, config-autoscaler), as on a fresh install.
// It returns the blocking errors and, separately, the warnings (which kubectl prints).
func knativeValidate(svc *servingv1.Service) (errs, warnings *apis.FieldError) {
	ctx := apis.WithinCreate(context.Background())
	ctx = apis.WithUserInfo(ctx, &authv1.UserInfo{Username: "deployer@example.com"})
	svc.SetDefaults(ctx)
	all := svc.Validate(ctx)
	return all.Filter(apis.ErrorLevel), all.Filter(apis.WarningLevel)
}

func TestKnativeValidate(t *testing.T) {
	container := func(s *servingv1.Service) *corev1.Container { return &s.Spec.Template.Spec.Containers[0] }
	tests := []struct {
		name      string
		unchanged bool                     // leave the ko:// image as it is in the file
		mutate    func(*servingv1.Service) // applied after the image is resolved
		wantErr   string                   // substring of the errors; "" means none
		wantWarn  string                   // substring of the warnings; "" means none
	}{
		{
			name:   "as shipped, after ko resolve",
			mutate: func(*servingv1.Service) {},
		},
		{
			// Knative's webhook accepts the unresolved ko:// reference (it parses as an image
			// name), so only `ko resolve` or the README's instructions stand between it and a
			// Revision that never becomes ready. The case documents that.
			name:      "as shipped, unresolved ko:// image",
			unchanged: true,
		},
		{
			name:    "unparseable image reference",
			mutate:  func(s *servingv1.Service) { container(s).Image = "registry.example/Alert Rollback:latest" },
			wantErr: "Failed to parse image reference",
		},
		{
			// Why the securityContext is on the container: the pod-level one is disabled by
			// default (feature kubernetes.podspec-securitycontext).
			name: "pod-level securityContext",
			mutate: func(s *servingv1.Service) {
				s.Spec.Template.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: container(s).SecurityContext.RunAsNonRoot}
			},
			wantErr: "must not set the field(s): spec.template.spec.securityContext",
		},
		{
			name: "added capability",
			mutate: func(s *servingv1.Service) {
				container(s).SecurityContext.Capabilities.Add = []corev1.Capability{"NET_ADMIN"}
			},
			wantErr: "capabilities.add",
		},
		{
			name:     "no securityContext",
			mutate:   func(s *servingv1.Service) { container(s).SecurityContext = nil },
			wantWarn: "Kubernetes default value is insecure",
		},
		{
			// Why the function reads its memory limit from the cgroup: Knative refuses the
			// Downward API's resourceFieldRef in env (feature kubernetes.podspec-fieldref).
			name: "memory limit through the Downward API",
			mutate: func(s *servingv1.Service) {
				container(s).Env = append(container(s).Env, corev1.EnvVar{Name: "GOMEMLIMIT", ValueFrom: &corev1.EnvVarSource{
					ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory"},
				}})
			},
			wantErr: "resourceFieldRef",
		},
		{
			name: "probe on a port other than the serving one",
			mutate: func(s *servingv1.Service) {
				container(s).LivenessProbe.HTTPGet.Port = intstr.FromString("metrics")
			},
			wantErr: "Probe port must match container port",
		},
		{
			name:    "timeout above Knative's maximum",
			mutate:  func(s *servingv1.Service) { s.Spec.Template.Spec.TimeoutSeconds = ptrTo[int64](3600) },
			wantErr: "timeoutSeconds",
		},
		{
			name: "max-scale below min-scale",
			mutate: func(s *servingv1.Service) {
				s.Spec.Template.Annotations["autoscaling.knative.dev/min-scale"] = "5"
				s.Spec.Template.Annotations["autoscaling.knative.dev/max-scale"] = "2"
			},
			wantErr: "max-scale",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := knativeService(t)
			if !tt.unchanged {
				if got := container(svc).Image; got != koImage {
					t.Fatalf("image = %q; want %q (the test resolves it as ko would)", got, koImage)
				}
				container(svc).Image = resolvedImage
				tt.mutate(svc)
			}
			errs, warnings := knativeValidate(svc)
			checkFieldError(t, "error", errs, tt.wantErr)
			checkFieldError(t, "warning", warnings, tt.wantWarn)
		})
	}
}

func checkFieldError(t testing.TB, what string, fe *apis.FieldError, want string) {
	t.Helper()
	switch {
	case want == "" && fe != nil:
		t.Errorf("Validate() %ss:\n%v\nwant none", what, fe)
	case want != "" && fe == nil:
		t.Errorf("Validate() %ss: none; want one containing %q", what, want)
	case want != "" && !strings.Contains(fe.Error(), want):
		t.Errorf("Validate() %ss:\n%v\nwant one containing %q", what, fe, want)
	}
}

func ptrTo[T any](v T) *T { return &v }

// contractEnv lists every environment variable the function reads, so a misspelt name in a
// manifest (which the function would silently ignore) is caught. TestContractEnvIsReadme
// keeps it the README's settings table, which the root module's TestReadmeSettings keeps
// what the code reads.
var contractEnv = []string{
	"ROLLBACK_AUTH_TOKEN", "ROLLBACK_AUTH_TOKEN_FILE", "ROLLBACK_ALLOW_UNAUTHENTICATED",
	"ROLLBACK_MATCH", "ROLLBACK_NAMESPACES", "ROLLBACK_MAX_BODY_BYTES", "ROLLBACK_COOLDOWN",
	"ROLLBACK_MAX_TARGETS", "ROLLBACK_MAX_ALERTS", "ROLLBACK_DRY_RUN", "ROLLBACK_API_TIMEOUT", "ROLLBACK_MAX_AGE",
	"ROLLBACK_DEFAULT_NAMESPACE", "ROLLBACK_READ_PODS", "ROLLBACK_BUDGET", "ROLLBACK_GITOPS", "ROLLBACK_ARGOCD_NAMESPACE",
	"ROLLBACK_MAX_CONCURRENT",
}

// TestContractEnvIsReadme checks that contractEnv is exactly the ROLLBACK_* settings the
// README documents (the first column of the table under "## Settings"): a documented
// setting a manifest may not use, or an allowed one nobody can look up, fails here.
func TestContractEnvIsReadme(t *testing.T) {
	rows, err := readme.Table(filepath.Join(repoRoot(t), "README.md"), "## Settings")
	if err != nil {
		t.Fatal(err)
	}
	setting := regexp.MustCompile("`(ROLLBACK_[A-Z0-9_]+)`")
	var documented []string
	for _, row := range rows {
		for _, m := range setting.FindAllStringSubmatch(row[0], -1) {
			documented = append(documented, m[1])
		}
	}
	if len(documented) == 0 {
		t.Fatal("README.md: no ROLLBACK_* rows in the settings table")
	}
	if diff := cmp.Diff(slices.Sorted(slices.Values(documented)), slices.Sorted(slices.Values(contractEnv))); diff != "" {
		t.Errorf("contractEnv differs from README.md's settings table (-README +contractEnv):\n%s", diff)
	}
}

// TestKnativeServiceContract checks what the function and its users rely on, which Knative's
// validation cannot know.
func TestKnativeServiceContract(t *testing.T) {
	svc := knativeService(t)
	spec := svc.Spec.Template.Spec
	if n := len(spec.Containers); n != 1 {
		t.Fatalf("%d containers; want 1", n)
	}
	c := spec.Containers[0]
	env := make(map[string]corev1.EnvVar)
	for _, e := range c.Env {
		env[e.Name] = e
	}

	checks := []struct {
		name string
		ok   bool
		got  any
	}{
		{"name", svc.Name == name, svc.Name},
		{"cluster-local visibility", svc.Labels["networking.knative.dev/visibility"] == "cluster-local", svc.Labels},
		{"scales to zero", svc.Spec.Template.Annotations["autoscaling.knative.dev/min-scale"] == "0", svc.Spec.Template.Annotations},
		{"max-scale between 1 and 10", between(svc.Spec.Template.Annotations["autoscaling.knative.dev/max-scale"], 1, 10), svc.Spec.Template.Annotations},
		{"own ServiceAccount", spec.ServiceAccountName == name, spec.ServiceAccountName},
		{"ko image of cmd/rollback", c.Image == koImage, c.Image},
		{"serves on 8080", len(c.Ports) == 1 && c.Ports[0].ContainerPort == 8080, c.Ports},
		{"readiness probe", c.ReadinessProbe != nil && c.ReadinessProbe.HTTPGet != nil && c.ReadinessProbe.HTTPGet.Path == "/health/readiness", c.ReadinessProbe},
		{"liveness probe", c.LivenessProbe != nil && c.LivenessProbe.HTTPGet != nil && c.LivenessProbe.HTTPGet.Path == "/health/liveness", c.LivenessProbe},
		{"timeout at most 30s", spec.TimeoutSeconds != nil && *spec.TimeoutSeconds > 0 && *spec.TimeoutSeconds <= 30, spec.TimeoutSeconds},
		{"bounded concurrency", spec.ContainerConcurrency != nil && *spec.ContainerConcurrency > 0, spec.ContainerConcurrency},
		{"token from the Secret", tokenFromSecret(env["ROLLBACK_AUTH_TOKEN"]), env["ROLLBACK_AUTH_TOKEN"]},
		{"no token inline or from a file", env["ROLLBACK_AUTH_TOKEN"].Value == "" && env["ROLLBACK_AUTH_TOKEN_FILE"].Name == "", c.Env},
		{"authentication not disabled", env["ROLLBACK_ALLOW_UNAUTHENTICATED"].Name == "", c.Env},
		{"own namespace only", env["ROLLBACK_NAMESPACES"].Name == "", c.Env},
		{"matches the Alertmanager route", env["ROLLBACK_MATCH"].Value == "severity=rollback", env["ROLLBACK_MATCH"]},
		{"no envFrom", len(c.EnvFrom) == 0, c.EnvFrom},
		{"resources requested and limited", resourcesBounded(c.Resources), c.Resources},
		{"restricted securityContext", restricted(c.SecurityContext), c.SecurityContext},
	}
	for _, e := range c.Env {
		checks = append(checks, struct {
			name string
			ok   bool
			got  any
		}{"known variable " + e.Name, slices.Contains(contractEnv, e.Name), e.Name})
	}
	for _, check := range checks {
		if !check.ok {
			t.Errorf("%s: got %+v", check.name, check.got)
		}
	}
}

func between(s string, lo, hi int) bool {
	n, err := strconv.Atoi(s)
	return err == nil && lo <= n && n <= hi
}

func tokenFromSecret(e corev1.EnvVar) bool {
	if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
		return false
	}
	ref := e.ValueFrom.SecretKeyRef
	// Not optional: a missing Secret must keep the pod from starting, never leave it without
	// a token.
	return ref.Name == secretName && ref.Key == secretKey && (ref.Optional == nil || !*ref.Optional)
}

func resourcesBounded(r corev1.ResourceRequirements) bool {
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := r.Requests[res]
		lim, okLim := r.Limits[res]
		if !okReq || !okLim || req.Cmp(lim) > 0 || lim.Cmp(resource.MustParse("0")) <= 0 {
			return false
		}
	}
	return true
}

// restricted reports whether sc satisfies the "restricted" Pod Security Standard on its own.
func restricted(sc *corev1.SecurityContext) bool {
	return sc != nil &&
		sc.RunAsNonRoot != nil && *sc.RunAsNonRoot &&
		sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem &&
		sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation &&
		sc.Capabilities != nil && slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) && len(sc.Capabilities.Add) == 0 &&
		sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault &&
		(sc.Privileged == nil || !*sc.Privileged)
}
