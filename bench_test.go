package function

import (
	"context"
	"github.com/sre-kit/alert-rollback/internal/fixture"
	"net/http"
	"net/http/httptest"
	"testing"
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
