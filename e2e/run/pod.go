package run

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
	"sigs.k8s.io/yaml"

	"github.com/sre-kit/alert-rollback/e2e/cluster"
	"github.com/sre-kit/alert-rollback/e2e/fixture"
	"github.com/sre-kit/alert-rollback/internal/alert"
	"github.com/sre-kit/alert-rollback/internal/outcome"
)

// KnativeService returns the Knative Service of the manifest at path (kservice.yaml).
func KnativeService(path string) (*servingv1.Service, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for _, doc := range strings.Split(string(b), "\n---") {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if meta.Kind != "Service" || !strings.HasPrefix(meta.APIVersion, "serving.knative.dev/") {
			continue
		}
		var ksvc servingv1.Service
		if err := yaml.UnmarshalStrict([]byte(doc), &ksvc); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return &ksvc, nil
	}
	return nil, fmt.Errorf("%s: no Knative Service in it", path)
}

// FunctionPod is the pod Knative would run for the Knative Service of kservice.yaml (at
// path), without Knative: its ServiceAccount, container, environment (the Secret's token),
// probes, resources and security context as written, with image in place of ko's reference.
// What Knative adds is added here: $PORT, and the probes' port (Knative's queue-proxy
// probes the serving port, which kservice.yaml must not name).
func FunctionPod(path, ns, name, image string) (*corev1.Pod, error) {
	ksvc, err := KnativeService(path)
	if err != nil {
		return nil, err
	}
	spec := ksvc.Spec.Template.Spec.PodSpec.DeepCopy()
	if len(spec.Containers) != 1 {
		return nil, fmt.Errorf("%s: %d containers; want 1", path, len(spec.Containers))
	}
	c := &spec.Containers[0]
	c.Image = image
	c.ImagePullPolicy = corev1.PullNever
	port := c.Ports[0].ContainerPort
	c.Env = append(c.Env, corev1.EnvVar{Name: "PORT", Value: fmt.Sprint(port)})
	for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
		if p != nil && p.HTTPGet != nil {
			p.HTTPGet.Port = intstr.FromInt32(port)
		}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: ksvc.Spec.Template.Labels},
		Spec:       *spec,
	}, nil
}

// WaitPodReady waits until the pod runs and is Ready, and returns it. Its error says the
// pod's phase and its containers' states, which is where a kubelet says what went wrong.
func WaitPodReady(ctx context.Context, cs kubernetes.Interface, ns, name string) (*corev1.Pod, error) {
	var pod *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, fixture.PollTimeout, true, func(ctx context.Context) (bool, error) {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		pod = p
		return p.Status.Phase == corev1.PodRunning && podReady(p), nil
	})
	if err != nil {
		return nil, fmt.Errorf("pod %s/%s not ready: %w (%s)", ns, name, err, PodState(pod))
	}
	return pod, nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// PodState is a one-line summary of a pod: phase and each container's state.
func PodState(p *corev1.Pod) string {
	if p == nil {
		return "no pod"
	}
	s := fmt.Sprintf("%s phase %s", p.Name, p.Status.Phase)
	for _, c := range p.Status.ContainerStatuses {
		switch {
		case c.State.Waiting != nil:
			s += fmt.Sprintf("; %s waiting %s %s", c.Name, c.State.Waiting.Reason, c.State.Waiting.Message)
		case c.State.Running != nil:
			s += fmt.Sprintf("; %s running, ready %v, restarts %d", c.Name, c.Ready, c.RestartCount)
		case c.State.Terminated != nil:
			s += fmt.Sprintf("; %s terminated %s (exit %d)", c.Name, c.State.Terminated.Reason, c.State.Terminated.ExitCode)
		}
	}
	return s
}

// WaitOnlyRevisionRunning waits until every pod of the Deployment belongs to the ReplicaSet
// rs, and all of them (at least one) are Running and Ready: what a good rollback leaves.
func WaitOnlyRevisionRunning(ctx context.Context, cs kubernetes.Interface, ns, deployment string, rs *appsv1.ReplicaSet) ([]corev1.Pod, error) {
	hash := rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
	var last []corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*fixture.PollTimeout, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + deployment})
		if err != nil {
			return false, nil
		}
		last = pods.Items
		if len(last) == 0 {
			return false, nil
		}
		for i := range last {
			p := &last[i]
			if p.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != hash || p.Status.Phase != corev1.PodRunning || !podReady(p) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		var states []string
		for i := range last {
			states = append(states, PodState(&last[i])+" hash "+last[i].Labels[appsv1.DefaultDeploymentUniqueLabelKey])
		}
		return nil, fmt.Errorf("pods of %s: want only revision %s (hash %s) Running and Ready: %w; pods: %s",
			deployment, rs.Annotations["deployment.kubernetes.io/revision"], hash, err, strings.Join(states, " | "))
	}
	return last, nil
}

// WaitContainerWaiting waits until a pod of owner has its container waiting with reason
// (CrashLoopBackOff), and returns the pod's name.
func WaitContainerWaiting(ctx context.Context, cs kubernetes.Interface, ns string, owner metav1.Object, reason string) (string, error) {
	var last []string
	var name string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*fixture.PollTimeout, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		last = last[:0]
		for i := range pods.Items {
			p := &pods.Items[i]
			if !metav1.IsControlledBy(p, owner) {
				continue
			}
			last = append(last, PodState(p))
			for _, c := range p.Status.ContainerStatuses {
				if c.State.Waiting != nil && c.State.Waiting.Reason == reason {
					name = p.Name
					return true, nil
				}
			}
		}
		return false, nil
	})
	if err != nil {
		return "", fmt.Errorf("no pod of %s waiting with %s: %w; pods: %s", owner.GetName(), reason, err, strings.Join(last, " | "))
	}
	return name, nil
}

// AlertOf is an alert as Alertmanager sends it about labels, firing since startsAt, with the
// fingerprint Alertmanager computes.
func AlertOf(labels map[string]string, startsAt time.Time) alert.Alert {
	ls := model.LabelSet{}
	for k, v := range labels {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return alert.Alert{Status: "firing", Labels: labels, StartsAt: startsAt.UTC(), Fingerprint: ls.Fingerprint().String()}
}

// Notification is Alertmanager's webhook body for alerts.
func Notification(alerts ...alert.Alert) []byte {
	b, err := json.Marshal(alert.Message{Version: "4", Status: "firing", Receiver: "alert-rollback", Alerts: alerts})
	if err != nil {
		panic(err) // a Message always marshals
	}
	return b
}

// PostNotification posts body to url as Alertmanager does (bearer token, JSON) with client,
// and returns the status and the decoded answer.
func PostNotification(ctx context.Context, client *http.Client, url string, body []byte, token string) (int, outcome.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, outcome.Response{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return 0, outcome.Response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, outcome.Response{}, err
	}
	var r outcome.Response
	if err := json.Unmarshal(b, &r); err != nil {
		return resp.StatusCode, r, fmt.Errorf("answer %d %s: %w", resp.StatusCode, b, err)
	}
	return resp.StatusCode, r, nil
}

// OneAction returns the action of the answer's single result, or an error describing it.
func OneAction(r outcome.Response) (string, error) {
	if len(r.Results) != 1 {
		return "", fmt.Errorf("%d results: %+v; want one", len(r.Results), r.Results)
	}
	return string(r.Results[0].Action), nil
}

// BrokenDeployment creates Deployment name with the app (revision 1) and waits until its
// pods run, then breaks it with change (revision 2) and waits for revision 2's pod to be
// Unschedulable, or its container in CrashLoopBackOff when change swaps in a crashing
// image. It returns that pod's name and revision 1's ReplicaSet.
func BrokenDeployment(ctx context.Context, k *cluster.Cluster, ns, name string, change func(*corev1.Container)) (string, *appsv1.ReplicaSet, error) {
	c := fixture.Container(cluster.AppImage, "100m")
	c.ImagePullPolicy = corev1.PullNever
	if _, err := k.Clientset.AppsV1().Deployments(ns).Create(ctx, fixture.Deployment(ns, name, c), metav1.CreateOptions{}); err != nil {
		return "", nil, err
	}
	if err := fixture.WaitDeploymentRevision(ctx, k.Clientset, ns, name, 1); err != nil {
		return "", nil, err
	}
	rev1, err := fixture.ReplicaSetOfRevision(ctx, k.Clientset, ns, name, 1)
	if err != nil {
		return "", nil, err
	}
	if _, err := WaitOnlyRevisionRunning(ctx, k.Clientset, ns, name, rev1); err != nil {
		return "", nil, err
	}
	err = fixture.UpdateDeployment(ctx, k.Clientset, ns, name, 2, func(d *appsv1.Deployment) {
		change(&d.Spec.Template.Spec.Containers[0])
	})
	if err != nil {
		return "", nil, err
	}
	rev2, err := fixture.ReplicaSetOfRevision(ctx, k.Clientset, ns, name, 2)
	if err != nil {
		return "", nil, err
	}
	var pod string
	if rev2.Spec.Template.Spec.Containers[0].Image == cluster.CrashImage {
		pod, err = WaitContainerWaiting(ctx, k.Clientset, ns, rev2, "CrashLoopBackOff")
	} else {
		pod, err = fixture.WaitPod(ctx, k.Clientset, ns, rev2, corev1.ConditionFalse, corev1.PodReasonUnschedulable)
	}
	return pod, rev1, err
}
