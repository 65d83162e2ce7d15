package function

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	corev1 "k8s.io/api/core/v1"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sre-kit/alert-rollback/internal/clip"
	"github.com/sre-kit/alert-rollback/internal/fixture"
	"github.com/sre-kit/alert-rollback/internal/kube/clientset"
)

// maxAnswer and maxLogLine bound what a notification of one alert can make the function
// write, whatever text its caller put where: the answer (headers included), each log line
// and each Event's message.
const (
	maxAnswer  = 4 << 10
	maxLogLine = 4 << 10
)

// TestCallerTextIsBounded sends huge values (invalid UTF-8 where the field is text) in every
// place a caller's text can reach an answer, a log line or an Event: the refusals that quote
// a field, the CloudEvent attributes, the labels and annotations of an alert. The answer,
// every log line and every Event stay small and valid UTF-8.
func TestCallerTextIsBounded(t *testing.T) {
	objs, badPod := brokenDeployment(ownNamespace)
	huge := strings.Repeat("\xff", 205<<10)
	digits := "1" + strings.Repeat("0", 205<<10)
	// alertWith is a firing alert about the broken Deployment; labels are added after its
	// own, so they replace them (JSON's last duplicate key wins).
	alertWith := func(labels, fields string) string {
		return `{"status":"firing","startsAt":"` + fixture.AlertStart.Format(time.RFC3339) + `","labels":{"alertname":"KubePodUnschedulable",` +
			`"severity":"rollback","namespace":"` + ownNamespace + `","pod":"` + badPod + `"` + labels + `}` + fields + `}`
	}
	valid := `{"version":"4","alerts":[` + alertWith("", "") + `]}`
	structured := func(id, dataContentType string) *http.Request {
		r := post([]byte(`{"specversion":"1.0","id":"` + id + `","type":"t","source":"/am","datacontenttype":"` + dataContentType +
			`","data":` + valid + `}`))
		r.Header.Set("Content-Type", "application/cloudevents+json")
		return r
	}
	binary := func(header, value string) *http.Request {
		r := post([]byte(valid))
		for h, v := range map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "evt-1", "Ce-Type": "t", "Ce-Source": "/am"} {
			r.Header.Set(h, v)
		}
		r.Header[header] = []string{value}
		return r
	}
	withBody := func(body string) func() *http.Request {
		return func() *http.Request { return post([]byte(body)) }
	}
	withAlert := func(labels, fields string) func() *http.Request {
		return withBody(`{"version":"4","alerts":[` + alertWith(labels, fields) + `]}`)
	}

	tests := []struct {
		name       string
		request    func() *http.Request
		wantStatus int
	}{
		{"version", withBody(`{"version":"` + huge + `","alerts":[` + alertWith("", "") + `]}`), http.StatusBadRequest},
		{"truncatedAlerts", withBody(`{"version":"4","truncatedAlerts":` + digits + `,"alerts":[` + alertWith("", "") + `]}`), http.StatusBadRequest},
		{"alerts[].status", withBody(`{"version":"4","alerts":[{"status":"` + huge + `"}]}`), http.StatusBadRequest},
		{"Content-Type", func() *http.Request {
			r := post([]byte(valid))
			r.Header["Content-Type"] = []string{huge}
			return r
		}, http.StatusUnsupportedMediaType},
		{"CloudEvent specversion, structured", func() *http.Request {
			r := post([]byte(`{"specversion":"` + huge + `","id":"evt-1","type":"t","source":"/am","data":` + valid + `}`))
			r.Header.Set("Content-Type", "application/cloudevents+json")
			return r
		}, http.StatusBadRequest},
		{"CloudEvent specversion, binary", func() *http.Request { return binary("Ce-Specversion", huge) }, http.StatusOK},
		{"CloudEvent datacontenttype, structured", func() *http.Request { return structured("evt-1", huge) }, http.StatusBadRequest},
		{"CloudEvent datacontenttype, structured, base64 data", func() *http.Request {
			r := post([]byte(`{"specversion":"1.0","id":"evt-1","type":"t","source":"/am","datacontenttype":"` + huge +
				`","data_base64":"` + base64.StdEncoding.EncodeToString([]byte(valid)) + `"}`))
			r.Header.Set("Content-Type", "application/cloudevents+json")
			return r
		}, http.StatusUnsupportedMediaType},
		{"CloudEvent datacontenttype, binary", func() *http.Request { return binary("Content-Type", huge) }, http.StatusUnsupportedMediaType},
		{"CloudEvent id, structured", func() *http.Request { return structured(huge, "application/json") }, http.StatusOK},
		{"CloudEvent id, binary", func() *http.Request { return binary("Ce-Id", huge) }, http.StatusOK},
		{"CloudEvent type and source, binary", func() *http.Request {
			r := binary("Ce-Type", huge)
			r.Header["Ce-Source"] = []string{huge}
			return r
		}, http.StatusOK},
		{"groupKey, receiver, externalURL", withBody(`{"version":"4","groupKey":"` + huge + `","receiver":"` + huge +
			`","externalURL":"` + huge + `","alerts":[` + alertWith("", "") + `]}`), http.StatusOK},
		{"alertname label", withAlert(`,"alertname":"`+huge+`"`, ""), http.StatusOK},
		{"fingerprint", withAlert("", `,"fingerprint":"`+huge+`"`), http.StatusOK},
		{"other labels", withAlert(`,"team":"`+huge+`","`+huge+`":"x"`, ""), http.StatusOK},
		{"annotations", withAlert("", `,"annotations":{"summary":"`+huge+`","`+huge+`":"x"}`), http.StatusOK},
		{"pod label", withAlert(`,"pod":"`+huge+`"`, ""), http.StatusOK},
		{"deployment label", withAlert(`,"deployment":"`+huge+`"`, ""), http.StatusOK},
		{"statefulset label", withAlert(`,"statefulset":"`+huge+`"`, ""), http.StatusOK},
		{"replicaset label", withAlert(`,"replicaset":"`+huge+`"`, ""), http.StatusOK},
		{"namespace label", withAlert(`,"namespace":"`+huge+`\n\u001b[31m"`, ""), http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := fixture.Clientset(objs...)
			core, logs := observer.New(zap.DebugLevel)
			f := New()
			f.newClient = func(config) (clients, error) {
				return clients{kube: clientset.Wrap(client), dynamic: newDynamic(), namespace: ownNamespace}, nil
			}
			f.newLogger = zap.New(core).Sugar
			f.memoryLimit = noMemoryLimit
			cfg := map[string]string{"ROLLBACK_AUTH_TOKEN": testToken, "ROLLBACK_BUDGET": "off", "ROLLBACK_NAMESPACES": "*"}
			if err := f.Start(t.Context(), cfg); err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			f.Handle(rec, tc.request())
			// Stop flushes the asynchronous Event recorder.
			_ = f.Stop(context.Background())

			if rec.Code != tc.wantStatus {
				t.Errorf("status %d; want %d: %.300q", rec.Code, tc.wantStatus, rec.Body)
			}
			checkAnswer(t, rec, maxAnswer)
			for _, e := range logs.All() {
				checkLogEntry(t, e)
			}
			for _, a := range client.Actions() {
				c, ok := a.(k8stesting.CreateAction)
				if !ok {
					continue
				}
				if ev, ok := c.GetObject().(*corev1.Event); ok && (len(ev.Message) > clip.Max || !utf8.ValidString(ev.Message)) {
					t.Errorf("Event message of %d bytes (valid UTF-8 %v); want at most %d valid: %.300q…", len(ev.Message), utf8.ValidString(ev.Message), clip.Max, ev.Message)
				}
			}
		})
	}
}

// checkAnswer fails t if the answer rec recorded is longer than bound (headers included),
// is not valid UTF-8, or holds a JSON string longer than clip.Max.
func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder, bound int) {
	t.Helper()
	body := rec.Body.Bytes()
	size := len(body)
	for k, vs := range rec.Header() {
		for _, v := range vs {
			size += len(k) + len(v)
			if !utf8.ValidString(v) || len(v) > clip.Max {
				t.Errorf("answer header %s of %d bytes (valid UTF-8 %v): %.200q…", k, len(v), utf8.ValidString(v), v)
			}
		}
	}
	if size > bound || !utf8.Valid(body) {
		t.Errorf("answer of %d bytes (valid UTF-8 %v); want at most %d valid: %.300q…", size, utf8.Valid(body), bound, body)
	}
	var v any
	if json.Unmarshal(body, &v) != nil {
		return // not JSON: bounded all the same
	}
	for _, s := range stringsOf(v) {
		if len(s) > clip.Max {
			t.Errorf("answer with a string of %d bytes; want at most %d: %.200q…", len(s), clip.Max, s)
		}
	}
}

// stringsOf lists the strings of a decoded JSON value, object keys included.
func stringsOf(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, x := range v {
			out = append(out, stringsOf(x)...)
		}
		return out
	case map[string]any:
		var out []string
		for k, x := range v {
			out = append(append(out, k), stringsOf(x)...)
		}
		return out
	}
	return nil
}

// checkLogEntry fails t if the log line e makes is longer than maxLogLine, or carries
// text that is not valid UTF-8 (the encoder would hide it; the entry shows it).
func checkLogEntry(t *testing.T, e observer.LoggedEntry) {
	t.Helper()
	line, err := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()).EncodeEntry(e.Entry, e.Context)
	if err != nil {
		t.Fatal(err)
	}
	if line.Len() > maxLogLine {
		t.Errorf("log line of %d bytes: %.300s…", line.Len(), line.String())
	}
	for _, s := range append(stringsOf(any(e.ContextMap())), e.Message) {
		if !utf8.ValidString(s) {
			t.Errorf("log line with text that is not valid UTF-8: %.300s…", line.String())
			break
		}
	}
}
