package cluster

import (
	"context"
	"fmt"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
)

// Token returns a one-hour token for the ServiceAccount namespace/serviceAccount
// from the TokenRequest API, the same kind of token the kubelet mounts into a
// pod, so code run with it is authorized exactly as it would be in the cluster.
func (c *Cluster) Token(ctx context.Context, namespace, serviceAccount string) (string, error) {
	req := &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)},
	}
	resp, err := c.Clientset.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, serviceAccount, req, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for %s/%s: %w", namespace, serviceAccount, err)
	}
	return resp.Status.Token, nil
}

// ConfigFor returns a client configuration that acts as the ServiceAccount
// namespace/serviceAccount: its token and the apiserver's CA, and none of the
// admin's credentials, so RBAC decides what it may do.
func (c *Cluster) ConfigFor(ctx context.Context, namespace, serviceAccount string) (*rest.Config, error) {
	token, err := c.Token(ctx, namespace, serviceAccount)
	if err != nil {
		return nil, err
	}
	return &rest.Config{
		Host:            c.Host,
		BearerToken:     token,
		TLSClientConfig: c.tlsConfig(),
		Dial:            c.Config.Dial,
		QPS:             c.Config.QPS,
		Burst:           c.Config.Burst,
	}, nil
}

// WriteKubeconfig writes a kubeconfig file at path that reaches this cluster with
// token and whose context's namespace is namespace, so a process (kubectl, the
// function's binary) can be run as any identity with --kubeconfig or $KUBECONFIG.
func (c *Cluster) WriteKubeconfig(path, namespace, token string) error {
	const name = "local"
	cfg := clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{name: {Server: c.Host, CertificateAuthority: c.CAFile, TLSServerName: c.tlsConfig().ServerName}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{name: {Token: token}},
		Contexts:       map[string]*clientcmdapi.Context{name: {Cluster: name, AuthInfo: name, Namespace: namespace}},
		CurrentContext: name,
	}
	return clientcmd.WriteToFile(cfg, path)
}
