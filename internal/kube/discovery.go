package kube

import (
	"context"
	"encoding/json"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

// Discovery reads the API server's discovery documents, which every authenticated client may
// read (RBAC's system:discovery role): it tells a resource type the API server does not serve
// from one the function may not read, which RBAC answers alike, 403, before the API server
// looks for the type. client-go's discovery package does more than this needs.
type Discovery struct{ client rest.Interface }

// NewDiscovery returns a Discovery for cfg.
func NewDiscovery(cfg *rest.Config) (*Discovery, error) {
	c := rest.CopyConfig(cfg)
	c.NegotiatedSerializer = codecs.WithoutConversion()
	c.AcceptContentTypes = runtime.ContentTypeJSON
	client, err := rest.UnversionedRESTClientFor(c)
	if err != nil {
		return nil, err
	}
	return &Discovery{client: client}, nil
}

// Serves reports whether the API server serves gvr: a group version it does not know is a
// 404 for its discovery document.
func (d *Discovery) Serves(ctx context.Context, gvr schema.GroupVersionResource) (bool, error) {
	raw, err := d.client.Get().AbsPath("/apis", gvr.Group, gvr.Version).Do(ctx).Raw()
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("discover %s: %w", gvr.GroupVersion(), err)
	}
	var list metav1.APIResourceList
	if err := json.Unmarshal(raw, &list); err != nil {
		return false, fmt.Errorf("discover %s: %w", gvr.GroupVersion(), err)
	}
	for _, r := range list.APIResources {
		if r.Name == gvr.Resource {
			return true, nil
		}
	}
	return false, nil
}
