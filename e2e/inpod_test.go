package e2e

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sre-kit/alert-rollback/e2e/fixture"
	"github.com/sre-kit/alert-rollback/e2e/run"
)

// saDir is where Kubernetes mounts a pod's service account, and where client-go's
// in-cluster configuration reads it.
const saDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// TestAsAPod applies kservice.yaml as a user would, then runs the built function exactly as
// Kubernetes starts it in a pod: no kubeconfig, KUBERNETES_SERVICE_HOST/PORT set, and the
// service account's token, CA and namespace mounted at saDir (in private user and mount
// namespaces, so it needs no root and nothing outside the process sees it). With only the shipped Role it rolls the
// seed's Deployment back; the real authorizer denies that identity everything else.
func TestAsAPod(t *testing.T) {
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatalf("unshare (util-linux) is needed to run the function as a pod would: %v", err)
	}
	e := newEnv(t) // applies kservice.yaml in the namespace
	ctx := context.Background()

	// The server accepts every document of kservice.yaml, the Knative Service against
	// Knative's own CRD schema (unknown fields are rejected).
	if out, err := kube.Kubectl(ctx, "apply", "--dry-run=server", "-n", e.ns, "-f", repoFile("kservice.yaml")); err != nil {
		t.Fatalf("kubectl apply --dry-run=server -f kservice.yaml: %v: %s", err, out)
	}

	pod := e.brokenDeployment("inventory-sync")
	token, err := kube.Token(ctx, e.ns, "alert-rollback")
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(kube.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	mount := filepath.Join(e.dir, "serviceaccount")
	if err := os.MkdirAll(mount, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(mount, "token"), token)
	writeFile(t, filepath.Join(mount, "ca.crt"), string(ca))
	writeFile(t, filepath.Join(mount, "namespace"), e.ns)

	f, err := run.StartFunction(ctx, run.FunctionOptions{
		Dir: e.dir, Name: "rollback-in-pod",
		// A user namespace (so this needs no root) with a private mount namespace: a fresh
		// tmpfs on /run (where /var/run points) holds the mount point, and the folder is
		// bind-mounted there, as the kubelet mounts a projected service account volume.
		// Nothing of it is visible outside the function's process.
		Wrap: []string{unshare, "--user", "--map-root-user", "--mount", "--propagation", "private", "sh", "-c",
			`mount -t tmpfs tmpfs /run && mkdir -p ` + saDir + ` && mount --bind "$SA_MOUNT" ` + saDir + ` && exec "$0"`},
		Env: map[string]string{
			"SA_MOUNT":                mount,
			"KUBERNETES_SERVICE_HOST": "127.0.0.1",
			"KUBERNETES_SERVICE_PORT": strconv.Itoa(kube.Port),
			"ROLLBACK_AUTH_TOKEN":     e.token,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()

	status, resp, err := f.Post(ctx, notification(seedAlert(e.ns, pod, time.Now())), e.token)
	if err != nil || status != http.StatusOK || len(resp.Results) != 1 || resp.Results[0].Action != "rolled-back" {
		t.Fatalf("POST = %d %+v %v; want one rolled-back result\n%s", status, resp, err, f.Log())
	}
	if err := fixture.WaitDeploymentRevision(ctx, e.cs, e.ns, "inventory-sync", 3); err != nil {
		t.Fatal(err)
	}
	if _, err := fixture.WaitEvents(ctx, e.cs, e.ns, "Deployment", "inventory-sync", "RolledBack", 1); err != nil {
		t.Fatal(err)
	}
	// It found its own namespace in the mounted folder, not in a kubeconfig.
	if log := f.Log(); !strings.Contains(log, `"namespace":"`+e.ns+`"`) {
		t.Errorf("the function did not report its namespace %s from the service account folder:\n%s", e.ns, log)
	}

	// The identity kservice.yaml gives it is denied what the function must never do.
	other := "other-" + e.ns
	if err := kube.CreateNamespace(ctx, other); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.Clientset.AppsV1().Deployments(other).Create(ctx, fixture.Deployment(other, "victim", fixture.Container("registry.invalid/victim:v1", "100m")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg, err := kube.ConfigFor(ctx, e.ns, "alert-rollback")
	if err != nil {
		t.Fatal(err)
	}
	sa := kubernetes.NewForConfigOrDie(cfg)
	denied := []struct {
		name string
		call func() error
	}{
		{"delete a Deployment", func() error {
			return sa.AppsV1().Deployments(e.ns).Delete(ctx, "inventory-sync", metav1.DeleteOptions{})
		}},
		{"read Secrets", func() error {
			_, err := sa.CoreV1().Secrets(e.ns).List(ctx, metav1.ListOptions{})
			return err
		}},
		{"update a Deployment wholesale", func() error {
			d, err := kube.Clientset.AppsV1().Deployments(e.ns).Get(ctx, "inventory-sync", metav1.GetOptions{})
			if err != nil {
				return err
			}
			_, err = sa.AppsV1().Deployments(e.ns).Update(ctx, d, metav1.UpdateOptions{})
			return err
		}},
		{"read a Deployment in another namespace", func() error {
			_, err := sa.AppsV1().Deployments(other).Get(ctx, "victim", metav1.GetOptions{})
			return err
		}},
		{"patch a Deployment in another namespace", func() error {
			_, err := sa.AppsV1().Deployments(other).Patch(ctx, "victim", "application/merge-patch+json", []byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{})
			return err
		}},
		{"list pods", func() error {
			_, err := sa.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{})
			return err
		}},
		{"list namespaces", func() error {
			_, err := sa.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
			return err
		}},
	}
	for _, d := range denied {
		if err := d.call(); !apierrors.IsForbidden(err) {
			t.Errorf("as alert-rollback: %s = %v; want Forbidden", d.name, err)
		}
	}
}
