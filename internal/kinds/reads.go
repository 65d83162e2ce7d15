package kinds

import (
	"context"
	"fmt"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/resourceversion"
)

// Reads keeps, for one notification, each Deployment read and the ReplicaSets listed with
// it: package target confirms from that list which Deployment a pod's ReplicaSet belongs
// to, and the undo of that Deployment then uses the same two reads instead of making them
// again. Only an undo's first attempt uses them; after a conflict it reads afresh. Reads of
// one Deployment made at once wait for the first. It is safe for concurrent use, and lives
// as long as the notification: nothing is kept between notifications.
type Reads struct {
	e  *Env
	mu sync.Mutex
	m  map[string]*deploymentRead
}

type deploymentRead struct {
	done chan struct{}
	dep  *appsv1.Deployment
	rss  []appsv1.ReplicaSet
	err  error
}

// NewReads returns an empty Reads for one notification.
func (e *Env) NewReads() *Reads { return &Reads{e: e, m: map[string]*deploymentRead{}} }

// Deployment returns the Deployment ns/name and the ReplicaSets its selector matches (not
// only those it controls), read once per notification. The objects are shared: callers
// must not change them. An error wraps the API server's (apierrors.IsNotFound works on it).
func (r *Reads) Deployment(ctx context.Context, ns, name string) (*appsv1.Deployment, []appsv1.ReplicaSet, error) {
	key := ns + "/" + name
	r.mu.Lock()
	e, ok := r.m[key]
	if !ok {
		e = &deploymentRead{done: make(chan struct{})}
		r.m[key] = e
	}
	r.mu.Unlock()
	if !ok {
		e.dep, e.rss, e.err = r.e.readDeployment(ctx, ns, name)
		close(e.done)
	}
	select {
	case <-e.done:
		return e.dep, e.rss, e.err
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

// readDeployment reads the Deployment and lists the ReplicaSets its selector matches: two
// requests. The list asks for data at least as new as the Deployment just read
// (resourceVersionMatch=NotOlderThan), which the API server answers from its watch cache
// in a few milliseconds; a plain list is a consistent read that waits for the cache to
// catch up (~70 ms after any write, measured). The controller creates a ReplicaSet before
// it records its revision on the Deployment, so nothing the Deployment refers to can be
// missing from that list.
//
// An apps/v1 Deployment's selector cannot change, so once this process has read a
// Deployment it knows which ReplicaSets to list, and lists them while it reads the
// Deployment again: one round trip instead of two. That list is a consistent one, which the
// API server answers from its watch cache once the cache has caught up with etcd (no
// slower than the NotOlderThan list on this control plane, in the side-by-side bench). That list is used only if it holds the
// same guarantee: it is of the Deployment with the UID the selector was learnt from, and
// its resourceVersion is not older than the Deployment's. Otherwise the ReplicaSets are
// listed again, as above.
func (e *Env) readDeployment(ctx context.Context, ns, name string) (*appsv1.Deployment, []appsv1.ReplicaSet, error) {
	c := e.Client
	key := ns + "/" + name
	var (
		dep   *appsv1.Deployment
		early *appsv1.ReplicaSetList // listed while the Deployment was read
		err   error
	)
	if v, ok := e.selectors.Get(key); ok {
		known := v.(knownSelector)
		var listErr error
		listed := make(chan struct{})
		go func() {
			defer close(listed)
			// A consistent list: at least as new as etcd when it was asked, so as new as a
			// Deployment read at the same time unless that changed in between (checked
			// below). A resourceVersion=0 list would answer with the watch cache's last
			// ReplicaSet event, often older than the Deployment's last status write.
			early, listErr = c.ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: known.selector})
		}()
		dep, err = c.Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		<-listed
		if err == nil && (listErr != nil || dep.UID != known.uid || !notOlder(early.ResourceVersion, dep.ResourceVersion)) {
			early = nil
		}
	} else {
		dep, err = c.Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	}
	if err != nil {
		return nil, nil, fmt.Errorf("get deployment %s/%s: %w", ns, name, err)
	}
	if early != nil {
		return dep, early.Items, nil
	}
	selector, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	if err != nil {
		return nil, nil, fmt.Errorf("deployment %s/%s: selector: %w", ns, name, err)
	}
	list, err := c.ReplicaSets(ns).List(ctx, metav1.ListOptions{
		LabelSelector:        selector.String(),
		ResourceVersion:      dep.ResourceVersion,
		ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("list replicasets of deployment %s/%s: %w", ns, name, err)
	}
	e.selectors.Add(key, knownSelector{uid: dep.UID, selector: selector.String()})
	return dep, list.Items, nil
}

// knownSelector is a Deployment's selector, as read from the Deployment of that UID.
type knownSelector struct {
	uid      types.UID
	selector string
}

// notOlder reports whether resourceVersion list is known to be at least dep. Unknown (not
// comparable, as from a fake) counts as older.
func notOlder(list, dep string) bool {
	c, err := resourceversion.CompareResourceVersion(list, dep)
	return err == nil && c >= 0
}
