package cluster

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// KnativeTools are what Knative Serving on the node needs besides NodeTools: its images, its
// release YAMLs and Traefik, built by `make knative-tools`.
var KnativeTools = []string{
	"images/knative-controller.tar", "images/knative-webhook.tar", "images/knative-activator.tar",
	"images/knative-autoscaler.tar", "images/knative-queue.tar",
	"knative/serving-crds.yaml", "knative/serving-core.yaml", "traefik",
}

// KnativeTimings are the only settings changed in Knative's release YAMLs besides the image
// names: the autoscaler's windows, at the minimum it accepts, so a revision scales to zero
// within seconds of its last request instead of a minute and a half.
var KnativeTimings = map[string]string{
	"stable-window":              "6s",
	"scale-to-zero-grace-period": "6s",
}

// The ingress: Traefik runs on the node and serves Knative's Ingresses on ingressPort; the
// Service traefik/traefik (port 80) points at it, and Knative's cluster-local names
// (NAME.NS.svc.cluster.local) resolve to that Service.
const (
	ingressClass = "traefik.ingress.networking.knative.dev"
	ingressPort  = 8081
)

// documentSeparator is a line `---` between YAML documents.
var documentSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// knativeImages are the tarballs of Knative's images, imported into the node.
func knativeImages() ([]string, error) {
	dir, err := toolsDir()
	if err != nil {
		return nil, err
	}
	var tars []string
	for _, t := range KnativeTools {
		if strings.HasPrefix(t, "images/") {
			tars = append(tars, filepath.Join(dir, t))
		}
	}
	return tars, nil
}

// knativeImage is the local image of Knative's program cmd, built by make.
func knativeImage(cmd string) string { return "dev.local/knative/" + cmd + ":v0.50.0" }

// KnativeManifests returns Knative's core release YAML with its images replaced by the
// local ones, the autoscaler's timings set (KnativeTimings) and Traefik chosen as the
// ingress class in config-network. Nothing else of it changes.
func KnativeManifests(core []byte) ([]byte, error) {
	const ko = "ko://knative.dev/serving/cmd/"
	text := string(core)
	for _, cmd := range []string{"controller", "webhook", "activator", "autoscaler", "queue"} {
		text = strings.ReplaceAll(text, ko+cmd, knativeImage(cmd))
	}
	if i := strings.Index(text, "ko://"); i >= 0 {
		ref, _, _ := strings.Cut(text[i:], "\n")
		return nil, fmt.Errorf("Knative's YAML names an image the local build does not make: %s", ref)
	}
	var out bytes.Buffer
	set := map[string]map[string]string{
		"config-autoscaler": KnativeTimings,
		"config-network":    {"ingress-class": ingressClass},
	}
	found := 0
	for _, doc := range documentSeparator.Split(text, -1) {
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			return nil, err
		}
		if len(obj) == 0 {
			continue
		}
		meta, _ := obj["metadata"].(map[string]any)
		if values, ok := set[fmt.Sprint(meta["name"])]; ok && obj["kind"] == "ConfigMap" {
			data, _ := obj["data"].(map[string]any)
			if data == nil {
				data = map[string]any{}
			}
			for k, v := range values {
				data[k] = v
			}
			obj["data"] = data
			found++
		}
		b, err := yaml.Marshal(obj)
		if err != nil {
			return nil, err
		}
		out.WriteString("---\n")
		out.Write(b)
	}
	if found != len(set) {
		return nil, fmt.Errorf("Knative's YAML: found %d of the ConfigMaps config-autoscaler and config-network", found)
	}
	return out.Bytes(), nil
}

// installKnative applies Knative Serving's release YAMLs (CRDs first, server-side: they are
// large), waits until its four Deployments are Available, and starts Traefik as its ingress.
func (c *Cluster) installKnative(ctx context.Context, logf func(string, ...any)) error {
	dir, err := toolsDir()
	if err != nil {
		return err
	}
	crds := filepath.Join(dir, "knative", "serving-crds.yaml")
	if out, err := c.Kubectl(ctx, "apply", "--server-side", "-f", crds); err != nil {
		return fmt.Errorf("apply Knative's CRDs: %w: %s", err, out)
	}
	if out, err := c.Kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"); err != nil {
		return fmt.Errorf("Knative's CRDs: %w: %s", err, out)
	}
	core, err := os.ReadFile(filepath.Join(dir, "knative", "serving-core.yaml"))
	if err != nil {
		return err
	}
	manifests, err := KnativeManifests(core)
	if err != nil {
		return err
	}
	path := filepath.Join(c.Dir, "knative-serving-core.yaml")
	if err := os.WriteFile(path, manifests, 0o644); err != nil {
		return err
	}
	if out, err := c.Kubectl(ctx, "apply", "--server-side", "-f", path); err != nil {
		return fmt.Errorf("apply Knative Serving: %w: %s", err, out)
	}
	logf("Knative Serving v0.50.0 applied")
	if out, err := c.Kubectl(ctx, "wait", "-n", "knative-serving", "--for=condition=Available", "--timeout=240s", "deployment", "--all"); err != nil {
		return fmt.Errorf("Knative Serving's Deployments not Available: %w: %s\n%s", err, out, c.knativePods(ctx))
	}
	if err := c.startTraefik(ctx); err != nil {
		return err
	}
	logf("Traefik serving Knative's Ingresses at %s:%d (Service traefik.traefik.svc.cluster.local)", NodeIP, ingressPort)
	return nil
}

// knativePods describes knative-serving's pods, for an error message.
func (c *Cluster) knativePods(ctx context.Context) string {
	out, _ := c.Kubectl(ctx, "get", "pods", "-n", "knative-serving", "-o", "wide")
	return out
}

// startTraefik runs Traefik's Knative provider on the node, and the Service that Knative's
// cluster-local names point to (an EndpointSlice to the node's address: Traefik is a
// process of the node, not a pod).
func (c *Cluster) startTraefik(ctx context.Context) error {
	ns := "traefik"
	if _, err := c.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "traefik", Namespace: ns},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{
			Name: "http", Port: 80, TargetPort: intstr.FromInt32(ingressPort), Protocol: corev1.ProtocolTCP,
		}}},
	}
	if _, err := c.Clientset.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return err
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "traefik-node", Namespace: ns,
			Labels: map[string]string{discoveryv1.LabelServiceName: "traefik", discoveryv1.LabelManagedBy: "rollback-e2e"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{NodeIP}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](ingressPort), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	if _, err := c.Clientset.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		return err
	}
	entry := fmt.Sprintf("--entrypoints.web.address=%s:%d", NodeIP, ingressPort)
	path, err := ToolPath("traefik")
	if err != nil {
		return err
	}
	p, err := startWrapped(c.node.dir, c.wrap, []string{"KUBECONFIG=" + c.Kubeconfig}, "traefik", path,
		"--experimental.knative=true",
		"--providers.knative=true",
		"--providers.knative.publicEntrypoints=web",
		"--providers.knative.publicService.name=traefik",
		"--providers.knative.publicService.namespace="+ns,
		"--providers.knative.privateEntrypoints=web",
		"--providers.knative.privateService.name=traefik",
		"--providers.knative.privateService.namespace="+ns,
		entry,
		"--entrypoints.ping.address=127.0.0.1:8082",
		"--ping=true", "--ping.entrypoint=ping",
		"--log.level=INFO",
	)
	if err != nil {
		return err
	}
	c.node.processes = append(c.node.processes, p)
	return p.WaitReady(ctx, 60*time.Second, func(ctx context.Context) error {
		_, err := get(ctx, c.HTTP, "http://127.0.0.1:8082/ping", "")
		return err
	})
}
