package function

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/google/uuid"

	"github.com/sre-kit/alert-rollback/alert"
	"github.com/sre-kit/alert-rollback/report"
	"github.com/sre-kit/alert-rollback/undo"
)

// The CloudEvent answer to a CloudEvent notification.
const (
	ResultEventType   = "dev.alert-rollback.result.v1"
	ResultEventSource = "/alert-rollback"
)

// statusFor is the one place outcomes become HTTP status codes. Alertmanager retries 5xx
// and drops every 4xx for good, so 5xx means exactly "a retry can help".
func statusFor(err error) int {
	switch {
	case errors.Is(err, errMethod):
		return http.StatusMethodNotAllowed
	case errors.Is(err, errUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, errMediaType):
		return http.StatusUnsupportedMediaType
	case errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, alert.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, errStopping):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// responseStatus is the status of a handled notification: 200 when every workload reached
// a final outcome; 503 when any failure may pass (API unreachable, timeout, conflicts),
// which makes Alertmanager send the notification again, safely, since an alert that already
// caused an undo causes no other; 422 when a failure will not pass by itself (forbidden,
// invalid), so Alertmanager records a failed notification without retrying in vain.
func responseStatus(resp report.Response) int {
	status := http.StatusOK
	for _, r := range resp.Results {
		if r.Action != undo.Failed {
			continue
		}
		if r.Retryable {
			return http.StatusServiceUnavailable
		}
		status = http.StatusUnprocessableEntity
	}
	return status
}

func (f *Function) fail(w http.ResponseWriter, err error) {
	status := statusFor(err)
	switch status {
	case http.StatusMethodNotAllowed:
		w.Header().Set("Allow", http.MethodPost)
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="alert-rollback"`)
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "1")
	}
	if f.log != nil && status != http.StatusServiceUnavailable {
		f.log.Infow("request refused", "status", status, "error", err.Error())
	}
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

// reply writes the report as JSON, or as a CloudEvent in the mode the notification came in.
func (f *Function) reply(ctx context.Context, w http.ResponseWriter, in *incoming, resp report.Response) {
	status := responseStatus(resp)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	if in.event == nil {
		writeJSON(w, status, resp)
		return
	}
	ev := cloudevents.NewEvent()
	ev.SetID(uuid.NewString())
	ev.SetType(ResultEventType)
	ev.SetSource(ResultEventSource)
	ev.SetSubject(in.event.ID())
	if err := ev.SetData(cloudevents.ApplicationJSON, resp); err != nil {
		f.fail(w, err)
		return
	}
	if in.structured {
		ctx = binding.WithForceStructured(ctx)
	}
	if err := cehttp.WriteResponseWriter(ctx, binding.ToMessage(&ev), status, w); err != nil {
		f.log.Errorw("writing the CloudEvent answer", "error", err)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	// Encoded whole first, so the answer goes out with a Content-Length in one piece: it is
	// then complete as soon as it is flushed, even if the process stops right after.
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // messages such as "Bearer <token>" stay readable
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}
