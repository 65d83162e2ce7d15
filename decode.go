package function

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/sre-kit/alert-rollback/alert"
)

// Why a request is turned away before anything else happens. reply.go maps each to its
// HTTP status; none of them touches the cluster.
var (
	errMethod       = errors.New("method not allowed: POST an Alertmanager notification")
	errUnauthorized = errors.New("missing or wrong credentials: send Authorization: Bearer <token>")
	errMediaType    = errors.New("unsupported content type: want application/json, or a CloudEvent (binary mode with JSON data, or application/cloudevents+json)")
	errTooLarge     = errors.New("body too large (ROLLBACK_MAX_BODY_BYTES)")
	errStopping     = errors.New("shutting down: send again")
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
func (f *Function) decode(r *http.Request) (*incoming, error) {
	if r.Method != http.MethodPost {
		return nil, errMethod
	}
	if !f.authorized(r) {
		return nil, errUnauthorized
	}
	mode, err := contentMode(r.Header)
	if err != nil {
		return nil, err
	}
	if r.ContentLength > f.cfg.maxBodyBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", errTooLarge, r.ContentLength, f.cfg.maxBodyBytes)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, f.cfg.maxBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading body: %v", alert.ErrInvalid, err)
	}
	if int64(len(body)) > f.cfg.maxBodyBytes {
		return nil, fmt.Errorf("%w: limit %d bytes", errTooLarge, f.cfg.maxBodyBytes)
	}
	in := &incoming{}
	if mode != plainJSON {
		r.Body = io.NopCloser(bytes.NewReader(body))
		ev, err := binding.ToEvent(r.Context(), cehttp.NewMessageFromHttpRequest(r))
		if err != nil {
			return nil, fmt.Errorf("%w: cloudevent: %v", alert.ErrInvalid, err)
		}
		if ct := ev.DataContentType(); ct != "" && !isJSON(ct) {
			return nil, fmt.Errorf("%w: cloudevent datacontenttype %q", errMediaType, ct)
		}
		in.event, in.structured, body = ev, mode == structuredEvent, ev.Data()
	}
	in.msg, err = alert.Decode(body)
	if err != nil {
		return nil, err
	}
	return in, nil
}

type mode int

const (
	plainJSON mode = iota
	binaryEvent
	structuredEvent
)

func contentMode(h http.Header) (mode, error) {
	ct := h.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if ct != "" && err != nil {
		return 0, fmt.Errorf("%w: %q", errMediaType, ct)
	}
	switch {
	case mt == cloudevents.ApplicationCloudEventsJSON:
		return structuredEvent, nil
	case h.Get("Ce-Specversion") != "" && (mt == "" || isJSON(mt)):
		return binaryEvent, nil
	case isJSON(mt):
		return plainJSON, nil
	}
	return 0, fmt.Errorf("%w: got %q", errMediaType, ct)
}

func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json") && mt != cloudevents.ApplicationCloudEventsBatchJSON)
}

// Authorized reports whether r carries the credentials the function wants, without reading
// its body. cmd/rollback's server uses it to keep its slots for notifications to callers that
// have them: a flood without a token is answered 401 by Handle and never crowds them out.
func (f *Function) Authorized(r *http.Request) bool { return f.authorized(r) }

// authorized checks the bearer token Alertmanager sends (http_config.authorization). The
// comparison is of SHA-256 digests in constant time, so neither the token's bytes nor its
// length leak through timing.
func (f *Function) authorized(r *http.Request) bool {
	want := f.cfg.authToken
	if f.cfg.authTokenFile != nil {
		want = f.cfg.authTokenFile.get()
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
