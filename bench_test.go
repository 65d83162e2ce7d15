package function

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sre-kit/alert-rollback/internal/alert"
	"github.com/sre-kit/alert-rollback/internal/fixture"
)

// BenchmarkHandle measures the function's own cost per notification (decode, pick targets,
// guards, patch, report) on a fake clientset, for the two answers Alertmanager gets most:
// the delivery that rolls back, and a re-send of it that is skipped.
func BenchmarkHandle(b *testing.B) {
	objs, badPod := brokenDeployment(ownNamespace)
	body := notification(firing("pod", badPod))

	b.Run("rollback", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			f := newFunction(b, fixture.Clientset(objs...), nil)
			b.StartTimer()
			rec := httptest.NewRecorder()
			f.Handle(rec, post(body))
			b.StopTimer()
			if rec.Code != http.StatusOK {
				b.Fatalf("Handle() = %d", rec.Code)
			}
			_ = f.Stop(context.Background())
			b.StartTimer()
		}
	})
	b.Run("resend-skipped", func(b *testing.B) {
		f := start(b, fixture.Clientset(objs...), nil)
		f.Handle(httptest.NewRecorder(), post(body))
		b.ReportAllocs()
		for b.Loop() {
			rec := httptest.NewRecorder()
			f.Handle(rec, post(body))
			if rec.Code != http.StatusOK {
				b.Fatalf("Handle() = %d", rec.Code)
			}
		}
	})
}

// BenchmarkFlood measures what a notification of about 1 MiB (ROLLBACK_MAX_BODY_BYTES'
// default) costs when it names thousands of pods that are not there: with the default
// ROLLBACK_MAX_ALERTS it is refused before any lookup; with the limit raised out of the way,
// every alert is looked up (the cost the limit removes). B/op and the answer's size show it.
func BenchmarkFlood(b *testing.B) {
	var alerts []alert.Alert
	for i := 0; len(alerts) < 3500; i++ {
		alerts = append(alerts, firing("pod", fmt.Sprintf("gone-%d-x7k2p", i)))
	}
	body := notification(alerts...)
	for _, tc := range []struct {
		name string
		env  map[string]string
	}{
		{"default-limit", nil},
		{"limit-raised", map[string]string{"ROLLBACK_MAX_ALERTS": "10000"}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			f := start(b, fixture.Clientset(), tc.env)
			b.ReportAllocs()
			var answer int
			for b.Loop() {
				rec := httptest.NewRecorder()
				f.Handle(rec, post(body))
				if rec.Code != http.StatusOK {
					b.Fatalf("Handle() = %d: %.200s", rec.Code, rec.Body)
				}
				answer = rec.Body.Len()
			}
			b.ReportMetric(float64(len(body)), "body-bytes")
			b.ReportMetric(float64(answer), "answer-bytes")
		})
	}
}
