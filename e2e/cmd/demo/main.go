// Command demo shows the function rolling back a real broken Deployment, end to end, on a
// local control plane: `make demo`. It starts etcd, kube-apiserver, kube-controller-manager
// and kube-scheduler, deploys an app, rolls out a revision that cannot be scheduled, starts
// the function (as kservice.yaml's ServiceAccount) and Alertmanager (with the shipped
// route), fires the seed's alert, and prints before → alert → after. Then it stops it all.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
	"github.com/sre-kit/alert-rollback/e2e/fixture"
	"github.com/sre-kit/alert-rollback/e2e/run"
)

const (
	ns   = "demo"
	app  = "checkout-api"
	node = "demo-node"
)

func main() {
	if err := demo(); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("\n== "+format+"\n", args...) }
func say(format string, args ...any)  { fmt.Printf("   "+format+"\n", args...) }

func demo() error {
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir, finish, err := cluster.LogDir("rollback-demo-")
	if err != nil {
		return err
	}
	ok := false
	defer func() { finish(ok) }()

	step("Starting a local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) on 127.0.0.1")
	kube, err := cluster.Start(ctx, cluster.Options{Dir: filepath.Join(dir, "cluster"), Log: indent{os.Stdout}})
	if err != nil {
		return err
	}
	defer kube.Stop()
	cs := kube.Clientset
	if err := kube.CreateNode(ctx, node); err != nil {
		return err
	}
	if err := kube.CreateNamespace(ctx, ns); err != nil {
		return err
	}
	say("node %s: 4 CPUs, 8Gi (a Node object with no kubelet: pods get scheduled, never run)", node)

	step("Before: %s v1 (cpu 100m) is revision 1 and scheduled", app)
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, fixture.Deployment(ns, app, fixture.Container("registry.invalid/checkout-api:v1", "100m")), metav1.CreateOptions{}); err != nil {
		return err
	}
	if err := fixture.WaitDeploymentRevision(ctx, cs, ns, app, 1); err != nil {
		return err
	}
	rs1, err := fixture.ReplicaSetOfRevision(ctx, cs, ns, app, 1)
	if err != nil {
		return err
	}
	pod1, err := fixture.WaitPod(ctx, cs, ns, rs1, corev1.ConditionTrue, "")
	if err != nil {
		return err
	}
	say("pod %s: PodScheduled=True", pod1)

	step("The bad rollout: v2 asks for 64 CPUs (revision 2)")
	err = fixture.UpdateDeployment(ctx, cs, ns, app, 2, func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.Containers[0] = fixture.Container("registry.invalid/checkout-api:v2", "64")
	})
	if err != nil {
		return err
	}
	rs2, err := fixture.ReplicaSetOfRevision(ctx, cs, ns, app, 2)
	if err != nil {
		return err
	}
	pod2, err := fixture.WaitPod(ctx, cs, ns, rs2, corev1.ConditionFalse, corev1.PodReasonUnschedulable)
	if err != nil {
		return err
	}
	p, err := cs.CoreV1().Pods(ns).Get(ctx, pod2, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled {
			say("pod %s: PodScheduled=%s %s: %s", pod2, c.Status, c.Reason, c.Message)
		}
	}
	if err := kubectl(ctx, kube, "rollout", "history", "-n", ns, "deployment/"+app); err != nil {
		return err
	}

	step("Starting the function (cmd/rollback) as ServiceAccount alert-rollback, with only kservice.yaml's Role")
	if err := applyKService(ctx, kube, dir); err != nil {
		return err
	}
	token, err := kube.Token(ctx, ns, "alert-rollback")
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(dir, "alert-rollback.kubeconfig")
	if err := kube.WriteKubeconfig(kubeconfig, ns, token); err != nil {
		return err
	}
	const bearer = "demo-bearer-token"
	fn, err := run.StartFunction(ctx, run.FunctionOptions{Dir: dir, Env: map[string]string{
		"KUBECONFIG": kubeconfig, "ROLLBACK_AUTH_TOKEN": bearer,
	}})
	if err != nil {
		return err
	}
	defer fn.Stop()
	say("function ready at %s", fn.URL)

	// A tap between Alertmanager and the function, to show what was said.
	answers := make(chan string, 8)
	target, _ := url.Parse(fn.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(r *http.Response) error {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(b)))
		answers <- fmt.Sprintf("%s %s", r.Status, b)
		return nil
	}
	tap := httptest.NewServer(proxy)
	defer tap.Close()

	creds := filepath.Join(dir, "credentials")
	if err := os.WriteFile(creds, []byte(bearer), 0o600); err != nil {
		return err
	}
	am, err := run.StartAlertmanager(ctx, run.AlertmanagerOptions{Dir: dir, WebhookURL: tap.URL + "/", CredentialsFile: creds})
	if err != nil {
		return err
	}
	defer am.Stop()
	say("Alertmanager ready at %s with deploy/alertmanager/alertmanager.yml (url and credentials_file filled in)", am.URL)

	step("The alert: KubePodUnschedulable{namespace=%q, pod=%q, severity=\"rollback\"} fires", ns, pod2)
	fired := time.Now()
	err = am.Fire(ctx, run.Alert{
		Labels:      map[string]string{"alertname": "KubePodUnschedulable", "namespace": ns, "pod": pod2, "severity": "rollback"},
		Annotations: map[string]string{"summary": "Pod " + ns + "/" + pod2 + " cannot be scheduled"},
		StartsAt:    fired,
	})
	if err != nil {
		return err
	}
	say("waiting for Alertmanager's group_wait (10s in the shipped route) ...")
	var answer string
	select {
	case answer = <-answers:
	case <-time.After(60 * time.Second):
		return fmt.Errorf("alertmanager delivered nothing in 60s; see %s", am.LogPath)
	}
	say("Alertmanager delivered after %.1fs; the function answered %s", time.Since(fired).Seconds(), compact(answer))

	step("After: the controller makes revision 3 from revision 1's template")
	if err := fixture.WaitDeploymentRevision(ctx, cs, ns, app, 3); err != nil {
		return err
	}
	d, err := cs.AppsV1().Deployments(ns).Get(ctx, app, metav1.GetOptions{})
	if err != nil {
		return err
	}
	c := d.Spec.Template.Spec.Containers[0]
	say("template now: image %s, cpu %s (revision 2 had registry.invalid/checkout-api:v2, cpu 64)", c.Image, c.Resources.Requests.Cpu())
	if pod, err := fixture.WaitPod(ctx, cs, ns, rs1, corev1.ConditionTrue, ""); err == nil {
		say("pod %s of revision 1's ReplicaSet: PodScheduled=True", pod)
	}
	if err := kubectl(ctx, kube, "rollout", "history", "-n", ns, "deployment/"+app); err != nil {
		return err
	}
	if _, err := fixture.WaitEvents(ctx, cs, ns, "Deployment", app, "RolledBack", 1); err != nil {
		return err
	}
	say("the Event, as `kubectl get events` shows it:")
	if err := kubectl(ctx, kube, "get", "events", "-n", ns, "--field-selector", "involvedObject.kind=Deployment,reason=RolledBack",
		"-o", "custom-columns=TYPE:.type,REASON:.reason,OBJECT:.involvedObject.name,SOURCE:.source.component,MESSAGE:.message"); err != nil {
		return err
	}
	say("the guard state the function keeps on the Deployment (annotation alert-rollback.dev/state):")
	say("%s", d.Annotations["alert-rollback.dev/state"])

	step("Alertmanager repeats firing groups; a copy of the same alert changes nothing")
	_, resp, err := fn.Post(ctx, mustJSON(map[string]any{"version": "4", "status": "firing", "alerts": []map[string]any{{
		"status": "firing", "labels": map[string]string{"alertname": "KubePodUnschedulable", "namespace": ns, "pod": pod2, "severity": "rollback"},
		"startsAt": fired.UTC(), "fingerprint": fingerprintOf(answer),
	}}}), bearer)
	if err != nil {
		return err
	}
	for _, r := range resp.Results {
		say("%s (%s): %s", r.Action, r.Reason, r.Message)
	}

	step("Stopping everything")
	ok = true
	fmt.Printf("\ndemo finished in %.0fs\n", time.Since(began).Seconds())
	return nil
}

// applyKService applies kservice.yaml as a user would: Knative's Service CRD first (no
// Knative controller runs here, so the Service is only stored), then every document. Where
// the CRD is not at hand (no shared folder beside the repository), it applies every document
// but the Knative Service: the ServiceAccount and Role are what the demo runs with.
func applyKService(ctx context.Context, kube *cluster.Cluster, dir string) error {
	crd, err := cluster.SharedFile("knative/service-crd.yaml")
	if err == nil {
		if _, err := kube.Kubectl(ctx, "apply", "-f", crd); err != nil {
			return err
		}
		if err := kube.WaitEstablished(ctx, "services.serving.knative.dev"); err != nil {
			return err
		}
		return kubectl(ctx, kube, "apply", "-n", ns, "-f", "../kservice.yaml")
	}
	say("(%v: applying kservice.yaml without its Knative Service)", err)
	rbac, err := run.RBACManifest(dir)
	if err != nil {
		return err
	}
	return kubectl(ctx, kube, "apply", "-n", ns, "-f", rbac)
}

func kubectl(ctx context.Context, kube *cluster.Cluster, args ...string) error {
	out, err := kube.Kubectl(ctx, args...)
	if err != nil {
		return fmt.Errorf("kubectl %s: %w", strings.Join(args, " "), err)
	}
	say("$ kubectl %s", strings.Join(args, " "))
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		say("  %s", line)
	}
	return nil
}

// compact prints the function's JSON answer on one line.
func compact(answer string) string {
	status, body, _ := strings.Cut(answer, " {")
	var v any
	if json.Unmarshal([]byte("{"+body), &v) != nil {
		return answer
	}
	b, _ := json.Marshal(v)
	return status + " " + string(b)
}

// fingerprintOf reads the fingerprint Alertmanager gave the alert from the function's answer.
func fingerprintOf(answer string) string {
	_, body, _ := strings.Cut(answer, " {")
	var r struct {
		Results []struct{ Fingerprint string } `json:"results"`
	}
	_ = json.Unmarshal([]byte("{"+body), &r)
	if len(r.Results) == 0 {
		return ""
	}
	return r.Results[0].Fingerprint
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// indent prefixes the control plane's progress lines.
type indent struct{ w io.Writer }

func (i indent) Write(p []byte) (int, error) {
	_, err := i.w.Write([]byte("   " + string(p)))
	return len(p), err
}
