// Package cluster runs a real, local Kubernetes control plane (etcd,
// kube-apiserver, kube-controller-manager and kube-scheduler, from the pinned
// binaries `make tools` builds) for the end-to-end tests and the demo.
//
// By default there is no kubelet: pods are created, scheduled and bound to Nodes
// made by CreateNode, but never run. That is enough for rollouts, ReplicaSets and
// revisions, the scheduler's verdicts, RBAC and `kubectl rollout undo`.
//
// With Options.Node, the same control plane runs with a real node: containerd, runc
// and the bridge CNI, the kubelet, kube-proxy and CoreDNS, all inside a private
// network namespace with no route out, so pods really run, with tokens the kubelet
// mounts, and reach the apiserver through the kubernetes Service.
package cluster

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Options configure Start. The zero value is ready to use.
type Options struct {
	// Dir is the folder for etcd's data, certificates, keys, kubeconfigs and
	// one <server>.log per server. If empty, Start makes a temporary folder and
	// Stop removes it.
	Dir string
	// Log receives one line per step, for a person watching the demo start.
	Log io.Writer
	// Audit turns on the API server's audit log (every request, at the Metadata level), so
	// tests and benchmarks can count the requests a client made (AuditSince).
	Audit bool
	// Node runs the control plane and a real node (NodeName) in a private network
	// namespace (needs root, NodeTools and NodePrograms). Its addresses are reachable
	// only through Cluster.HTTP, Cluster.Config and Cluster.Wrap, never from the main
	// namespace.
	Node bool
	// Knative adds Knative Serving and its ingress (Traefik) to the node (implies Node;
	// needs KnativeTools).
	Knative bool
}

// Cluster is a running control plane. Its servers listen on 127.0.0.1 only.
type Cluster struct {
	// Config is an admin (system:masters) client configuration, with limits
	// high enough that tests are not slowed by client-side throttling.
	Config *rest.Config
	// Clientset is built from Config.
	Clientset kubernetes.Interface
	// Kubeconfig is the path of an admin kubeconfig file, for kubectl and for
	// processes the tests start.
	Kubeconfig string
	// Host is the apiserver's URL, https://127.0.0.1:Port (with a node, loopback inside
	// its network namespace).
	Host string
	// Port is the apiserver's port.
	Port int
	// CAFile is the apiserver's self-signed certificate bundle; clients verify
	// the apiserver against it, as pods would against their ca.crt.
	CAFile string
	// Dir holds the servers' logs (<server>.log) and state.
	Dir string
	// HTTP reaches the cluster's addresses: loopback, or with a node the pod, Service and
	// node addresses inside its network namespace (IP addresses only).
	HTTP *http.Client
	// Netns is the node's network namespace (`ip netns exec NAME ...`), empty without a node.
	Netns string

	node *node    // the real node, if Options.Node
	wrap []string // runs a server inside the node's namespaces, if any

	removeDir bool // Dir was made by Start, so Stop removes it
	// auditLog is the API server's audit log, when Options.Audit is set.
	auditLog string
	// stopReaping ends reapDeletedPods.
	stopReaping context.CancelFunc

	mu        sync.Mutex
	processes []*Process // in start order
}

// Timeouts for each step of Start. They are generous because the machine may be
// busy compiling or running other tests; a healthy start takes a few seconds.
const (
	etcdTimeout      = 30 * time.Second
	apiserverTimeout = 60 * time.Second
	// controllersTimeout bounds the wait for the controller-manager to create
	// the default namespace's ServiceAccount, its first visible work.
	controllersTimeout = 60 * time.Second
)

// Start starts etcd, kube-apiserver, kube-controller-manager and kube-scheduler
// and returns when the apiserver is ready and the controllers are working. On
// error every server already started is stopped; the folder is kept, and the
// error names it, so its logs can be read.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	began := time.Now()
	logf := func(format string, args ...any) {
		if opts.Log != nil {
			fmt.Fprintf(opts.Log, "[%5.1fs] %s\n", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
		}
	}
	c := &Cluster{Dir: opts.Dir}
	if c.Dir == "" {
		if c.Dir, err = os.MkdirTemp("", "rollback-cluster-"); err != nil {
			return nil, err
		}
		c.removeDir = true
	}
	if c.Dir, err = filepath.Abs(c.Dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.stopAll()
			err = fmt.Errorf("start control plane (logs in %s): %w", c.Dir, err)
		}
	}()

	c.HTTP = http.DefaultClient
	if opts.Node || opts.Knative {
		if c.node, err = newNode(ctx, c.Dir); err != nil {
			return nil, err
		}
		if opts.Knative {
			if c.node.images, err = knativeImages(); err != nil {
				return nil, err
			}
		}
		c.wrap = c.node.anchor.wrap()
		c.Netns = c.node.ns.name
		c.HTTP = c.node.ns.httpClient()
		logf("network namespace %s: node %s, no route out", c.Netns, NodeIP)
	}
	etcdURL, err := c.startEtcd(ctx)
	if err != nil {
		return nil, err
	}
	logf("etcd ready at %s", etcdURL)
	var extra []string
	if opts.Audit {
		if extra, err = c.auditFlags(); err != nil {
			return nil, err
		}
	}
	if err := c.startAPIServer(ctx, etcdURL, extra...); err != nil {
		return nil, err
	}
	logf("kube-apiserver ready at %s", c.Host)
	if err := c.startControllers(ctx); err != nil {
		return nil, err
	}
	if c.node != nil {
		logf("kube-controller-manager and kube-scheduler running")
		if err := c.node.start(ctx, c, logf); err != nil {
			return nil, err
		}
		logf("node %s Ready: containerd, kubelet, kube-proxy, CoreDNS", NodeName)
		if opts.Knative {
			if err := c.installKnative(ctx, logf); err != nil {
				return nil, err
			}
			logf("Knative Serving ready: controller, webhook, activator, autoscaler Available")
		}
	} else {
		// Without a kubelet, deleted pods are finished off by the harness.
		reapCtx, stopReaping := context.WithCancel(context.Background())
		c.stopReaping = stopReaping
		go c.reapDeletedPods(reapCtx)
	}
	if c.node != nil {
		logf("cluster ready in %.1fs (logs in %s)", time.Since(began).Seconds(), c.Dir)
		return c, nil
	}
	logf("kube-controller-manager and kube-scheduler running; control plane ready in %.1fs (logs in %s)", time.Since(began).Seconds(), c.Dir)
	return c, nil
}

// StartT starts a control plane for the test t and stops it when t ends. It
// skips or fails t, as Require does, when the tools are missing. The folder
// with the servers' logs is removed when t passes and kept, with its path
// logged, when t fails.
func StartT(t testing.TB) *Cluster {
	t.Helper()
	Require(t, ControlPlaneTools...)
	dir, err := os.MkdirTemp("", "rollback-cluster-")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	c, err := Start(ctx, Options{Dir: dir, Log: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			t.Logf("control plane logs kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return c
}

// testWriter shows Start's progress lines in the test's log, which go test
// prints with -v or when the test fails.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// Stop stops the servers in the reverse order of their start: each gets SIGTERM
// and, if still running after a few seconds, SIGKILL. It then removes the
// folder if Start made it. Stop is safe to call more than once.
func (c *Cluster) Stop() error {
	if c.stopReaping != nil {
		c.stopReaping()
	}
	err := c.stopAll()
	if c.removeDir {
		c.removeDir = false
		return errors.Join(err, os.RemoveAll(c.Dir))
	}
	return err
}

// stopAll stops the node's daemons and pods, then the control plane, then removes the
// node's namespaces and cgroups (the control plane runs inside them).
func (c *Cluster) stopAll() error {
	var err error
	if c.node != nil {
		err = c.node.stopDaemons()
	}
	c.stopProcesses()
	if c.node != nil {
		err = errors.Join(err, c.node.release())
		c.node = nil
	}
	return err
}

func (c *Cluster) stopProcesses() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.processes) - 1; i >= 0; i-- {
		c.processes[i].Stop()
	}
	c.processes = nil
}

func (c *Cluster) add(p *Process) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.processes = append(c.processes, p)
}

// startEtcd starts a single-member etcd and returns its client URL.
func (c *Cluster) startEtcd(ctx context.Context) (string, error) {
	var clientURL string
	args := func() ([]string, error) {
		clientPort, peerPort, err := c.ports(2379, 2380)
		if err != nil {
			return nil, err
		}
		clientURL = "http://127.0.0.1:" + strconv.Itoa(clientPort)
		// The peer port is unused by a single member, but etcd listens on it
		// anyway, and its default (2380) may be taken.
		peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
		return []string{
			"--name=default",
			"--data-dir=" + filepath.Join(c.Dir, "etcd"),
			"--listen-client-urls=" + clientURL,
			"--advertise-client-urls=" + clientURL,
			"--listen-peer-urls=" + peerURL,
			"--initial-advertise-peer-urls=" + peerURL,
			"--initial-cluster=default=" + peerURL,
			"--log-level=warn",
			// The data is thrown away after the test; not waiting for the disk
			// makes every write to the apiserver faster.
			"--unsafe-no-fsync",
		}, nil
	}
	ready := func(ctx context.Context) error {
		body, err := get(ctx, c.HTTP, clientURL+"/health", "")
		if err != nil {
			return err
		}
		if !strings.Contains(body, `"health":"true"`) {
			return fmt.Errorf("/health: %s", body)
		}
		return nil
	}
	p, err := c.startToolServer(ctx, "etcd", etcdTimeout, args, ready)
	if err != nil {
		return "", err
	}
	c.add(p)
	return clientURL, nil
}

// startAPIServer starts kube-apiserver on etcdURL, with an admin token and a
// service-account signing key made here, and waits until /readyz says ok.
func (c *Cluster) startAPIServer(ctx context.Context, etcdURL string, extra ...string) error {
	token := make([]byte, 16)
	if _, err := rand.Read(token); err != nil {
		return err
	}
	adminToken := hex.EncodeToString(token)
	tokenFile := filepath.Join(c.Dir, "tokens.csv")
	if err := os.WriteFile(tokenFile, []byte(adminToken+`,admin,admin,"system:masters"`+"\n"), 0o600); err != nil {
		return err
	}
	keyFile := filepath.Join(c.Dir, "service-account.key")
	if err := writeRSAKey(keyFile); err != nil {
		return err
	}
	certDir := filepath.Join(c.Dir, "certs")
	// The apiserver writes its self-signed certificate (with its own CA, and
	// 127.0.0.1 among the names) here when it starts.
	c.CAFile = filepath.Join(certDir, "apiserver.crt")

	args := func() ([]string, error) {
		port, _, err := c.ports(6443, 0)
		if err != nil {
			return nil, err
		}
		c.Port = port
		c.Host = "https://127.0.0.1:" + strconv.Itoa(port)
		common := []string{
			"--etcd-servers=" + etcdURL,
			"--secure-port=" + strconv.Itoa(port),
			"--cert-dir=" + certDir,
			"--token-auth-file=" + tokenFile,
			"--authorization-mode=RBAC",
			"--service-account-issuer=https://kubernetes.default.svc",
			"--service-account-key-file=" + keyFile,
			"--service-account-signing-key-file=" + keyFile,
		}
		common = append(common, extra...)
		if c.node != nil {
			// Pods reach it through the kubernetes Service (ServiceCIDR's first
			// address), whose endpoint is the node's address; loopback serves the
			// node's own daemons. Its certificate names both.
			return append(common,
				"--bind-address=0.0.0.0",
				"--advertise-address="+NodeIP,
				"--service-cluster-ip-range="+ServiceCIDR,
				// No DNS name for the node: kubectl logs and exec go to its address.
				"--kubelet-preferred-address-types=InternalIP,Hostname",
			), nil
		}
		return append(common,
			"--bind-address=127.0.0.1",
			"--advertise-address=127.0.0.1",
			"--service-cluster-ip-range=10.0.0.0/24",
			// The apiserver would publish 127.0.0.1 as the endpoint of the
			// default/kubernetes Service, which validation refuses (loopback),
			// logging an error every few seconds. No pod runs here to use it.
			"--endpoint-reconciler-type=none",
		), nil
	}
	ready := func(ctx context.Context) error {
		// The certificate appears only once the apiserver has made it. The client is made
		// for each check: one made while the file was still being written (or by an
		// earlier attempt of the apiserver) would distrust the apiserver for good.
		// (client-go caches transports by CA file name, so the data is handed over.)
		ca, err := os.ReadFile(c.CAFile)
		if err != nil {
			return fmt.Errorf("no certificate yet: %w", err)
		}
		tls := c.tlsConfig()
		tls.CAFile, tls.CAData = "", ca
		client, err := rest.HTTPClientFor(&rest.Config{Host: c.Host, TLSClientConfig: tls, Dial: c.dial()})
		if err != nil {
			return err
		}
		defer client.CloseIdleConnections()
		body, err := get(ctx, client, c.Host+"/readyz", adminToken)
		if err != nil {
			return err
		}
		if body != "ok" {
			return fmt.Errorf("/readyz: %s", body)
		}
		return nil
	}
	p, err := c.startToolServer(ctx, "kube-apiserver", apiserverTimeout, args, ready)
	if err != nil {
		return err
	}
	c.add(p)

	c.Config = &rest.Config{
		Host:            c.Host,
		BearerToken:     adminToken,
		TLSClientConfig: c.tlsConfig(),
		QPS:             100,
		Burst:           200,
		Dial:            c.dial(),
	}
	if c.Clientset, err = kubernetes.NewForConfig(c.Config); err != nil {
		return err
	}
	c.Kubeconfig = filepath.Join(c.Dir, "admin.kubeconfig")
	return c.WriteKubeconfig(c.Kubeconfig, metav1.NamespaceDefault, adminToken)
}

// startControllers starts kube-controller-manager and kube-scheduler as admin
// and waits until the controller-manager has made the default namespace's
// ServiceAccount. Neither serves anything (--secure-port=0), so that is the
// readiness signal.
func (c *Cluster) startControllers(ctx context.Context) error {
	cm, err := c.startControllerManager()
	if err != nil {
		return err
	}
	scheduler, err := c.startTool("kube-scheduler",
		"--kubeconfig="+c.Kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
	)
	if err != nil {
		return err
	}
	c.add(scheduler)
	err = cm.WaitReady(ctx, controllersTimeout, func(ctx context.Context) error {
		_, err := c.Clientset.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	if err != nil {
		return err
	}
	if scheduler.Exited() {
		return fmt.Errorf("kube-scheduler exited: %v\n--- last lines of %s ---\n%s", scheduler.Err(), scheduler.LogPath, scheduler.Tail(30))
	}
	return nil
}

// startControllerManager starts kube-controller-manager and adds it to the cluster.
func (c *Cluster) startControllerManager() (*Process, error) {
	// deployment and replicaset make rollouts and revisions; statefulset and
	// daemonset make the ControllerRevisions their undo uses; serviceaccount
	// makes the default ServiceAccount pods need; garbagecollector removes
	// what a deleted owner owned. A real node needs what a real cluster runs:
	// every controller on by default (node lifecycle lifts the not-ready taint,
	// the root CA publisher makes the ConfigMap token volumes mount, endpoints
	// feed kube-proxy and CoreDNS, pod GC, resource quotas, RBAC aggregation).
	controllers := "deployment,replicaset,statefulset,daemonset,garbagecollector,serviceaccount,serviceaccount-token"
	if c.node != nil {
		controllers = "*"
	}
	cm, err := c.startTool("kube-controller-manager",
		"--kubeconfig="+c.Kubeconfig,
		"--controllers="+controllers,
		"--service-account-private-key-file="+filepath.Join(c.Dir, "service-account.key"),
		"--root-ca-file="+c.CAFile,
		"--leader-elect=false",
		"--secure-port=0",
	)
	if err != nil {
		return nil, err
	}
	c.add(cm)
	return cm, nil
}

// PauseControllers stops kube-controller-manager, so a test can put a workload in a state
// the controllers would fix at once (a template no revision records yet), and returns the
// function that starts it again.
func (c *Cluster) PauseControllers() (resume func() error) {
	c.mu.Lock()
	for i, p := range c.processes {
		if p.Name == "kube-controller-manager" {
			p.Stop()
			c.processes = append(c.processes[:i], c.processes[i+1:]...)
			break
		}
	}
	c.mu.Unlock()
	return func() error {
		_, err := c.startControllerManager()
		return err
	}
}

// writeRSAKey writes a new RSA key as PEM: the apiserver signs service-account
// tokens with it and the controller-manager signs legacy token Secrets.
func writeRSAKey(path string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	block := &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}
	return os.WriteFile(path, pem.EncodeToMemory(block), 0o600)
}

// get returns the body of a GET of url, with token as bearer token if set.
func get(ctx context.Context, client *http.Client, url, token string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return strings.TrimSpace(string(body)), nil
}

// ports returns the ports a server listens on: fixed ones inside the node's private
// namespace, where nothing else listens, or free loopback ports from the kernel.
func (c *Cluster) ports(fixed1, fixed2 int) (int, int, error) {
	if c.node != nil {
		return fixed1, fixed2, nil
	}
	p1, err := FreePort()
	if err != nil {
		return 0, 0, err
	}
	p2, err := FreePort()
	return p1, p2, err
}

// dial is the dialer of clients of the cluster: nil (the default) on loopback, or one
// that connects from inside the node's namespace.
func (c *Cluster) dial() func(ctx context.Context, network, address string) (net.Conn, error) {
	if c.node == nil {
		return nil
	}
	return c.node.ns.dial
}

// Dial opens a connection to a cluster address: from inside the node's network namespace
// with a node, else from here (loopback).
func (c *Cluster) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	if d := c.dial(); d != nil {
		return d(ctx, network, address)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, address)
}

// Listen listens on address inside the node's network namespace, for a server of this
// process that pods reach (at NodeIP); without a node, on loopback here.
func (c *Cluster) Listen(network, address string) (net.Listener, error) {
	if c.node == nil {
		return net.Listen(network, address)
	}
	return c.node.ns.listenInside(network, address)
}

// Wrap is the command prefix that runs a program inside the node's network and mount
// namespaces (its DNS is the cluster's), or nil without a node.
func (c *Cluster) Wrap() []string { return c.wrap }

// tlsConfig verifies the apiserver against its certificate. With a node, clients connect to
// loopback inside the namespace (a client that is not there reaches nothing, not the node's
// address from the main namespace), and the certificate names the node's address, the one
// it advertises.
func (c *Cluster) tlsConfig() rest.TLSClientConfig {
	cfg := rest.TLSClientConfig{CAFile: c.CAFile}
	if c.node != nil {
		cfg.ServerName = NodeIP
	}
	return cfg
}
