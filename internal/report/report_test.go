package report

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/sre-kit/alert-rollback/internal/clip"
	"github.com/sre-kit/alert-rollback/internal/kinds"
	"github.com/sre-kit/alert-rollback/internal/kube/clientset"
	"github.com/sre-kit/alert-rollback/internal/outcome"
)

// TestEventMessagesAreClipped: an Event quotes its result, whose strings may be a caller's
// (or a cluster's) text of any size; the message written is clipped all the same.
func TestEventMessagesAreClipped(t *testing.T) {
	huge := strings.Repeat("\xff", 64<<10)
	r := outcome.Result{AlertName: huge, Fingerprint: huge, Namespace: "shop", Kind: "Deployment", Name: "checkout-api",
		Action: outcome.Failed, Reason: outcome.ReasonAPIError, Message: huge}
	tests := []struct {
		name   string
		record func(*Events)
	}{
		{"on the workload", func(e *Events) { e.Record(kinds.RefOf(kinds.Deployment, "shop", "checkout-api"), "uid-1", r) }},
		{"on a related object", func(e *Events) {
			e.RecordRelated(corev1.ObjectReference{APIVersion: "argoproj.io/v1alpha1", Kind: "Application", Namespace: "shop", Name: "shop"}, r)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset()
			e := NewEvents(clientset.Wrap(client), "alert-rollback")
			tc.record(e)
			var events []corev1.Event
			err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
				list, err := client.CoreV1().Events("shop").List(ctx, metav1.ListOptions{})
				if err != nil {
					return false, err
				}
				events = list.Items
				return len(events) > 0, nil
			})
			e.Shutdown()
			if err != nil {
				t.Fatalf("no Event written: %v", err)
			}
			for _, ev := range events {
				if len(ev.Message) > clip.Max || !utf8.ValidString(ev.Message) {
					t.Errorf("Event message of %d bytes (valid UTF-8 %v); want at most %d valid: %.200q…", len(ev.Message), utf8.ValidString(ev.Message), clip.Max, ev.Message)
				}
			}
		})
	}
}

// TestEvents: each outcome becomes one Event on the workload, with the reason and type
// `kubectl describe` shows, the outcome's reason code in the annotation, and the result in
// words; a suspended GitOps owner gets a Warning of its own; a workload never found (no
// UID) gets none. Expected values are written out, not taken from the constants.
func TestEvents(t *testing.T) {
	deploy := kinds.RefOf(kinds.Deployment, "shop", "checkout-api")
	sts := kinds.RefOf(kinds.StatefulSet, "shop", "db")
	result := func(a outcome.Action, r outcome.Reason, msg string) outcome.Result {
		return outcome.Result{AlertName: "KubePodCrashLooping", Fingerprint: "36b0f215655384b5", Namespace: "shop",
			Kind: "Deployment", Name: "checkout-api", Action: a, Reason: r, Message: msg}
	}
	dry := result(outcome.RolledBack, outcome.ReasonDryRun, "would roll back from revision 2 to 1")
	dry.DryRun = true
	argo := corev1.ObjectReference{APIVersion: "argoproj.io/v1alpha1", Kind: "Application", Namespace: "shop", Name: "shop", UID: "app-uid"}
	tests := []struct {
		name   string
		record func(*Events)
		want   []corev1.Event // compared on the fields below; nil: no Event
	}{
		{
			name: "rolled back",
			record: func(e *Events) {
				e.Record(deploy, "uid-1", result(outcome.RolledBack, outcome.ReasonRolledBack, "rolled back from revision 2 to 1"))
			},
			want: []corev1.Event{event("apps/v1", "Deployment", "checkout-api", "uid-1", "Normal", "RolledBack", "rolled-back",
				"alert KubePodCrashLooping (36b0f215655384b5): rolled back from revision 2 to 1")},
		},
		{
			name:   "dry run",
			record: func(e *Events) { e.Record(deploy, "uid-1", dry) },
			want: []corev1.Event{event("apps/v1", "Deployment", "checkout-api", "uid-1", "Normal", "RollbackDryRun", "dry-run",
				"alert KubePodCrashLooping (36b0f215655384b5): would roll back from revision 2 to 1")},
		},
		{
			name: "skipped",
			record: func(e *Events) {
				e.Record(deploy, "uid-1", result(outcome.Skipped, outcome.ReasonAlreadyHandled, "already handled"))
			},
			want: []corev1.Event{event("apps/v1", "Deployment", "checkout-api", "uid-1", "Normal", "RollbackSkipped", "already-handled",
				"alert KubePodCrashLooping (36b0f215655384b5): skipped (already-handled): already handled")},
		},
		{
			name: "refused, on a StatefulSet",
			record: func(e *Events) {
				e.Record(sts, "uid-2", result(outcome.Refused, outcome.ReasonCooldown, "rolled back 1m ago"))
			},
			want: []corev1.Event{event("apps/v1", "StatefulSet", "db", "uid-2", "Warning", "RollbackRefused", "cooldown",
				"alert KubePodCrashLooping (36b0f215655384b5): refused (cooldown): rolled back 1m ago")},
		},
		{
			name: "failed",
			record: func(e *Events) {
				e.Record(deploy, "uid-1", result(outcome.Failed, outcome.ReasonAPIError, "etcd is down"))
			},
			want: []corev1.Event{event("apps/v1", "Deployment", "checkout-api", "uid-1", "Warning", "RollbackFailed", "api-error",
				"alert KubePodCrashLooping (36b0f215655384b5): failed (api-error): etcd is down")},
		},
		{
			name: "healed",
			record: func(e *Events) {
				e.Record(deploy, "uid-1", result(outcome.Healed, outcome.ReasonHealed, "healed: rolled out, healthy 20s after the rollback"))
			},
			want: []corev1.Event{event("apps/v1", "Deployment", "checkout-api", "uid-1", "Normal", "RollbackHealed", "healed",
				"alert KubePodCrashLooping (36b0f215655384b5): healed: rolled out, healthy 20s after the rollback")},
		},
		{
			name: "not healed",
			record: func(e *Events) {
				e.Record(deploy, "uid-1", result(outcome.NotHealed, outcome.ReasonRevisionUnhealthy, "not healed: the revision rolled back to fails too"))
			},
			want: []corev1.Event{event("apps/v1", "Deployment", "checkout-api", "uid-1", "Warning", "RollbackNotHealed", "revision-unhealthy",
				"alert KubePodCrashLooping (36b0f215655384b5): not healed: the revision rolled back to fails too")},
		},
		{
			name:   "workload never found",
			record: func(e *Events) { e.Record(deploy, "", result(outcome.Refused, outcome.ReasonNotFound, "not found")) },
		},
		{
			name: "GitOps owner suspended",
			record: func(e *Events) {
				e.RecordRelated(argo, result(outcome.RolledBack, outcome.ReasonRolledBack, "rolled back from revision 2 to 1"))
			},
			want: []corev1.Event{event("argoproj.io/v1alpha1", "Application", "shop", "app-uid", "Warning", "SuspendedForRollback", "rolled-back",
				"for Deployment shop/checkout-api: alert KubePodCrashLooping (36b0f215655384b5): rolled back from revision 2 to 1")},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset()
			e := NewEvents(clientset.Wrap(client), "alert-rollback")
			tc.record(e)
			// Events are sent in order: once an Event recorded last has arrived
			// elsewhere, every one before it has been sent.
			e.Record(kinds.RefOf(kinds.Deployment, "last", "marker"), "uid-last", result(outcome.Skipped, outcome.ReasonAlreadyHandled, "marker"))
			err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
				list, err := client.CoreV1().Events("last").List(ctx, metav1.ListOptions{})
				return err == nil && len(list.Items) > 0, err
			})
			e.Shutdown()
			if err != nil {
				t.Fatalf("the last Event never arrived: %v", err)
			}
			list, err := client.CoreV1().Events("shop").List(context.Background(), metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var got []corev1.Event
			for _, ev := range list.Items {
				got = append(got, event(ev.InvolvedObject.APIVersion, ev.InvolvedObject.Kind, ev.InvolvedObject.Name, string(ev.InvolvedObject.UID),
					ev.Type, ev.Reason, ev.Annotations["alert-rollback.dev/reason"], ev.Message))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Events mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// event is an Event reduced to what a reader of `kubectl describe` and a tool selecting
// Events by reason code see.
func event(apiVersion, kind, name, uid, typ, reason, code, message string) corev1.Event {
	return corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Annotations: map[string]string{"alert-rollback.dev/reason": code}},
		InvolvedObject: corev1.ObjectReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: types.UID(uid)},
		Type:           typ, Reason: reason, Message: message,
	}
}
