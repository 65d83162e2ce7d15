package undo

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sre-kit/alert-rollback/internal/fixture"
	"github.com/sre-kit/alert-rollback/internal/kinds"
)

// TestForeignHistory plants history entries that the workload's controller did not make,
// as someone who can create ReplicaSets or ControllerRevisions in the namespace could, and
// checks that none steers the undo: each is refused (ErrForeignHistory) or left out of the
// history, and nothing is written unless the undo goes where kubectl's would on the
// controller's own history.
func TestForeignHistory(t *testing.T) {
	// planted is a ControllerRevision of owner at revision number, running image, named
	// and labelled as the controller would, with data set by the caller when given.
	planted := func(crs []*appsv1.ControllerRevision, image string, number int64, data map[string]any) *appsv1.ControllerRevision {
		cr := crs[0].DeepCopy()
		cr.Name = cr.OwnerReferences[0].Name + "-" + fixture.Hash(image)
		for k := range cr.Labels {
			if k != "app" {
				cr.Labels[k] = fixture.Hash(image) // the hash label, whichever the kind's
			}
		}
		cr.Revision = number
		if data == nil {
			data = map[string]any{"spec": map[string]any{"template": fixture.Template(cr.OwnerReferences[0].Name, image)}}
		}
		cr.Data.Raw, _ = json.Marshal(data)
		return cr
	}
	// renumberedPast plants revision 3 above the current 2, and then does what the controller
	// does on its next sync: makes the current revision the newest again (2 becomes 4), so the
	// planted 3 sits just below it, created after it.
	renumberedPast := func(crs []*appsv1.ControllerRevision) []*appsv1.ControllerRevision {
		crs[0].CreationTimestamp = metav1.NewTime(now.Add(-2 * time.Hour))
		crs[1].CreationTimestamp = metav1.NewTime(now.Add(-time.Hour))
		crs[1].Revision = 4
		evil := planted(crs, "evil/miner", 3, nil)
		evil.CreationTimestamp = metav1.NewTime(now.Add(-time.Minute))
		return []*appsv1.ControllerRevision{evil}
	}
	statefulSet := func(extra func([]*appsv1.ControllerRevision) []*appsv1.ControllerRevision, updateRevision bool) []runtime.Object {
		s, crs := fixture.StatefulSet(ns, "db", "db:v1", "db:v2")
		if updateRevision {
			s.Status.UpdateRevision = crs[1].Name
		}
		return append(fixture.Objects(append(crs, extra(crs)...)...), s)
	}
	daemonSet := func(extra func([]*appsv1.ControllerRevision) []*appsv1.ControllerRevision) []runtime.Object {
		d, crs := fixture.DaemonSet(ns, "agent", "agent:v1", "agent:v2")
		return append(fixture.Objects(append(crs, extra(crs)...)...), d)
	}
	// afterUndo is a Deployment this function rolled back from v2 (revision 2) to v1
	// (revision 1, made revision 3): v1's ReplicaSet notes its old number, v2 is marked bad.
	// change may renumber the two (rss[0] is v2's, rss[1] v1's) and returns what to plant.
	afterUndo := func(change func(rss []*appsv1.ReplicaSet) []*appsv1.ReplicaSet) []runtime.Object {
		d, rss := fixture.Deployment(ns, "web-front-end", "app:v2", "app:v1")
		rss[1].CreationTimestamp = metav1.NewTime(now.Add(-2 * time.Hour))
		rss[1].Annotations["deployment.kubernetes.io/revision"] = "3"
		rss[1].Annotations["deployment.kubernetes.io/revision-history"] = "1"
		rss[0].CreationTimestamp = metav1.NewTime(now.Add(-time.Hour))
		rss[0].Annotations["deployment.kubernetes.io/revision"] = "2"
		planted := change(rss)
		d.Annotations["deployment.kubernetes.io/revision"] = rss[1].Annotations["deployment.kubernetes.io/revision"]
		d = withState(d, State{Bad: []string{fixture.Hash("app:v2")}})
		return append(fixture.Objects(append(rss, planted...)...), d)
	}
	tests := []struct {
		name      string
		objects   []runtime.Object
		req       Request
		wantErr   error
		wantImage string // after the undo; the current image when nothing may change
	}{
		{
			name: "statefulset revision whose data also scales it to zero",
			objects: statefulSet(func(crs []*appsv1.ControllerRevision) []*appsv1.ControllerRevision {
				cr := planted(crs, "evil/miner", 3, map[string]any{"spec": map[string]any{
					"replicas": 0, "template": fixture.Template("db", "evil/miner")}})
				crs[1].Revision = 4
				return []*appsv1.ControllerRevision{cr}
			}, false),
			req: request(kinds.StatefulSet, "db"), wantErr: ErrForeignHistory, wantImage: "db:v2",
		},
		{
			name: "statefulset revision not named as the controller names them",
			objects: statefulSet(func(crs []*appsv1.ControllerRevision) []*appsv1.ControllerRevision {
				cr := planted(crs, "evil/miner", 3, nil)
				cr.Name = "db-backup"
				crs[1].Revision = 4
				return []*appsv1.ControllerRevision{cr}
			}, false),
			req: request(kinds.StatefulSet, "db"), wantErr: ErrForeignHistory, wantImage: "db:v2",
		},
		{
			name: "statefulset: a copy of the current template at a higher number",
			objects: statefulSet(func(crs []*appsv1.ControllerRevision) []*appsv1.ControllerRevision {
				cr := planted(crs, "db:v2", 3, nil)
				cr.Name = "db-" + fixture.Hash("db:v2-copy")
				cr.Labels["controller.kubernetes.io/hash"] = fixture.Hash("db:v2-copy")
				return []*appsv1.ControllerRevision{cr}
			}, false),
			req: request(kinds.StatefulSet, "db"), wantErr: ErrForeignHistory, wantImage: "db:v2",
		},
		{
			name: "statefulset: a revision above the one its status names is not history",
			objects: statefulSet(func(crs []*appsv1.ControllerRevision) []*appsv1.ControllerRevision {
				return []*appsv1.ControllerRevision{planted(crs, "evil/miner", 3, nil)}
			}, true),
			req: request(kinds.StatefulSet, "db"), wantImage: "db:v1",
		},
		{
			name: "daemonset: a revision above the one holding its template is not history",
			objects: daemonSet(func(crs []*appsv1.ControllerRevision) []*appsv1.ControllerRevision {
				return []*appsv1.ControllerRevision{planted(crs, "evil/miner", 3, nil)}
			}),
			req: request(kinds.DaemonSet, "agent"), wantImage: "agent:v1",
		},
		{
			name:    "statefulset: planted above, then renumbered past by the controller",
			objects: statefulSet(renumberedPast, true),
			req:     request(kinds.StatefulSet, "db"), wantErr: ErrForeignHistory, wantImage: "db:v2",
		},
		{
			name:    "daemonset: planted above, then renumbered past by the controller",
			objects: daemonSet(renumberedPast),
			req:     request(kinds.DaemonSet, "agent"), wantErr: ErrForeignHistory, wantImage: "agent:v2",
		},
		{
			name: "deployment: a copy of the current template at a free number",
			objects: func() []runtime.Object {
				d, rss := fixture.Deployment(ns, "web-front-end", "app:v1", "app:v2", "app:v3")
				// Revision 2's ReplicaSet was pruned; someone made one with v3's template.
				copied := rss[2].DeepCopy()
				copied.Name, copied.UID = "web-front-end-"+fixture.Hash("copy"), "uid-copy"
				copied.Labels["pod-template-hash"] = fixture.Hash("copy")
				copied.Spec.Template.Labels["pod-template-hash"] = fixture.Hash("copy")
				copied.Annotations = map[string]string{"deployment.kubernetes.io/revision": strconv.Itoa(2)}
				return append(fixture.Objects(rss[0], rss[2], copied), d)
			}(),
			req: request(kinds.Deployment, "web-front-end"), wantErr: ErrForeignHistory, wantImage: "app:v3",
		},
		{
			name: "deployment: a ReplicaSet made after the current one, at a free earlier number",
			objects: func() []runtime.Object {
				d, rss := fixture.Deployment(ns, "web-front-end", "app:v1", "evil/miner", "app:v3")
				// Revision 2's ReplicaSet was pruned; someone made one with an image of their
				// choice and that number, after revision 3 rolled out.
				rss[0].CreationTimestamp = metav1.NewTime(now.Add(-2 * time.Hour))
				rss[2].CreationTimestamp = metav1.NewTime(now.Add(-time.Hour))
				rss[1].CreationTimestamp = metav1.NewTime(now.Add(-time.Minute))
				return append(fixture.Objects(rss...), d)
			}(),
			req: request(kinds.Deployment, "web-front-end"), wantErr: ErrForeignHistory, wantImage: "app:v3",
		},
		{
			name: "deployment: a ReplicaSet made current again is older than the one it replaced",
			objects: func() []runtime.Object {
				// v1 (revision 1), v2 (revision 2), then v1 again: the controller renumbers
				// v1's ReplicaSet to 3 and notes its old number. Undo goes back to v2.
				d, rss := fixture.Deployment(ns, "web-front-end", "app:v2", "app:v1")
				rss[1].CreationTimestamp = metav1.NewTime(now.Add(-2 * time.Hour))
				rss[1].Annotations["deployment.kubernetes.io/revision"] = "3"
				rss[1].Annotations["deployment.kubernetes.io/revision-history"] = "1"
				rss[0].CreationTimestamp = metav1.NewTime(now.Add(-time.Hour))
				rss[0].Annotations["deployment.kubernetes.io/revision"] = "2"
				d.Annotations["deployment.kubernetes.io/revision"] = "3"
				return append(fixture.Objects(rss...), d)
			}(),
			req: request(kinds.Deployment, "web-front-end"), wantImage: "app:v2",
		},
		{
			name: "deployment: after an undo, a ReplicaSet claiming the number the undo retired",
			// v1 (1), v2 (2), then this function's undo back to v1: v1's ReplicaSet is
			// revision 3 and notes it was 1; v2 is marked bad. Someone then fills 1 with an
			// image of their choice: the only revision left to go to.
			objects: afterUndo(func(rss []*appsv1.ReplicaSet) []*appsv1.ReplicaSet {
				return []*appsv1.ReplicaSet{plantedRS(rss[0], "evil/miner", 1)}
			}),
			req: request(kinds.Deployment, "web-front-end"), wantErr: ErrForeignHistory, wantImage: "app:v1",
		},
		{
			name: "deployment: a ReplicaSet claiming a number another ReplicaSet's revision-history retired",
			// v1's ReplicaSet was made current twice (1, then 3, now 5), v2 is 4: someone
			// fills 3. It is above v1's first number, so only revision-history tells.
			objects: afterUndo(func(rss []*appsv1.ReplicaSet) []*appsv1.ReplicaSet {
				rss[1].Annotations["deployment.kubernetes.io/revision"] = "5"
				rss[1].Annotations["deployment.kubernetes.io/revision-history"] = "1,3"
				rss[0].Annotations["deployment.kubernetes.io/revision"] = "4"
				return []*appsv1.ReplicaSet{plantedRS(rss[0], "evil/miner", 3)}
			}),
			req: request(kinds.Deployment, "web-front-end"), wantErr: ErrForeignHistory, wantImage: "app:v1",
		},
		{
			name: "deployment: after an undo, a ReplicaSet filling a number pruning freed below the current one's first",
			// v0 (1, since pruned), v1 (2), v2 (3), undo back to v1: v1 is 4 and notes 2.
			// Someone fills 1, which no revision-history names.
			objects: afterUndo(func(rss []*appsv1.ReplicaSet) []*appsv1.ReplicaSet {
				rss[1].Annotations["deployment.kubernetes.io/revision"] = "4"
				rss[1].Annotations["deployment.kubernetes.io/revision-history"] = "2"
				rss[0].Annotations["deployment.kubernetes.io/revision"] = "3"
				return []*appsv1.ReplicaSet{plantedRS(rss[0], "evil/miner", 1)}
			}),
			req: request(kinds.Deployment, "web-front-end"), wantErr: ErrForeignHistory, wantImage: "app:v1",
		},
		{
			name: "deployment: made current twice, the entries made since its first number are history",
			// v1 made current again twice (revisions 1, 3, then 5); v0 at 2 and v2 at 4 were
			// made after v1 first was, above its first number: the undo goes to v2.
			objects: func() []runtime.Object {
				d, rss := fixture.Deployment(ns, "web-front-end", "app:v0", "app:v2", "app:v1")
				rss[2].CreationTimestamp = metav1.NewTime(now.Add(-3 * time.Hour))
				rss[2].Annotations["deployment.kubernetes.io/revision"] = "5"
				rss[2].Annotations["deployment.kubernetes.io/revision-history"] = "1,3"
				rss[0].CreationTimestamp = metav1.NewTime(now.Add(-2 * time.Hour))
				rss[0].Annotations["deployment.kubernetes.io/revision"] = "2"
				rss[1].CreationTimestamp = metav1.NewTime(now.Add(-time.Hour))
				rss[1].Annotations["deployment.kubernetes.io/revision"] = "4"
				d.Annotations["deployment.kubernetes.io/revision"] = "5"
				return append(fixture.Objects(rss...), d)
			}(),
			req: request(kinds.Deployment, "web-front-end"), wantImage: "app:v2",
		},
		{
			name: "deployment: after an undo, an older revision made before the current one is still reachable",
			// v0 (1), v1 (2), v2 (3), undo to v1 (4, noting 2), v2 bad: v0 is the target.
			objects: func() []runtime.Object {
				d, rss := fixture.Deployment(ns, "web-front-end", "app:v0", "app:v2", "app:v1")
				rss[0].CreationTimestamp = metav1.NewTime(now.Add(-3 * time.Hour))
				rss[2].CreationTimestamp = metav1.NewTime(now.Add(-2 * time.Hour))
				rss[2].Annotations["deployment.kubernetes.io/revision"] = "4"
				rss[2].Annotations["deployment.kubernetes.io/revision-history"] = "2"
				rss[1].CreationTimestamp = metav1.NewTime(now.Add(-time.Hour))
				rss[1].Annotations["deployment.kubernetes.io/revision"] = "3"
				d.Annotations["deployment.kubernetes.io/revision"] = "4"
				return append(fixture.Objects(rss...), withState(d, State{Bad: []string{fixture.Hash("app:v2")}}))
			}(),
			req: request(kinds.Deployment, "web-front-end"), wantImage: "app:v0",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := fixture.Clientset(tc.objects...)
			_, err := undoer(client, false).Undo(context.Background(), tc.req)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Undo() = %v; want %v", err, tc.wantErr)
			}
			if tc.wantErr != nil && len(writesOf(client)) > 0 {
				t.Fatalf("refused, but wrote: %v", writesOf(client))
			}
			if got := image(t, client, tc.req.Ref.GroupKind(), tc.req.Ref.Name); got != tc.wantImage {
				t.Fatalf("image = %s; want %s", got, tc.wantImage)
			}
		})
	}
}

// plantedRS is a ReplicaSet of like's Deployment claiming revision number, running image,
// named, labelled and owned as the controller would make it, created a minute ago: after
// everything else the fixtures hold.
func plantedRS(like *appsv1.ReplicaSet, image string, number int) *appsv1.ReplicaSet {
	rs := like.DeepCopy()
	hash := fixture.Hash(image)
	owner := rs.OwnerReferences[0].Name
	rs.Name, rs.UID = owner+"-"+hash, types.UID("uid-planted-"+hash)
	rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = hash
	rs.Spec.Template = fixture.Template(owner, image)
	rs.Spec.Template.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = hash
	rs.Annotations = map[string]string{"deployment.kubernetes.io/revision": strconv.Itoa(number)}
	rs.CreationTimestamp = metav1.NewTime(now.Add(-time.Minute))
	return rs
}
