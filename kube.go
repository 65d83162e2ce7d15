package function

import (
	"fmt"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/sre-kit/alert-rollback/internal/gitops"
	"github.com/sre-kit/alert-rollback/internal/kube"
)

// clients are what the function talks to the cluster with, built once at start.
type clients struct {
	kube kube.Client
	// dynamic reads and patches Argo CD's and Flux's objects, whose Go types the function
	// does not import.
	dynamic dynamic.Interface
	// discovery tells whether Argo CD is installed (nil: assume it is).
	discovery gitops.Discovery
	// namespace is the function's own.
	namespace string
}

// kubeClient builds the clients the function uses, from KUBECONFIG or ~/.kube/config
// when there is one, else from the pod's service account (client-go's deferred loading does
// exactly that). The function's own namespace comes the same way: the kubeconfig context's,
// or the service account's namespace file.
func kubeClient(c config) (clients, error) {
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		clientcmd.NewDefaultClientConfigLoadingRules(), &clientcmd.ConfigOverrides{})
	rc, err := cc.ClientConfig()
	if err != nil {
		return clients{}, err
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return clients{}, fmt.Errorf("own namespace: %w", err)
	}
	// client-go's defaults (5 QPS, burst 10) would throttle a burst of notifications
	// after the first few reads.
	rc.QPS, rc.Burst = c.qps, c.burst
	rc.Timeout = c.apiTimeout
	rc.UserAgent = "alert-rollback"
	// A just-restarted API server refuses requests until its RBAC caches fill: ask again
	// before a 401 or 403 counts (see kube.RetryAuthz).
	rc.Wrap(kube.RetryAuthz)
	client, err := kube.New(rc)
	if err != nil {
		return clients{}, err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return clients{}, err
	}
	disco, err := kube.NewDiscovery(rc)
	if err != nil {
		return clients{}, err
	}
	return clients{kube: client, dynamic: dyn, discovery: disco, namespace: ns}, nil
}
