package function

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/google/uuid"

	"github.com/sre-kit/alert-rollback/internal/clip"
	"github.com/sre-kit/alert-rollback/internal/outcome"
)

// The CloudEvent answer to a CloudEvent notification.
const (
	ResultEventType   = "dev.alert-rollback.result.v1"
	ResultEventSource = "/alert-rollback"
)

// fail answers a request turned away. Its error may quote what the caller sent (a version,
// a content type): the answer and the log line are clipped where each is written.
// fail refuses a request, and logs why unless a retry is asked for.
func (f *started) fail(w http.ResponseWriter, err error) {
	status := outcome.HTTPStatus(err, nil)
	if status != http.StatusServiceUnavailable {
		f.log.Infow("request refused", "status", status, "error", err)
	}
	refuse(w, err)
	f.tell.request(context.Background(), status)
}

// refuse answers a request turned away for err, with the headers its status calls for.
func refuse(w http.ResponseWriter, err error) {
	status := outcome.HTTPStatus(err, nil)
	switch status {
	case http.StatusMethodNotAllowed:
		w.Header().Set("Allow", http.MethodPost)
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="alert-rollback"`)
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

// reply writes the report as JSON, or as a CloudEvent in the mode the notification came in.
func (f *started) reply(ctx context.Context, w http.ResponseWriter, in *incoming, resp outcome.Response) {
	status := outcome.HTTPStatus(nil, resp.Results)
	defer f.tell.request(context.WithoutCancel(ctx), status)
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
	// The notification's id is the caller's text: clipped, like every string of the data.
	ev.SetSubject(clip.String(in.event.ID(), clip.Max))
	if err := ev.SetData(cloudevents.ApplicationJSON, clip.Strings(resp, clip.Max)); err != nil {
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

// writeJSON writes v as the answer, every string of it clipped (clip.Strings): whatever a
// caller or the cluster put in a field, the answer stays small and valid UTF-8.
func writeJSON(w http.ResponseWriter, status int, v any) {
	// Encoded whole first, so the answer goes out with a Content-Length in one piece: it is
	// then complete as soon as it is flushed, even if the process stops right after.
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // messages such as "Bearer <token>" stay readable
	enc.SetIndent("", "  ")
	_ = enc.Encode(clip.Strings(v, clip.Max))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}
