package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sre-kit/alert-rollback/e2e/fixture"
	"github.com/sre-kit/alert-rollback/e2e/run"
	"github.com/sre-kit/alert-rollback/internal/outcome"
)

// progressDeadline is the stuck Deployment's spec.progressDeadlineSeconds: short, so the real
// controller gives up on the bad revision within seconds.
const progressDeadline = 5

// maxAge is the function's ROLLBACK_MAX_AGE here: longer than the stuck rollout takes to be
// alerted on (its progress deadline, then Alertmanager's group_wait: about 10 s), shorter than
// the old Deployment's revision is old by the time its alert is sent (the test waits for that).
const maxAge = 20 * time.Second

// TestKubePrometheus is the README's "Use it with kube-prometheus" recipe for real: a real
// Alertmanager running deploy/alertmanager/kube-prometheus.yml (only the url and the credentials
// file filled in) routes kube-prometheus-shaped alerts to the function, started with the
// README's ROLLBACK_MATCH.
//
//   - A Deployment whose new revision cannot become available: the real Deployment controller
//     declares the rollout failed (Progressing=False, ProgressDeadlineExceeded), and
//     KubeDeploymentRolloutStuck (severity warning) makes the function roll it back.
//   - A Deployment whose current revision was rolled out before ROLLBACK_MAX_AGE and whose pod
//     now crash-loops: KubePodCrashLooping is refused as too-old, and nothing changes.
func TestKubePrometheus(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const name, oldName = "shop-api", "legacy-api"
	matcher, err := run.ReadmeMatcher()
	if err != nil {
		t.Fatal(err)
	}

	// The old Deployment first, so that its revision ages while the rest is set up.
	oldPod, oldRev := e.healthyRollout(oldName)
	rev1 := e.stuckRollout(name)
	stuck := e.deployment(name)
	cond := fixture.DeploymentCondition(stuck, appsv1.DeploymentProgressing)
	rev2, err := fixture.ReplicaSetOfRevision(ctx, e.cs, e.ns, name, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("before: %s (revision 2 rolled out %s ago)", describeRollout(stuck), time.Since(rev2.CreationTimestamp.Time).Round(time.Second))

	f := e.startFunction("rollback", map[string]string{"ROLLBACK_MATCH": matcher, "ROLLBACK_MAX_AGE": maxAge.String()})
	rec := newRecorder(t, f.URL)
	am, err := run.StartAlertmanager(ctx, run.AlertmanagerOptions{
		Dir: e.dir, Name: "alertmanager-kube-prometheus", ConfigFile: "kube-prometheus.yml", WebhookURL: rec.URL,
		CredentialsFile: writeFile(t, filepath.Join(e.dir, "credentials"), e.token+"\n"),
		Timers:          &run.Timers{GroupWait: "1s", GroupInterval: "2s", RepeatInterval: "1h"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer am.Stop()

	// What kube-prometheus's KubeDeploymentRolloutStuck fires for this Deployment: the labels
	// of kube-state-metrics' kube_deployment_status_condition series (the condition as the
	// controller wrote it) plus the rule's severity, as Prometheus posts it to Alertmanager.
	a := kubePrometheusAlert("KubeDeploymentRolloutStuck", map[string]string{
		"namespace": e.ns, "deployment": name,
		"condition": string(cond.Type), "status": strings.ToLower(string(cond.Status)), "reason": cond.Reason,
	})
	r := fireAndAnswer(t, am, rec, 0, a)
	t.Logf("alert:  %s → %s", describeAlert(a), describeResult(r))
	if r.Action != outcome.RolledBack || r.Kind != "Deployment" || r.Name != name || r.FromRevision != 2 || r.ToRevision != 1 {
		t.Fatalf("result = %+v; want Deployment %s rolled-back from 2 to 1", r, name)
	}

	// The controller makes revision 3 from revision 1's ReplicaSet, which is still available:
	// the rollout completes and Progressing turns True again (kube-prometheus's alert resolves).
	if err := fixture.WaitDeploymentRevision(ctx, e.cs, e.ns, name, 3); err != nil {
		t.Fatal(err)
	}
	after, err := fixture.WaitDeploymentCondition(ctx, e.cs, e.ns, name, appsv1.DeploymentProgressing, corev1.ConditionTrue, "NewReplicaSetAvailable", fixture.PollTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after:  %s", describeRollout(after))
	if !fixture.SameTemplate(after.Spec.Template, rev1.Spec.Template) {
		t.Errorf("template after the undo = %+v; want revision 1's %+v", after.Spec.Template, rev1.Spec.Template)
	}
	rev3, err := fixture.ReplicaSetOfRevision(ctx, e.cs, e.ns, name, 3)
	if err != nil || rev3.UID != rev1.UID {
		t.Errorf("revision 3 is %v (%v); want revision 1's ReplicaSet %s brought back", rev3, err, rev1.Name)
	}

	// The old Deployment's pod starts crash-looping once its revision is older than maxAge.
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*maxAge, true, func(context.Context) (bool, error) {
		return time.Since(oldRev.CreationTimestamp.Time) > maxAge+time.Second, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	old := e.deployment(oldName)
	t.Logf("before: %s (revision 2 rolled out %s ago)", describeRollout(old), time.Since(oldRev.CreationTimestamp.Time).Round(time.Second))
	a = kubePrometheusAlert("KubePodCrashLooping", map[string]string{
		"namespace": e.ns, "pod": oldPod, "container": "app", "reason": "CrashLoopBackOff",
	})
	r = fireAndAnswer(t, am, rec, 1, a)
	t.Logf("alert:  %s → %s", describeAlert(a), describeResult(r))
	if r.Action != outcome.Refused || r.Reason != outcome.ReasonTooOld || r.Kind != "Deployment" || r.Name != oldName || r.FromRevision != 2 {
		t.Fatalf("result = %+v; want Deployment %s refused (too-old) at revision 2", r, oldName)
	}
	if !strings.Contains(r.Message, "ago") {
		t.Errorf("message = %q; want it to say how old the revision is", r.Message)
	}
	unchanged := e.settled(oldName)
	t.Logf("after:  %s", describeRollout(unchanged))
	if unchanged.Generation != old.Generation || !fixture.SameTemplate(unchanged.Spec.Template, old.Spec.Template) ||
		unchanged.Annotations["deployment.kubernetes.io/revision"] != "2" {
		t.Errorf("the old Deployment changed: generation %d → %d, revision %s", old.Generation, unchanged.Generation, unchanged.Annotations["deployment.kubernetes.io/revision"])
	}
}

// kubePrometheusAlert is an alert as kube-prometheus's rule fires it: the labels of
// kube-state-metrics' series, as scraped by prometheus-operator, plus the rule's severity.
func kubePrometheusAlert(name string, labels map[string]string) run.Alert {
	all := map[string]string{
		"alertname": name, "severity": "warning",
		"job": "kube-state-metrics", "container": "kube-state-metrics", "endpoint": "http-metrics",
		"instance": "10.0.0.7:8443", "service": "kube-state-metrics", "prometheus": "monitoring/k8s",
	}
	for k, v := range labels {
		all[k] = v
	}
	return run.Alert{
		Labels: all,
		Annotations: map[string]string{
			"summary":     name + " (kube-prometheus)",
			"runbook_url": "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/" + strings.ToLower(name),
		},
		StartsAt: time.Now().UTC(),
	}
}

// fireAndAnswer posts a to Alertmanager and returns the function's one result for
// Alertmanager's delivery number n (from 0), which must have been answered 200.
func fireAndAnswer(t *testing.T, am *run.Alertmanager, rec *recorder, n int, a run.Alert) outcome.Result {
	t.Helper()
	if err := am.Fire(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	d := waitDelivery(t, rec, n, am.LogPath)
	if d.status != http.StatusOK {
		t.Fatalf("the function answered Alertmanager %d: %s", d.status, d.answer)
	}
	var resp outcome.Response
	if err := json.Unmarshal(d.answer, &resp); err != nil {
		t.Fatalf("the function's answer %s: %v", d.answer, err)
	}
	if len(resp.Results) != 1 {
		t.Fatalf("results = %+v; want one", resp.Results)
	}
	return resp.Results[0]
}

func describeAlert(a run.Alert) string {
	keys := []string{"severity", "namespace", "deployment", "pod", "status", "reason"}
	var parts []string
	for _, k := range keys {
		if v, ok := a.Labels[k]; ok {
			parts = append(parts, fmt.Sprintf("%s=%q", k, v))
		}
	}
	return a.Labels["alertname"] + "{" + strings.Join(parts, ", ") + "}"
}

func describeResult(r outcome.Result) string {
	return fmt.Sprintf("%s %s/%s %s (%s), revision %d → %d: %s", r.Kind, r.Namespace, r.Name, r.Action, r.Reason, r.FromRevision, r.ToRevision, r.Message)
}

// healthyRollout creates Deployment name and rolls out two revisions whose pods become ready,
// as a Deployment that was fine for a long time. It returns revision 2's pod and ReplicaSet.
func (e *env) healthyRollout(name string) (string, *appsv1.ReplicaSet) {
	e.t.Helper()
	ctx := context.Background()
	if _, err := e.cs.AppsV1().Deployments(e.ns).Create(ctx, fixture.Deployment(e.ns, name, fixture.Container("registry.invalid/"+name+":v1", "100m")), metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	var pod string
	var rs *appsv1.ReplicaSet
	for rev := int64(1); rev <= 2; rev++ {
		if rev == 2 {
			err := fixture.UpdateDeployment(ctx, e.cs, e.ns, name, rev, func(d *appsv1.Deployment) {
				d.Spec.Template.Spec.Containers[0].Image = "registry.invalid/" + name + ":v2"
			})
			if err != nil {
				e.t.Fatal(err)
			}
		}
		pod, rs = e.readyRevision(name, rev)
	}
	return pod, rs
}

// readyRevision waits for the pod of the Deployment's revision rev, reports it ready as a
// kubelet would, and waits for the rollout to complete.
func (e *env) readyRevision(name string, rev int64) (string, *appsv1.ReplicaSet) {
	e.t.Helper()
	ctx := context.Background()
	if err := fixture.WaitDeploymentRevision(ctx, e.cs, e.ns, name, rev); err != nil {
		e.t.Fatal(err)
	}
	rs, err := fixture.ReplicaSetOfRevision(ctx, e.cs, e.ns, name, rev)
	if err != nil {
		e.t.Fatal(err)
	}
	pod, err := fixture.WaitPod(ctx, e.cs, e.ns, rs, corev1.ConditionTrue, "")
	if err != nil {
		e.t.Fatal(err)
	}
	if err := fixture.MarkPodReady(ctx, e.cs, e.ns, pod); err != nil {
		e.t.Fatalf("mark pod %s ready: %v", pod, err)
	}
	if _, err := fixture.WaitDeploymentCondition(ctx, e.cs, e.ns, name, appsv1.DeploymentProgressing, corev1.ConditionTrue, "NewReplicaSetAvailable", fixture.PollTimeout); err != nil {
		e.t.Fatal(err)
	}
	return pod, rs
}

// stuckRollout creates Deployment name at revision 1 with a pod that becomes ready, then rolls
// out revision 2 whose pod never does (its image cannot be pulled: no kubelet reports it
// started), and waits for the real controller to declare that rollout failed. It returns
// revision 1's ReplicaSet.
func (e *env) stuckRollout(name string) *appsv1.ReplicaSet {
	e.t.Helper()
	ctx := context.Background()
	d := fixture.Deployment(e.ns, name, fixture.Container("registry.invalid/"+name+":v1", "100m"))
	deadline := int32(progressDeadline)
	d.Spec.ProgressDeadlineSeconds = &deadline
	if _, err := e.cs.AppsV1().Deployments(e.ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	_, rev1 := e.readyRevision(name, 1)

	err := fixture.UpdateDeployment(ctx, e.cs, e.ns, name, 2, func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.Containers[0].Image = "registry.invalid/" + name + ":v2-missing"
	})
	if err != nil {
		e.t.Fatal(err)
	}
	rev2, err := fixture.ReplicaSetOfRevision(ctx, e.cs, e.ns, name, 2)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := fixture.WaitPod(ctx, e.cs, e.ns, rev2, corev1.ConditionTrue, ""); err != nil {
		e.t.Fatal(err)
	}
	// The controller re-checks a rollout once its deadline has passed: allow that plus slack
	// for a busy machine.
	_, err = fixture.WaitDeploymentCondition(ctx, e.cs, e.ns, name, appsv1.DeploymentProgressing, corev1.ConditionFalse, "ProgressDeadlineExceeded", fixture.PollTimeout)
	if err != nil {
		e.t.Fatal(err)
	}
	return rev1
}

// describeRollout is one line a person can read: revision, image, Progressing, replicas.
func describeRollout(d *appsv1.Deployment) string {
	c := fixture.DeploymentCondition(d, appsv1.DeploymentProgressing)
	progressing := "none"
	if c != nil {
		progressing = fmt.Sprintf("%s (%s: %s)", c.Status, c.Reason, c.Message)
	}
	return fmt.Sprintf("deployment %s/%s revision %s image %s; Progressing=%s; replicas %d updated %d available %d",
		d.Namespace, d.Name, d.Annotations["deployment.kubernetes.io/revision"], d.Spec.Template.Spec.Containers[0].Image,
		progressing, d.Status.Replicas, d.Status.UpdatedReplicas, d.Status.AvailableReplicas)
}

// waitDelivery waits for Alertmanager's delivery number n (from 0) through rec.
func waitDelivery(t *testing.T, rec *recorder, n int, amLog string) delivery {
	t.Helper()
	var d delivery
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
		got := rec.deliveries()
		if len(got) > n {
			d = got[n]
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("Alertmanager delivered nothing: %v\n%s", err, readLog(amLog))
	}
	return d
}
