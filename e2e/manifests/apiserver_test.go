package manifests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
	"github.com/sre-kit/alert-rollback/internal/budget"
)

// knativeCRD is Knative Serving's Service CRD, in the shared folder.
const knativeCRD = "shared/knative/service-crd.yaml"

// TestRBACOnAPIServer applies kservice.yaml and deploy/cluster-wide/ to a real
// kube-apiserver (with Knative's Service CRD, so its schema is enforced) and asks the RBAC
// authorizer what the function's ServiceAccount may do. In particular it settles that the
// RoleBinding's subject needs no namespace: the apiserver takes the binding's own.
func TestRBACOnAPIServer(t *testing.T) {
	crd := sharedFile(t, knativeCRD)
	c := cluster.StartT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	kservice := filepath.Join(repoRoot(t), "kservice.yaml")

	kubectl := func(t *testing.T, args ...string) string {
		t.Helper()
		out, err := c.Kubectl(ctx, args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	kubectl(t, "apply", "-f", crd)
	if err := c.WaitEstablished(ctx, "services.serving.knative.dev"); err != nil {
		t.Fatal(err)
	}
	// shop is where the function is installed; batch is another team's namespace.
	const home, other = "shop", "batch"
	for _, ns := range []string{home, other} {
		if err := c.CreateNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("server-side dry run against Knative's schema", func(t *testing.T) {
		out := kubectl(t, "apply", "--dry-run=server", "-n", home, "-f", kservice, "-o", "name")
		want := []string{
			"serviceaccount/alert-rollback", "role.rbac.authorization.k8s.io/alert-rollback",
			"lease.coordination.k8s.io/alert-rollback-budget",
			"rolebinding.rbac.authorization.k8s.io/alert-rollback", "service.serving.knative.dev/alert-rollback",
		}
		if diff := cmp.Diff(want, strings.Fields(out)); diff != "" {
			t.Errorf("applied objects mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("server-side dry run rejects an unknown field", func(t *testing.T) {
		data := string(readRepoFile(t, "kservice.yaml"))
		const old = "          image: ko://"
		if !strings.Contains(data, old) {
			t.Fatalf("kservice.yaml has no %q", old)
		}
		broken := filepath.Join(t.TempDir(), "kservice.yaml")
		data = strings.Replace(data, old, "          imagePolicy: Always\n"+old, 1)
		if err := os.WriteFile(broken, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := c.Kubectl(ctx, "apply", "--dry-run=server", "-n", home, "-f", broken)
		checkErr(t, err, `unknown field "spec.template.spec.containers[0].imagePolicy"`)
	})

	t.Run("the rbac label selects what func deploy needs", func(t *testing.T) {
		out := kubectl(t, "apply", "--dry-run=server", "-n", home, "-l", "app.kubernetes.io/component=rbac", "-f", kservice, "-o", "name")
		want := []string{
			"serviceaccount/alert-rollback", "role.rbac.authorization.k8s.io/alert-rollback",
			"lease.coordination.k8s.io/alert-rollback-budget", "rolebinding.rbac.authorization.k8s.io/alert-rollback",
		}
		if diff := cmp.Diff(want, strings.Fields(out)); diff != "" {
			t.Errorf("selected objects mismatch (-want +got):\n%s", diff)
		}
	})

	kubectl(t, "apply", "-n", home, "-f", kservice)

	t.Run("the RoleBinding is stored without a subject namespace", func(t *testing.T) {
		rb, err := c.Clientset.RbacV1().RoleBindings(home).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rb.Subjects) != 1 || rb.Subjects[0].Namespace != "" {
			t.Errorf("subjects = %+v; want one, without a namespace", rb.Subjects)
		}
	})

	// can asks the authorizer whether the ServiceAccount alert-rollback of namespace saNS may
	// do g in namespace ns, with the groups a real token of it carries.
	can := func(t *testing.T, saNS, ns string, g grant) bool {
		t.Helper()
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   "system:serviceaccount:" + saNS + ":" + name,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + saNS, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: ns, Verb: g.Verb, Group: g.Group, Resource: g.Resource, Name: g.Name,
			},
		}}
		got, err := c.Clientset.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return got.Status.Allowed
	}
	// denied are requests the function never makes: none may be allowed anywhere.
	denied := []grant{
		{"apps", "deployments", "delete", ""}, {"apps", "deployments", "update", ""}, {"apps", "deployments", "create", ""},
		{"apps", "deployments", "watch", ""}, {"apps", "deployments", "list", ""}, {"apps", "replicasets", "patch", ""}, {"apps", "replicasets", "delete", ""},
		{"apps", "controllerrevisions", "get", ""}, {"events.k8s.io", "events", "create", ""},
		{"apps", "controllerrevisions", "patch", ""}, {"", "pods", "list", ""}, {"", "pods", "delete", ""},
		{"", "secrets", "get", ""}, {"", "secrets", "list", ""}, {"", "configmaps", "get", ""}, {"", "events", "delete", ""},
		{"rbac.authorization.k8s.io", "roles", "patch", ""},
		// The budget's Lease: no create (kservice.yaml ships it), no other Lease, no delete.
		{"coordination.k8s.io", "leases", "create", ""}, {"coordination.k8s.io", "leases", "list", ""},
		{"coordination.k8s.io", "leases", "get", "kube-scheduler"}, {"coordination.k8s.io", "leases", "update", "kube-scheduler"},
		{"coordination.k8s.io", "leases", "delete", budget.LeaseName}, {"coordination.k8s.io", "leases", "patch", budget.LeaseName},
	}
	type question struct {
		saNS, ns string
		g        grant
		want     bool
	}
	ask := func(t *testing.T, qs []question) {
		t.Helper()
		for _, q := range qs {
			if got := can(t, q.saNS, q.ns, q.g); got != q.want {
				t.Errorf("system:serviceaccount:%s:%s may %s %s.%s in %s: %v; want %v",
					q.saNS, name, q.g.Verb, q.g.Resource, q.g.Group, q.ns, got, q.want)
			}
		}
	}

	t.Run("namespaced install", func(t *testing.T) {
		var qs []question
		for _, g := range wantRoleGrants {
			qs = append(qs,
				question{home, home, g, true},   // its own namespace: exactly the grants
				question{home, other, g, false}, // nowhere else
				question{other, home, g, false}, // and not the same name from another namespace
			)
		}
		for _, g := range denied {
			qs = append(qs, question{home, home, g, false})
		}
		ask(t, qs)

		// And with a real token of the ServiceAccount, as the function's pod has.
		cfg, err := c.ConfigFor(ctx, home, name)
		if err != nil {
			t.Fatal(err)
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cs.AppsV1().ReplicaSets(home).List(ctx, metav1.ListOptions{}); err != nil {
			t.Errorf("list replicasets in %s with the function's token: %v; want allowed", home, err)
		}
		if _, err := cs.AppsV1().ReplicaSets(other).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("list replicasets in %s with the function's token: %v; want forbidden", other, err)
		}
		if _, err := cs.CoreV1().Secrets(home).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("list secrets in %s with the function's token: %v; want forbidden", home, err)
		}
	})

	// The ClusterRole alone grants nothing: it is bound per namespace (recommended) or
	// everywhere.
	kubectl(t, "apply", "-f", filepath.Join(repoRoot(t), "deploy/cluster-wide/rbac.yaml"))
	const third = "payments"
	if err := c.CreateNamespace(ctx, third); err != nil {
		t.Fatal(err)
	}

	t.Run("per-namespace install", func(t *testing.T) {
		rbac := string(readRepoFile(t, "deploy/cluster-wide/rbac.yaml"))
		// The documented command, as a user runs it, for one namespace.
		cmd := "kubectl -n APP_NS create rolebinding alert-rollback --clusterrole=alert-rollback \\\n#     --serviceaccount=NS:alert-rollback"
		if !strings.Contains(rbac, cmd) {
			t.Fatalf("deploy/cluster-wide/rbac.yaml does not document %q", cmd)
		}
		kubectl(t, "-n", other, "create", "rolebinding", name, "--clusterrole="+name, "--serviceaccount="+home+":"+name)
		t.Cleanup(func() { c.Kubectl(context.Background(), "-n", other, "delete", "rolebinding", name) })
		var qs []question
		for _, g := range wantGrants {
			qs = append(qs,
				question{home, other, g, true},          // the namespace bound
				question{home, third, g, false},         // not one that is not
				question{home, "kube-system", g, false}, // nor the system's
			)
		}
		for _, g := range denied {
			qs = append(qs, question{home, other, g, false})
		}
		ask(t, qs)
	})

	t.Run("cluster-wide install", func(t *testing.T) {
		data := string(readRepoFile(t, "deploy/cluster-wide/all-namespaces.yaml"))
		const old = "namespace: monitoring\n"
		if strings.Count(data, old) != 1 {
			t.Fatalf("deploy/cluster-wide/all-namespaces.yaml: %d lines %q; want 1 (its documented sed edits that line)", strings.Count(data, old), old)
		}
		edited := filepath.Join(t.TempDir(), "all-namespaces.yaml")
		if err := os.WriteFile(edited, []byte(strings.Replace(data, old, "namespace: "+home+"\n", 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		// Why that file, unlike kservice.yaml, names a namespace: without it the apiserver
		// refuses the ClusterRoleBinding.
		unnamed := filepath.Join(t.TempDir(), "all-namespaces.yaml")
		if err := os.WriteFile(unnamed, []byte(strings.Replace(data, "    "+old, "", 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := c.Kubectl(ctx, "apply", "--dry-run=server", "-f", unnamed)
		checkErr(t, err, "subjects[0].namespace: Required value")

		kubectl(t, "apply", "-f", edited)
		t.Cleanup(func() { c.Kubectl(context.Background(), "delete", "-f", edited) })

		// The documented patch that tells the function it may act everywhere.
		const patch = `[{"op":"add","path":"/spec/template/spec/containers/0/env/-","value":{"name":"ROLLBACK_NAMESPACES","value":"*"}}]`
		if !strings.Contains(data, "'"+patch+"'") {
			t.Fatalf("deploy/cluster-wide/all-namespaces.yaml does not document the patch %s", patch)
		}
		kubectl(t, "-n", home, "patch", "ksvc", name, "--type=json", "-p", patch)
		env := kubectl(t, "-n", home, "get", "ksvc", name, "-o", `jsonpath={range .spec.template.spec.containers[0].env[*]}{.name}={.value}{"\n"}{end}`)
		if !slices.Contains(strings.Fields(env), "ROLLBACK_NAMESPACES=*") {
			t.Errorf("env after the patch:\n%s\nwant ROLLBACK_NAMESPACES=*", env)
		}

		var qs []question
		for _, g := range wantGrants {
			qs = append(qs, question{home, other, g, true}, question{home, third, g, true}, question{other, other, g, false})
		}
		for _, g := range denied {
			qs = append(qs, question{home, other, g, false})
		}
		ask(t, qs)
	})

	t.Run("the wanted grants are what the Role says", func(t *testing.T) {
		// Guards the table above against drifting from the manifest: every grant of the Role
		// stored in the apiserver is in wantRoleGrants, and back.
		role, err := c.Clientset.RbacV1().Roles(home).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := grants(role.Rules)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, wantRoleGrants) {
			t.Errorf("stored Role grants %s; want %s", fmt.Sprint(got), fmt.Sprint(wantRoleGrants))
		}
	})
}
