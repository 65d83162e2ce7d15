package manifests

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/sre-kit/alert-rollback/internal/budget"
	"github.com/sre-kit/alert-rollback/internal/kinds"
)

// grant is one permission: verb on resource in API group ("" is the core group), on the
// object Name only when it is set (resourceNames).
type grant struct {
	Group, Resource, Verb string
	Name                  string
}

// wantGrants is every API call the function makes on workloads, and so everything the
// ClusterRole of deploy/cluster-wide/rbac.yaml may allow: what each kind declares it needs
// (kinds.Rules), reading pods to follow their owners, and writing Events.
var wantGrants = func() []grant {
	var gs []grant
	add := func(group string, resources, verbs []string) {
		for _, r := range resources {
			for _, v := range verbs {
				gs = append(gs, grant{group, r, v, ""})
			}
		}
	}
	for _, r := range kinds.Rules() {
		add(r.Group, r.Resources, r.Verbs)
	}
	add("", []string{"pods"}, []string{"get"})
	add("", []string{"events"}, []string{"create", "patch"})
	slices.SortFunc(gs, compareGrants)
	return slices.Compact(gs)
}()

// wantRoleGrants is everything kservice.yaml's Role may allow: the same, plus reading and
// updating the budget's Lease in the function's own namespace, by name.
var wantRoleGrants = func() []grant {
	gs := slices.Clone(wantGrants)
	for _, v := range []string{"get", "update"} {
		gs = append(gs, grant{"coordination.k8s.io", "leases", v, budget.LeaseName})
	}
	slices.SortFunc(gs, compareGrants)
	return gs
}()

func compareGrants(a, b grant) int {
	return strings.Compare(a.Group+"/"+a.Resource+"/"+a.Verb+"/"+a.Name, b.Group+"/"+b.Resource+"/"+b.Verb+"/"+b.Name)
}

// grants expands rules into the sorted set of grants they allow. Anything a set of grants
// cannot express exactly (wildcards, non-resource URLs, resourceNames with a verb they cannot
// limit) is an error: it would allow more, or other, than the list says.
func grants(rules []rbacv1.PolicyRule) ([]grant, error) {
	var gs []grant
	for i, r := range rules {
		if len(r.NonResourceURLs) > 0 {
			return nil, fmt.Errorf("rule %d: nonResourceURLs", i)
		}
		names := r.ResourceNames
		if len(names) == 0 {
			names = []string{""}
		} else if slices.ContainsFunc(r.Verbs, func(v string) bool { return v == "create" || v == "list" || v == "watch" || v == "deletecollection" }) {
			// The authorizer knows no object name for these: resourceNames would not limit them.
			return nil, fmt.Errorf("rule %d: resourceNames with create, list, watch or deletecollection", i)
		}
		for _, list := range [][]string{r.APIGroups, r.Resources, r.Verbs} {
			if len(list) == 0 || slices.Contains(list, rbacv1.APIGroupAll) {
				return nil, fmt.Errorf("rule %d: an empty list or a wildcard", i)
			}
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					for _, n := range names {
						gs = append(gs, grant{g, res, v, n})
					}
				}
			}
		}
	}
	slices.SortFunc(gs, compareGrants)
	return slices.Compact(gs), nil
}

func TestRoleGrantsExactly(t *testing.T) {
	role := decodeFile(t, "kservice.yaml")["Role/"+name].(*rbacv1.Role)
	clusterRole := decodeFile(t, "deploy/cluster-wide/rbac.yaml")["ClusterRole/"+name].(*rbacv1.ClusterRole)
	plus := func(rules []rbacv1.PolicyRule, extra rbacv1.PolicyRule) []rbacv1.PolicyRule {
		return append(slices.Clone(rules), extra)
	}
	tests := []struct {
		name     string
		rules    []rbacv1.PolicyRule
		want     []grant
		wantSame bool   // the grants equal want
		wantErr  string // grants() fails with this
	}{
		{name: "Role in kservice.yaml", rules: role.Rules, want: wantRoleGrants, wantSame: true},
		{name: "ClusterRole in deploy/cluster-wide/rbac.yaml", rules: clusterRole.Rules, want: wantGrants, wantSame: true},
		// The comparison can fail: one verb too many, or too few, is a difference.
		{
			name:  "an extra verb",
			rules: plus(role.Rules, rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"delete"}}),
			want:  wantRoleGrants,
		},
		{name: "a missing rule", rules: role.Rules[1:], want: wantRoleGrants},
		{
			name:  "the Lease without its name",
			rules: plus(role.Rules[:len(role.Rules)-1], rbacv1.PolicyRule{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "update"}}),
			want:  wantRoleGrants,
		},
		{
			name:    "create limited by name, which RBAC cannot do",
			rules:   plus(role.Rules, rbacv1.PolicyRule{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, ResourceNames: []string{budget.LeaseName}, Verbs: []string{"create"}}),
			wantErr: "resourceNames with create",
		},
		{
			name:    "a wildcard",
			rules:   plus(role.Rules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"*"}}),
			wantErr: "wildcard",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := grants(tt.rules)
			checkErr(t, err, tt.wantErr)
			if err != nil {
				return
			}
			diff := cmp.Diff(tt.want, got)
			if tt.wantSame && diff != "" {
				t.Errorf("grants mismatch (-want +got):\n%s", diff)
			}
			if !tt.wantSame && diff == "" {
				t.Errorf("grants equal the wanted ones; want a difference")
			}
		})
	}
}

func TestBindings(t *testing.T) {
	rb := decodeFile(t, "kservice.yaml")["RoleBinding/"+name].(*rbacv1.RoleBinding)
	crb := decodeFile(t, "deploy/cluster-wide/all-namespaces.yaml")["ClusterRoleBinding/"+name].(*rbacv1.ClusterRoleBinding)
	tests := []struct {
		name         string
		roleRef      rbacv1.RoleRef
		subjects     []rbacv1.Subject
		wantRoleKind string
		// wantNamespace: the RoleBinding's subject has none, so that the apiserver reads it as
		// the binding's own (TestRBACOnAPIServer checks that on a real one); the
		// ClusterRoleBinding's must have one.
		wantNamespace bool
	}{
		{"RoleBinding in kservice.yaml", rb.RoleRef, rb.Subjects, "Role", false},
		{"ClusterRoleBinding in deploy/cluster-wide/all-namespaces.yaml", crb.RoleRef, crb.Subjects, "ClusterRole", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantRef := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: tt.wantRoleKind, Name: name}
			if diff := cmp.Diff(wantRef, tt.roleRef); diff != "" {
				t.Errorf("roleRef mismatch (-want +got):\n%s", diff)
			}
			if len(tt.subjects) != 1 {
				t.Fatalf("subjects = %+v; want exactly one", tt.subjects)
			}
			s := tt.subjects[0]
			if s.Kind != rbacv1.ServiceAccountKind || s.Name != name || s.APIGroup != "" {
				t.Errorf("subject = %+v; want ServiceAccount %s", s, name)
			}
			if got := s.Namespace != ""; got != tt.wantNamespace {
				t.Errorf("subject namespace = %q; want one: %v", s.Namespace, tt.wantNamespace)
			}
		})
	}
}

// TestGitOpsRoleGrantsExactly: deploy/cluster-wide/gitops.yaml allows exactly what the GitOps
// guard does (read and patch Applications and Kustomizations, and the Event on them; nothing
// of HelmReleases, which it never reads), and binds nothing: it is bound per namespace with the
// command it documents, as rbac.yaml's ClusterRole is.
func TestGitOpsRoleGrantsExactly(t *testing.T) {
	const gitopsName = name + "-gitops"
	const file = "deploy/cluster-wide/gitops.yaml"
	objs := decodeFile(t, file)
	role, ok := objs["ClusterRole/"+gitopsName].(*rbacv1.ClusterRole)
	if !ok {
		t.Fatalf("%s has no ClusterRole %s", file, gitopsName)
	}
	if len(objs) != 1 {
		t.Errorf("%s holds %d objects; want the ClusterRole alone (a binding would grant it everywhere)", file, len(objs))
	}
	got, err := grants(role.Rules)
	if err != nil {
		t.Fatal(err)
	}
	var want []grant
	for _, gr := range []struct{ group, resource string }{
		{"argoproj.io", "applications"}, {"kustomize.toolkit.fluxcd.io", "kustomizations"},
	} {
		want = append(want, grant{gr.group, gr.resource, "get", ""}, grant{gr.group, gr.resource, "patch", ""})
	}
	want = append(want, grant{"", "events", "create", ""}, grant{"", "events", "patch", ""})
	slices.SortFunc(want, compareGrants)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("grants mismatch (-want +got):\n%s", diff)
	}
	const cmd = "kubectl -n OWNER_NS create rolebinding alert-rollback-gitops --clusterrole=alert-rollback-gitops \\\n#     --serviceaccount=NS:alert-rollback"
	if !strings.Contains(string(readRepoFile(t, file)), cmd) {
		t.Errorf("%s does not document the binding %q", file, cmd)
	}
}
