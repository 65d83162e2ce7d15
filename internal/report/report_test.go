package report

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
