package sink

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sre-kit/alert-rollback/internal/fixture"
	"github.com/sre-kit/alert-rollback/internal/outcome"
)

func result(action outcome.Action, reason outcome.Reason, name string) outcome.Result {
	return outcome.Result{AlertName: "KubePodUnschedulable", Fingerprint: "0123456789abcdef", Namespace: "shop",
		Kind: "Deployment", Name: name, Action: action, Reason: reason, Message: string(action), Alerts: 1}
}

// TestEvent: each result becomes an event typed by its action (any action: one package
// outcome may add later included), about its workload, carrying the row as data, the
// reason as an extension and Knative's overrides.
func TestEvent(t *testing.T) {
	s, err := New(Config{URL: "http://127.0.0.1:1/", Source: "/alert-rollback/namespaces/monitoring/functions/alert-rollback",
		Overrides: `{"extensions":{"team":"sre"}}`})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	tests := []struct {
		name        string
		r           outcome.Result
		wantType    string
		wantSubject string
	}{
		{"rolled back", result(outcome.RolledBack, outcome.ReasonRolledBack, "web"), "dev.alert-rollback.rolled-back.v1", "shop/Deployment/web"},
		{"refused", result(outcome.Refused, outcome.ReasonBudgetExhausted, "web"), "dev.alert-rollback.refused.v1", "shop/Deployment/web"},
		{"failed", result(outcome.Failed, outcome.ReasonForbidden, "api"), "dev.alert-rollback.failed.v1", "shop/Deployment/api"},
		{"skipped", result(outcome.Skipped, outcome.ReasonAlreadyHandled, "web"), "dev.alert-rollback.skipped.v1", "shop/Deployment/web"},
		{"a verification", result("not-healed", "not-healed", "web"), "dev.alert-rollback.not-healed.v1", "shop/Deployment/web"},
		{"about no workload", outcome.Result{Action: outcome.Refused, Reason: outcome.ReasonNoWorkloadLabel, Namespace: "shop"}, "dev.alert-rollback.refused.v1", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := s.Event(tc.r)
			if err != nil {
				t.Fatalf("Event() = %v", err)
			}
			if ev.Type() != tc.wantType || ev.Subject() != tc.wantSubject || ev.Source() != "/alert-rollback/namespaces/monitoring/functions/alert-rollback" {
				t.Errorf("Event() type %q subject %q source %q; want %q %q", ev.Type(), ev.Subject(), ev.Source(), tc.wantType, tc.wantSubject)
			}
			ext := ev.Extensions()
			if ext[ReasonExtension] != string(tc.r.Reason) || ext["team"] != "sre" {
				t.Errorf("Event() extensions %v; want reason %s and team sre", ext, tc.r.Reason)
			}
			var got outcome.Result
			if err := json.Unmarshal(ev.Data(), &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.r, got); diff != "" {
				t.Errorf("Event() data (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseOverrides(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]string
		wantErr bool
	}{
		{name: "unset", in: ""},
		{name: "extensions", in: `{"extensions":{"team":"sre","tier":1}}`, want: map[string]string{"team": "sre", "tier": "1"}},
		{name: "not JSON", in: `extensions=team`, wantErr: true},
		{name: "invalid name", in: `{"extensions":{"Team-Name":"sre"}}`, wantErr: true},
		{name: "a core attribute", in: `{"extensions":{"type":"dev.other.v1"}}`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseOverrides(tc.in)
			if (err != nil) != tc.wantErr || (err != nil && !errors.Is(err, ErrConfig)) {
				t.Fatalf("ParseOverrides(%q) = %v; want error %v (ErrConfig)", tc.in, err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got, cmp.FilterPath(func(cmp.Path) bool { return len(tc.want) == 0 && len(got) == 0 }, cmp.Ignore())); diff != "" {
				t.Errorf("ParseOverrides(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func TestNewRefusesBadURL(t *testing.T) {
	for _, u := range []string{"", "sink", "ftp://x/", "http://"} {
		if _, err := New(Config{URL: u}); !errors.Is(err, ErrConfig) {
			t.Errorf("New(%q) = %v; want ErrConfig", u, err)
		}
	}
}

// TestDelivery: what is sent reaches a real receiver once Close returns, in order, and
// is counted; a sink that hangs or is gone costs Send nothing: full, the queue drops and
// counts, and Close gives up when its time is up.
func TestDelivery(t *testing.T) {
	hanging, gone := fixture.HangingURL(t), fixture.GoneURL()

	tests := []struct {
		name  string
		url   func(*fixture.CEReceiver) string
		queue int
		sends int
		// closeWithin bounds Close.
		closeWithin  time.Duration
		wantReceived int
		wantCounts   func(Counts) bool
		wantCloseErr bool
	}{
		{
			name: "receiver up: every event, after Close", url: func(r *fixture.CEReceiver) string { return r.URL }, queue: 100, sends: 50,
			closeWithin: 10 * time.Second, wantReceived: 50,
			wantCounts: func(c Counts) bool { return c == Counts{Sent: 50} },
		},
		{
			name: "sink hangs: the queue fills, the rest is dropped, Close gives up", url: func(*fixture.CEReceiver) string { return hanging },
			queue: 2, sends: 10, closeWithin: 200 * time.Millisecond, wantCloseErr: true,
			// One may be in flight, two queued: at least seven dropped at once; all ten end
			// failed or dropped.
			wantCounts: func(c Counts) bool { return c.Sent == 0 && c.Failed+c.Dropped == 10 && c.Dropped >= 7 },
		},
		{
			name: "sink down: each send fails, counted", url: func(*fixture.CEReceiver) string { return gone }, queue: 100, sends: 5,
			closeWithin: 10 * time.Second,
			wantCounts:  func(c Counts) bool { return c == Counts{Failed: 5} },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := fixture.NewCEReceiver(t)
			s, err := New(Config{URL: tc.url(rec), Source: "/test", Queue: tc.queue, SendTimeout: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			done := map[string]int{}
			s.OnDone = func(r string) { mu.Lock(); done[r]++; mu.Unlock() }
			var want []string
			for i := range tc.sends {
				name := "web-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
				want = append(want, "shop/Deployment/"+name)
				s.Send(result(outcome.RolledBack, outcome.ReasonRolledBack, name))
			}
			ctx, cancel := context.WithTimeout(context.Background(), tc.closeWithin)
			defer cancel()
			if err := s.Close(ctx); (err != nil) != tc.wantCloseErr {
				t.Errorf("Close() = %v; want error %v", err, tc.wantCloseErr)
			}
			got := s.Counts()
			if !tc.wantCounts(got) {
				t.Errorf("Counts() = %+v", got)
			}
			mu.Lock()
			if done["sent"] != int(got.Sent) || done["failed"] != int(got.Failed) || done["dropped"] != int(got.Dropped) {
				t.Errorf("OnDone told %v; Counts() = %+v", done, got)
			}
			mu.Unlock()
			if tc.wantReceived > 0 {
				var subjects []string
				for _, ev := range rec.Events() {
					subjects = append(subjects, ev.Subject())
				}
				if diff := cmp.Diff(want[:tc.wantReceived], subjects); diff != "" {
					t.Errorf("received (-want +got):\n%s", diff)
				}
			}
			// After Close, Send drops at once.
			s.Send(result(outcome.Refused, outcome.ReasonCooldown, "late"))
			if c := s.Counts(); c.Dropped != got.Dropped+1 {
				t.Errorf("Send after Close: dropped %d; want %d", c.Dropped, got.Dropped+1)
			}
		})
	}
}
