package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// NodeName is the name the node's kubelet registers.
const NodeName = "node-1"

// NodeTools are what a real node needs besides the control plane: built by `make node-tools`
// into .bin/ (the images as tarballs under .bin/images).
var NodeTools = []string{"kubelet", "kube-proxy", "coredns",
	"images/pause.tar", "images/app.tar", "images/app-crash.tar", "images/rollback.tar", "images/func.tar"}

// NodePrograms are the Debian packages' programs the node runs (`make node-packages`
// installs them); they are looked up on $PATH and in /usr/lib/cni.
var NodePrograms = []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "conntrack", "nsenter", "unshare", "ip",
	"/usr/lib/cni/bridge", "/usr/lib/cni/host-local", "/usr/lib/cni/loopback"}

// Images the node has, imported from .bin/images when it starts.
const (
	PauseImage    = "dev.local/pause:3.10"
	AppImage      = "dev.local/app:v1"
	CrashImage    = "dev.local/app:v2-crash"
	RollbackImage = "dev.local/alert-rollback:e2e"
	FuncImage     = "dev.local/alert-rollback-func:e2e"
)

// Timeouts of the node's steps; a healthy node is Ready within seconds.
const (
	containerdTimeout = 30 * time.Second
	nodeReadyTimeout  = 90 * time.Second
)

// node is the real node: containerd, kubelet, kube-proxy and CoreDNS, in the network
// namespace ns and the mount namespace the anchor holds.
type node struct {
	id         string // names its network namespaces and cgroup folders (nodePrefix)
	dir        string
	ns         *netns
	anchor     *anchor
	cgroupRoot string
	socket     string     // containerd's
	processes  []*Process // in start order
	images     []string   // extra image tarballs to import (Knative's)
	// sysctls are the host's settings before the node was made; release checks that they
	// are the same after.
	sysctls map[string]string
}

// requireNodePrograms says which of the node's Debian programs are missing.
func requireNodePrograms() error {
	var missing []string
	for _, p := range NodePrograms {
		if strings.HasPrefix(p, "/") {
			if _, err := os.Stat(p); err != nil {
				missing = append(missing, p)
			}
			continue
		}
		if _, err := exec.LookPath(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the node needs %s: run `make node-packages` (as root) to install them", strings.Join(missing, ", "))
	}
	if os.Geteuid() != 0 {
		return errors.New("a real node needs root (network and mount namespaces, cgroups)")
	}
	return nil
}

// newNode makes the node's namespaces, its anchor and its cgroup folder; its daemons start
// later, once the control plane runs inside it.
func newNode(ctx context.Context, dir string) (_ *node, err error) {
	if err := requireNodePrograms(); err != nil {
		return nil, err
	}
	suffix := make([]byte, 3)
	if _, err := rand.Read(suffix); err != nil {
		return nil, err
	}
	for _, what := range sweepStale() {
		fmt.Fprintf(os.Stderr, "removed what an earlier run left behind: %s\n", what)
	}
	id := nodePrefix + hex.EncodeToString(suffix)
	n := &node{id: id, dir: filepath.Join(dir, "node"), cgroupRoot: "/" + id, sysctls: readSysctls()}
	n.socket = filepath.Join(n.dir, "containerd", "containerd.sock")
	defer func() {
		if err != nil {
			n.stop()
		}
	}()
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return nil, err
	}
	// Every process of the node resolves names with the cluster's DNS; there is no other.
	resolv := fmt.Sprintf("nameserver %s\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n", NodeIP)
	if err := os.WriteFile(filepath.Join(n.dir, "resolv.conf"), []byte(resolv), 0o644); err != nil {
		return nil, err
	}
	if n.ns, err = newNetns(ctx, id); err != nil {
		return nil, err
	}
	if n.anchor, err = startAnchor(ctx, n.ns, n.dir); err != nil {
		return nil, err
	}
	if err := makeCgroupRoot(n.cgroupRoot); err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	return n, nil
}

// start starts containerd (and imports the images), the kubelet, kube-proxy and CoreDNS,
// and returns once the Node is Ready.
func (n *node) start(ctx context.Context, c *Cluster, logf func(string, ...any)) error {
	if err := n.startContainerd(ctx); err != nil {
		return err
	}
	logf("containerd ready")
	if err := n.importImages(ctx); err != nil {
		return err
	}
	logf("images imported")
	if err := n.startKubelet(c); err != nil {
		return err
	}
	if err := n.startKubeProxy(c); err != nil {
		return err
	}
	if err := n.startCoreDNS(ctx, c); err != nil {
		return err
	}
	logf("CoreDNS ready at %s:53", NodeIP)
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, nodeReadyTimeout, true, func(ctx context.Context) (bool, error) {
		for _, p := range n.processes {
			if p.Exited() {
				return false, fmt.Errorf("%s exited: %v\n--- last lines of %s ---\n%s", p.Name, p.Err(), p.LogPath, p.Tail(30))
			}
		}
		node, err := c.Clientset.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				return len(node.Spec.Taints) == 0, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("node %s not Ready: %w", NodeName, err)
	}
	return nil
}

// run starts the pinned tool name inside the node, or, for containerd (a Debian package),
// the program on $PATH.
func (n *node) run(name string, args ...string) (*Process, error) {
	path, err := ToolPath(name)
	if name == "containerd" {
		path, err = exec.LookPath(name)
	}
	if err != nil {
		return nil, err
	}
	p, err := startWrapped(n.dir, n.anchor.wrap(), nil, name, path, args...)
	if err != nil {
		return nil, err
	}
	n.processes = append(n.processes, p)
	return p, nil
}

// containerdConfig is containerd's configuration: its own root, state and socket; runc with
// cgroupfs; the CNI bridge; and the two settings this machine needs: no oom_score_adj below
// the daemon's own (it lacks CAP_SYS_RESOURCE) and pod network namespaces under the state
// folder (inside the node's mount namespace).
const containerdConfig = `version = 2
root = "{{D}}/containerd/root"
state = "{{D}}/containerd/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{{D}}/containerd/containerd.sock"
[ttrpc]
  address = "{{D}}/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{{PAUSE}}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{{D}}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{{D}}/cni/net.d"
`

// cniConfig is the pod network: a bridge on the node, pods in PodCIDR with the bridge as
// their gateway, and nothing beyond the node (which has no way out).
const cniConfig = `{
  "cniVersion": "1.0.0",
  "name": "rollback-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "{{PODCIDR}}"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "{{D}}/cni/ipam"
      }
    },
    {"type": "loopback"}
  ]
}
`

func (n *node) render(s string) string {
	return strings.NewReplacer("{{D}}", n.dir, "{{PAUSE}}", PauseImage, "{{PODCIDR}}", PodCIDR,
		"{{NODEIP}}", NodeIP, "{{CGROUPROOT}}", n.cgroupRoot, "{{NODENAME}}", NodeName).Replace(s)
}

func (n *node) write(name, content string) (string, error) {
	p := filepath.Join(n.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", err
	}
	return p, os.WriteFile(p, []byte(n.render(content)), 0o644)
}

func (n *node) startContainerd(ctx context.Context) error {
	cfg, err := n.write("containerd/config.toml", containerdConfig)
	if err != nil {
		return err
	}
	if _, err := n.write("cni/net.d/10-bridge.conflist", cniConfig); err != nil {
		return err
	}
	p, err := n.run("containerd", "--config", cfg)
	if err != nil {
		return err
	}
	return p.WaitReady(ctx, containerdTimeout, func(ctx context.Context) error {
		_, err := n.ctr(ctx, "version")
		return err
	})
}

// ctr runs containerd's client on the node's containerd, in the namespace the CRI uses.
func (n *node) ctr(ctx context.Context, args ...string) (string, error) {
	path, err := exec.LookPath("ctr")
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, path, append([]string{"--address", n.socket, "--namespace", "k8s.io"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// importImages loads the images built by make (no registry: the tarballs go straight into
// containerd, unpacked for its snapshotter).
func (n *node) importImages(ctx context.Context) error {
	dir, err := toolsDir()
	if err != nil {
		return err
	}
	var tars []string
	for _, t := range NodeTools {
		if strings.HasPrefix(t, "images/") {
			tars = append(tars, filepath.Join(dir, t))
		}
	}
	tars = append(tars, n.images...)
	for _, t := range tars {
		if _, err := n.ctr(ctx, "images", "import", "--platform", "linux/amd64", t); err != nil {
			return fmt.Errorf("import %s: %w", t, err)
		}
	}
	return nil
}

// kubeletConfig is the KubeletConfiguration. The settings that differ from a production
// node are the ones this machine needs: cgroup v1 with cgroupfs under a folder of the node's
// own, swap allowed, no oom_score_adj, and eviction thresholds a shared disk cannot trip.
// Its API port answers anyone (inside the private namespace only), so kubectl logs works
// without client certificates.
const kubeletConfig = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {{NODEIP}}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
containerRuntimeEndpoint: unix://{{D}}/containerd/containerd.sock
cgroupDriver: cgroupfs
cgroupRoot: {{CGROUPROOT}}
failCgroupV1: false
failSwapOn: false
oomScoreAdj: 0
protectKernelDefaults: false
volumePluginDir: {{D}}/kubelet/volume-plugins
podLogsDir: /var/log/pods
resolvConf: {{D}}/resolv.conf
clusterDNS: [{{NODEIP}}]
clusterDomain: cluster.local
serializeImagePulls: false
maxPods: 110
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
`

func (n *node) startKubelet(c *Cluster) error {
	cfg, err := n.write("kubelet/config.yaml", kubeletConfig)
	if err != nil {
		return err
	}
	_, err = n.run("kubelet",
		"--config="+cfg,
		"--kubeconfig="+c.Kubeconfig,
		"--hostname-override="+NodeName,
		"--node-ip="+NodeIP,
		"--cert-dir="+filepath.Join(n.dir, "kubelet", "pki"),
	)
	return err
}

// kubeProxyConfig leaves the host's conntrack settings alone (they are not per namespace
// here), and serves node ports on the node's address only.
const kubeProxyConfig = `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {{KUBECONFIG}}
hostnameOverride: {{NODENAME}}
mode: iptables
clusterCIDR: {{PODCIDR}}
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
nodePortAddresses: [{{NODEIP}}/32]
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
`

func (n *node) startKubeProxy(c *Cluster) error {
	cfg, err := n.write("kube-proxy/config.yaml", strings.ReplaceAll(kubeProxyConfig, "{{KUBECONFIG}}", c.Kubeconfig))
	if err != nil {
		return err
	}
	_, err = n.run("kube-proxy", "--config="+cfg)
	return err
}

// corefile serves the cluster's names on the node's address and nothing else: no forward
// plugin, so a name outside cluster.local is never looked up anywhere.
const corefile = `.:53 {
    bind {{NODEIP}}
    errors
    health 127.0.0.1:8180
    ready 127.0.0.1:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig {{KUBECONFIG}}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
`

func (n *node) startCoreDNS(ctx context.Context, c *Cluster) error {
	cfg, err := n.write("coredns/Corefile", strings.ReplaceAll(corefile, "{{KUBECONFIG}}", c.Kubeconfig))
	if err != nil {
		return err
	}
	p, err := n.run("coredns", "-conf", cfg)
	if err != nil {
		return err
	}
	client := n.ns.httpClient()
	return p.WaitReady(ctx, 60*time.Second, func(ctx context.Context) error {
		_, err := get(ctx, client, "http://127.0.0.1:8181/ready", "")
		return err
	})
}

// stop ends everything the node started and removes what it made: stopDaemons, then
// release. It is safe on a node half started.
func (n *node) stop() error {
	return errors.Join(n.stopDaemons(), n.release())
}

// stopDaemons stops the kubelet first, so it restarts nothing; then the pods' processes,
// found in the node's cgroups; then kube-proxy, CoreDNS and containerd.
func (n *node) stopDaemons() error {
	if n == nil {
		return nil
	}
	var errs []error
	for i := len(n.processes) - 1; i >= 0; i-- {
		if n.processes[i].Name == "kubelet" {
			n.processes[i].Stop()
		}
	}
	if err := killAll(cgroupProcs(n.cgroupRoot)); err != nil {
		errs = append(errs, fmt.Errorf("pods' processes: %w", err))
	}
	for i := len(n.processes) - 1; i >= 0; i-- {
		n.processes[i].Stop()
	}
	n.processes = nil
	return errors.Join(errs...)
}

// release removes what the node made outside its folder, once its daemons and the control
// plane have stopped: whatever is left in its mount namespace (containerd's shims), the
// namespace itself (its mounts go with it), the cgroup folders and the network namespaces.
func (n *node) release() error {
	if n == nil {
		return nil
	}
	var errs []error
	if n.anchor != nil {
		if ns, err := n.anchor.mountNS(); err == nil {
			if err := killAll(processesIn(ns, n.anchor.pid())); err != nil {
				errs = append(errs, fmt.Errorf("processes left in the node: %w", err))
			}
		}
		n.anchor.stop()
		n.anchor = nil
	}
	if err := removeCgroupRoot(n.cgroupRoot); err != nil {
		errs = append(errs, fmt.Errorf("cgroups: %w", err))
	}
	if n.ns != nil {
		if err := n.ns.remove(); err != nil {
			errs = append(errs, err)
		}
		n.ns = nil
	}
	if len(errs) == 0 {
		errs = append(errs, n.leftovers(n.sysctls))
	}
	return errors.Join(errs...)
}
