// Package kube is the function's Kubernetes client: the few resources it reads and writes,
// each with only the verbs it uses, over a scheme that knows apps/v1, core/v1 and
// coordination.k8s.io/v1 (the budget's Lease) alone.
//
// client-go's clientset (kubernetes.Interface) and each of its typed clients register every
// API group of k8s.io/api in one scheme (k8s.io/client-go/kubernetes/scheme), which made up
// about a third of the function's binary. The clients here make the REST calls client-go's
// typed clients make (k8s.io/client-go/gentype, over a rest.RESTClient), so requests,
// errors, rate limiting and timeouts are client-go's own. A fake clientset satisfies Client
// through package clientset, for unit tests.
package kube

import (
	"context"
	"fmt"
	"net/http"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
)

// Object is a namespaced resource the function reads and patches, with its list type L.
// client-go's typed clients have these methods with these very signatures.
type Object[T, L any] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	List(ctx context.Context, opts metav1.ListOptions) (L, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (T, error)
}

// Events are written through client-go's event broadcaster (see EventSink).
type Events interface {
	Create(ctx context.Context, event *corev1.Event, opts metav1.CreateOptions) (*corev1.Event, error)
	Update(ctx context.Context, event *corev1.Event, opts metav1.UpdateOptions) (*corev1.Event, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (*corev1.Event, error)
}

// Leases hold the rollback budget (package budget).
type Leases interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*coordinationv1.Lease, error)
	Create(ctx context.Context, lease *coordinationv1.Lease, opts metav1.CreateOptions) (*coordinationv1.Lease, error)
	Update(ctx context.Context, lease *coordinationv1.Lease, opts metav1.UpdateOptions) (*coordinationv1.Lease, error)
}

// Client is what the function asks of the API server, by namespace.
type Client interface {
	Deployments(ns string) Object[*appsv1.Deployment, *appsv1.DeploymentList]
	ReplicaSets(ns string) Object[*appsv1.ReplicaSet, *appsv1.ReplicaSetList]
	StatefulSets(ns string) Object[*appsv1.StatefulSet, *appsv1.StatefulSetList]
	DaemonSets(ns string) Object[*appsv1.DaemonSet, *appsv1.DaemonSetList]
	ControllerRevisions(ns string) Object[*appsv1.ControllerRevision, *appsv1.ControllerRevisionList]
	Pods(ns string) Object[*corev1.Pod, *corev1.PodList]
	Events(ns string) Events
	Leases(ns string) Leases
	// Dynamic reads and writes the kinds outside apps/v1 (an Argo Rollout), as unstructured
	// objects in JSON: their Go types would bring their projects' modules and schemes.
	Dynamic() dynamic.Interface
}

var (
	scheme         = runtime.NewScheme()
	codecs         = serializer.NewCodecFactory(scheme)
	parameterCodec = runtime.NewParameterCodec(scheme)
)

func init() {
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	utilruntime.Must(appsv1.AddToScheme(scheme))
	utilruntime.Must(corev1.AddToScheme(scheme))
	utilruntime.Must(coordinationv1.AddToScheme(scheme))
}

// Scheme knows apps/v1, core/v1 and coordination.k8s.io/v1, for client-go's event recorder.
func Scheme() *runtime.Scheme { return scheme }

type client struct {
	apps, core, coordination rest.Interface
	dynamic                  dynamic.Interface
}

// New returns a Client for cfg. As client-go's clientset does, its API groups share one
// HTTP client and one rate limiter (cfg.QPS, cfg.Burst).
func New(cfg *rest.Config) (Client, error) {
	c := rest.CopyConfig(cfg)
	if c.RateLimiter == nil && c.QPS > 0 {
		if c.Burst <= 0 {
			return nil, fmt.Errorf("burst is required to be greater than 0 when RateLimiter is not set and QPS is set to greater than 0")
		}
		c.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(c.QPS, c.Burst)
	}
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	// Outermost, so that it sees each attempt client-go makes of a request (see Sent).
	c.Wrap(recordAttempts)
	c.NegotiatedSerializer = codecs.WithoutConversion()
	// Protocol buffers, as Kubernetes' own components speak to the API server: smaller than
	// JSON, and quicker to encode there and to decode here (a ReplicaSet list is most of
	// an undo's bytes). JSON stays acceptable for anything served without protobuf.
	c.ContentType = runtime.ContentTypeProtobuf
	c.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	httpClient, err := rest.HTTPClientFor(c)
	if err != nil {
		return nil, err
	}
	apps, err := restClient(c, httpClient, appsv1.SchemeGroupVersion, "/apis")
	if err != nil {
		return nil, err
	}
	core, err := restClient(c, httpClient, corev1.SchemeGroupVersion, "/api")
	if err != nil {
		return nil, err
	}
	coordination, err := restClient(c, httpClient, coordinationv1.SchemeGroupVersion, "/apis")
	if err != nil {
		return nil, err
	}
	// The same HTTP client and rate limiter; the dynamic client speaks JSON whatever c says.
	dyn, err := dynamic.NewForConfigAndClient(c, httpClient)
	if err != nil {
		return nil, err
	}
	return &client{apps: apps, core: core, coordination: coordination, dynamic: dyn}, nil
}

func restClient(cfg *rest.Config, h *http.Client, gv schema.GroupVersion, apiPath string) (*rest.RESTClient, error) {
	c := *cfg
	c.GroupVersion, c.APIPath = &gv, apiPath
	return rest.RESTClientForConfigAndClient(&c, h)
}

// resource is one namespaced resource of one API group: the REST calls client-go's typed
// clients make (k8s.io/client-go/gentype), written out. gentype itself also holds the
// fake clients, which link client-go's testing package and its managed-fields machinery.
type resource[T interface {
	runtime.Object
	metav1.Object
}, L runtime.Object] struct {
	client  rest.Interface
	ns, res string
	newT    func() T
	newL    func() L
}

func object[T interface {
	runtime.Object
	metav1.Object
}, L runtime.Object](res string, c rest.Interface, ns string, newT func() T, newL func() L) resource[T, L] {
	return resource[T, L]{client: c, ns: ns, res: res, newT: newT, newL: newL}
}

func (r resource[T, L]) Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error) {
	out := r.newT()
	err := r.client.Get().NamespaceIfScoped(r.ns, r.ns != "").Resource(r.res).Name(name).
		VersionedParams(&opts, parameterCodec).Do(ctx).Into(out)
	return out, err
}

func (r resource[T, L]) List(ctx context.Context, opts metav1.ListOptions) (L, error) {
	out := r.newL()
	var timeout time.Duration
	if opts.TimeoutSeconds != nil {
		timeout = time.Duration(*opts.TimeoutSeconds) * time.Second
	}
	err := r.client.Get().NamespaceIfScoped(r.ns, r.ns != "").Resource(r.res).
		VersionedParams(&opts, parameterCodec).Timeout(timeout).Do(ctx).Into(out)
	return out, err
}

func (r resource[T, L]) Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (T, error) {
	through(ctx)
	out := r.newT()
	err := r.client.Patch(pt).NamespaceIfScoped(r.ns, r.ns != "").Resource(r.res).Name(name).
		SubResource(subresources...).VersionedParams(&opts, parameterCodec).Body(data).Do(ctx).Into(out)
	return out, err
}

func (r resource[T, L]) Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error) {
	through(ctx)
	out := r.newT()
	err := r.client.Post().NamespaceIfScoped(r.ns, r.ns != "").Resource(r.res).
		VersionedParams(&opts, parameterCodec).Body(obj).Do(ctx).Into(out)
	return out, err
}

func (r resource[T, L]) Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error) {
	through(ctx)
	out := r.newT()
	err := r.client.Put().NamespaceIfScoped(r.ns, r.ns != "").Resource(r.res).Name(obj.GetName()).
		VersionedParams(&opts, parameterCodec).Body(obj).Do(ctx).Into(out)
	return out, err
}

func (c *client) Deployments(ns string) Object[*appsv1.Deployment, *appsv1.DeploymentList] {
	return object("deployments", c.apps, ns, func() *appsv1.Deployment { return &appsv1.Deployment{} },
		func() *appsv1.DeploymentList { return &appsv1.DeploymentList{} })
}

func (c *client) ReplicaSets(ns string) Object[*appsv1.ReplicaSet, *appsv1.ReplicaSetList] {
	return object("replicasets", c.apps, ns, func() *appsv1.ReplicaSet { return &appsv1.ReplicaSet{} },
		func() *appsv1.ReplicaSetList { return &appsv1.ReplicaSetList{} })
}

func (c *client) StatefulSets(ns string) Object[*appsv1.StatefulSet, *appsv1.StatefulSetList] {
	return object("statefulsets", c.apps, ns, func() *appsv1.StatefulSet { return &appsv1.StatefulSet{} },
		func() *appsv1.StatefulSetList { return &appsv1.StatefulSetList{} })
}

func (c *client) DaemonSets(ns string) Object[*appsv1.DaemonSet, *appsv1.DaemonSetList] {
	return object("daemonsets", c.apps, ns, func() *appsv1.DaemonSet { return &appsv1.DaemonSet{} },
		func() *appsv1.DaemonSetList { return &appsv1.DaemonSetList{} })
}

func (c *client) ControllerRevisions(ns string) Object[*appsv1.ControllerRevision, *appsv1.ControllerRevisionList] {
	return object("controllerrevisions", c.apps, ns, func() *appsv1.ControllerRevision { return &appsv1.ControllerRevision{} },
		func() *appsv1.ControllerRevisionList { return &appsv1.ControllerRevisionList{} })
}

func (c *client) Pods(ns string) Object[*corev1.Pod, *corev1.PodList] {
	return object("pods", c.core, ns, func() *corev1.Pod { return &corev1.Pod{} },
		func() *corev1.PodList { return &corev1.PodList{} })
}

func (c *client) Events(ns string) Events {
	return object("events", c.core, ns, func() *corev1.Event { return &corev1.Event{} },
		func() *corev1.EventList { return &corev1.EventList{} })
}

func (c *client) Leases(ns string) Leases {
	return object("leases", c.coordination, ns, func() *coordinationv1.Lease { return &coordinationv1.Lease{} },
		func() *coordinationv1.LeaseList { return &coordinationv1.LeaseList{} })
}

func (c *client) Dynamic() dynamic.Interface { return c.dynamic }

// EventSink is client-go's record.EventSink over c: each Event is written in its own
// namespace, as client-go's EventSinkImpl does.
type EventSink struct{ Client Client }

// Create writes a new Event.
func (s EventSink) Create(e *corev1.Event) (*corev1.Event, error) {
	return s.Client.Events(e.Namespace).Create(context.Background(), e, metav1.CreateOptions{})
}

// Update replaces an Event.
func (s EventSink) Update(e *corev1.Event) (*corev1.Event, error) {
	return s.Client.Events(e.Namespace).Update(context.Background(), e, metav1.UpdateOptions{})
}

// Patch patches an Event (client-go's correlator sends strategic merge patches).
func (s EventSink) Patch(e *corev1.Event, data []byte) (*corev1.Event, error) {
	return s.Client.Events(e.Namespace).Patch(context.Background(), e.Name, types.StrategicMergePatchType, data, metav1.PatchOptions{})
}
