package function

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/sre-kit/alert-rollback/internal/alert"
	"github.com/sre-kit/alert-rollback/internal/outcome"
)

// incoming is a decoded request.
type incoming struct {
	msg *alert.Message
	// event is the CloudEvent the notification came in, nil for plain JSON; the answer is
	// then a CloudEvent too, in the same mode.
	event      *cloudevents.Event
	structured bool
}

// decode checks, in order, the method, the credentials, the content type and the size,
// then parses the notification from plain JSON or from a CloudEvent's data.
func (f *started) decode(r *http.Request) (*incoming, error) {
	if r.Method != http.MethodPost {
		return nil, outcome.ErrMethod
	}
	if !f.authorized(r) {
		return nil, outcome.ErrUnauthorized
	}
	// The CloudEvents SDK tells the modes apart: binary (a Ce-Specversion header),
	// structured (application/cloudevents+json) or neither (plain JSON, Alertmanager's own).
	msg := cehttp.NewMessageFromHttpRequest(r)
	enc := msg.ReadEncoding()
	if err := checkContentType(r.Header.Get("Content-Type"), enc); err != nil {
		return nil, err
	}
	if r.ContentLength > f.cfg.maxBodyBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", outcome.ErrTooLarge, r.ContentLength, f.cfg.maxBodyBytes)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, f.cfg.maxBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading body: %v", alert.ErrInvalid, err)
	}
	if int64(len(body)) > f.cfg.maxBodyBytes {
		return nil, fmt.Errorf("%w: limit %d bytes", outcome.ErrTooLarge, f.cfg.maxBodyBytes)
	}
	in := &incoming{}
	if enc != binding.EncodingUnknown {
		msg.BodyReader = io.NopCloser(bytes.NewReader(body))
		ev, err := binding.ToEvent(r.Context(), msg)
		if err != nil {
			return nil, fmt.Errorf("%w: cloudevent: %v", alert.ErrInvalid, err)
		}
		if ct := ev.DataContentType(); ct != "" && !isJSON(ct) {
			return nil, fmt.Errorf("%w: cloudevent datacontenttype %q", outcome.ErrMediaType, ct)
		}
		in.event, in.structured, body = ev, enc == binding.EncodingStructured, ev.Data()
	}
	in.msg, err = alert.Decode(body)
	if err != nil {
		return nil, err
	}
	return in, nil
}

// checkContentType accepts JSON (Alertmanager's own), a binary-mode CloudEvent with JSON
// data (or none declared), and a structured-mode one; batches are not supported.
func checkContentType(ct string, enc binding.Encoding) error {
	mt, _, err := mime.ParseMediaType(ct)
	switch {
	case ct != "" && err != nil:
		return fmt.Errorf("%w: %q", outcome.ErrMediaType, ct)
	case enc == binding.EncodingStructured:
		return nil
	case enc == binding.EncodingBinary && (mt == "" || isJSON(mt)):
		return nil
	case enc == binding.EncodingUnknown && isJSON(mt):
		return nil
	}
	return fmt.Errorf("%w: got %q", outcome.ErrMediaType, ct)
}

func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json") && mt != cloudevents.ApplicationCloudEventsBatchJSON)
}

// Authorized reports whether r carries the credentials the function wants, without reading
// its body. cmd/rollback's server uses it to keep its slots for notifications to callers that
// have them: a flood without a token is answered 401 by Handle and never crowds them out.
// Until Start has finished, nobody is.
func (f *Function) Authorized(r *http.Request) bool {
	s := f.state.Load()
	return s != nil && s.authorized(r)
}

// authorized checks the bearer token Alertmanager sends (http_config.authorization). The
// comparison is of SHA-256 digests in constant time, so neither the token's bytes nor its
// length leak through timing.
func (f *started) authorized(r *http.Request) bool {
	want := f.cfg.authToken
	if f.cfg.authTokenFile != nil {
		// A token file that is gone lets nobody in, whatever else is set.
		want = f.cfg.authTokenFile.get()
		if want == "" {
			return false
		}
	}
	if want == "" {
		return f.cfg.allowUnauthenticated
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	wantSum := sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(got[:], wantSum[:]) == 1
}
