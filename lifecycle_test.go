package function

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/sre-kit/alert-rollback/internal/fixture"
	"github.com/sre-kit/alert-rollback/internal/kube/clientset"
)

// TestHandleWhileStarting: func's runtime serves while Start runs (in a goroutine). Until
// Start has finished, every notification with the token is answered 503 with Retry-After
// (Alertmanager sends it again) and Ready is false: never a 401, which Alertmanager drops
// for good, and never a panic. Notifications keep coming, from many goroutines, while
// Start finishes; under -race this also checks that what Start builds is published safely.
// Stop may come first: then the function never serves.
func TestHandleWhileStarting(t *testing.T) {
	tests := []struct {
		name string
		// stop calls Stop while Start is still building the clients.
		stop bool
		// wantStartErr: Start returns an error (it never serves).
		wantStartErr bool
		// wantAfter is the answer once Start has returned.
		wantAfter int
		wantReady bool
	}{
		{name: "start", wantAfter: http.StatusOK, wantReady: true},
		{name: "stop while starting", stop: true, wantStartErr: true, wantAfter: http.StatusServiceUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs, badPod := brokenDeployment(ownNamespace)
			client := fixture.Clientset(objs...)
			body := notification(firing("pod", badPod))

			building, proceed := make(chan struct{}), make(chan struct{})
			f := New()
			f.newClient = func(config) (clients, error) {
				close(building)
				<-proceed
				return clients{kube: clientset.Wrap(client), dynamic: newDynamic(), namespace: ownNamespace}, nil
			}
			f.newLogger = zap.NewNop().Sugar
			f.memoryLimit = noMemoryLimit
			t.Cleanup(func() { _ = f.Stop(context.Background()) })
			startErr := make(chan error, 1)
			go func() {
				startErr <- f.Start(context.Background(), map[string]string{"ROLLBACK_AUTH_TOKEN": testToken, "ROLLBACK_BUDGET": "off"})
			}()
			select {
			case <-building:
			case <-time.After(10 * time.Second):
				t.Fatal("Start did not reach the client")
			}

			// While Start is building: every answer is 503 with Retry-After, and not ready.
			const senders = 16
			var wg sync.WaitGroup
			wrong := make(chan string, 1000)
			for range senders {
				wg.Go(func() {
					if got := send(f, body); got != "503 Retry-After 1" {
						wrong <- "while starting: " + got
					}
					if ok, _ := f.Ready(context.Background()); ok {
						wrong <- "while starting: Ready() = true"
					}
				})
			}
			wg.Wait()
			if tc.stop {
				if err := f.Stop(context.Background()); err != nil {
					t.Fatalf("Stop() = %v", err)
				}
			}

			// Senders keep going while Start finishes and publishes what it built: each
			// answer is a retry or a proper answer.
			done := make(chan struct{})
			for range senders {
				wg.Go(func() {
					for {
						select {
						case <-done:
							return
						default:
						}
						switch got := send(f, body); got {
						case "503 Retry-After 1", "200":
						default:
							wrong <- "as Start finished: " + got
							return
						}
					}
				})
			}
			close(proceed)
			err := <-startErr
			close(done)
			wg.Wait()
			close(wrong)
			for w := range wrong {
				t.Error(w)
			}
			if (err != nil) != tc.wantStartErr {
				t.Fatalf("Start() = %v; want an error: %v", err, tc.wantStartErr)
			}
			if got, want := send(f, body), statusLine(tc.wantAfter, "1"); got != want {
				t.Errorf("once Start has returned: %s; want %s", got, want)
			}
			if ok, _ := f.Ready(context.Background()); ok != tc.wantReady {
				t.Errorf("once Start has returned: Ready() = %v; want %v", ok, tc.wantReady)
			}
		})
	}
}

// send hands one notification with the token to f.Handle and returns its status, with
// the Retry-After header of a 503; a panic is returned as such.
func send(f *Function, body []byte) (got string) {
	defer func() {
		if p := recover(); p != nil {
			got = fmt.Sprint("panic: ", p)
		}
	}()
	rec := httptest.NewRecorder()
	f.Handle(rec, post(body))
	return statusLine(rec.Code, rec.Header().Get("Retry-After"))
}

// statusLine is an answer's status, with its Retry-After if it asks for a retry.
func statusLine(code int, retryAfter string) string {
	if code == http.StatusServiceUnavailable {
		return fmt.Sprintf("%d Retry-After %s", code, retryAfter)
	}
	return fmt.Sprint(code)
}

// TestStartOnce: a second Start is refused and leaves the first one's function serving.
func TestStartOnce(t *testing.T) {
	f := start(t, fixture.Clientset(), nil)
	first := f.state.Load()
	if err := f.Start(context.Background(), map[string]string{"ROLLBACK_AUTH_TOKEN": testToken}); !errors.Is(err, errStartedAlready) {
		t.Errorf("a second Start() = %v; want %v", err, errStartedAlready)
	}
	if f.state.Load() != first {
		t.Error("a second Start replaced the started function")
	}
}
