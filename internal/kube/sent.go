package kube

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync/atomic"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Sent tells whether a write that failed may still have been applied, from what became of
// each attempt to send it. The error a write ends with does not say: client-go sends a
// write again after an answer carrying Retry-After (a 429, or the 500 of a storage timeout,
// whose write may have landed), and then returns only the last attempt's error, a 409
// after that write landed, or its rate limiter's when the call's deadline passes before
// the next attempt could leave.
type Sent struct {
	// client is set when the request went through a Client made by New, whose transport
	// reports every attempt; a fake client reports none.
	client atomic.Bool
	// mayHaveApplied is set once an attempt may have reached the apiserver and been
	// applied.
	mayHaveApplied atomic.Bool
}

type sentKey struct{}

// Track returns ctx carrying a new Sent, which the Client records the attempts of the
// requests made with ctx in.
func Track(ctx context.Context) (context.Context, *Sent) {
	s := &Sent{}
	return context.WithValue(ctx, sentKey{}, s), s
}

// NotApplied reports whether a write that ended with err certainly changed nothing:
// every attempt to send it was refused by the server or never left this process (none at
// all, when client-go's rate limiter held it until its deadline). For a client that does
// not report attempts (a fake one), err alone decides, as for one attempt.
func (s *Sent) NotApplied(err error) bool {
	switch {
	case err == nil:
		return false
	case s.client.Load():
		return !s.mayHaveApplied.Load()
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return refused(int(status.Status().Code))
	}
	return neverConnected(err)
}

// through marks the Sent that ctx carries, if any, as reported by this package's Client.
func through(ctx context.Context) {
	if s, ok := ctx.Value(sentKey{}).(*Sent); ok {
		s.client.Store(true)
	}
}

// recordAttempts is the transport middleware that reports each attempt client-go makes of
// a request to the Sent its context carries.
func recordAttempts(next http.RoundTripper) http.RoundTripper {
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		resp, err := next.RoundTrip(req)
		if s, ok := req.Context().Value(sentKey{}).(*Sent); ok && mayHaveApplied(resp, err) {
			s.mayHaveApplied.Store(true)
		}
		return resp, err
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// mayHaveApplied says whether one attempt, answered resp or failed with err, may have been
// applied.
func mayHaveApplied(resp *http.Response, err error) bool {
	if err != nil {
		return !neverConnected(err)
	}
	return !refused(resp.StatusCode)
}

// refused reports whether an answer's status code says the server did not apply the
// request.
func refused(code int) bool {
	switch {
	case code == http.StatusRequestTimeout:
		return false // 408: the server stopped waiting, maybe after it acted
	case code >= 400 && code < 500:
		return true // 400, 403, 404, 409, 422, 429...: authorization, admission, preconditions and priority and fairness refuse before any change
	}
	return false // a 2xx applied it; a 5xx (a storage timeout's 500, a gateway's 504) may come after etcd did
}

// neverConnected reports whether a transport error came from dialling the apiserver
// (connection refused, no route, a name that does not resolve): with no connection, the
// request was never written. Any other transport error (a reset, a timeout, an answer cut
// off) may come after the apiserver read it.
func neverConnected(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
