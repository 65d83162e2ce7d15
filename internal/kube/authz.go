package kube

import (
	"io"
	"net/http"
	"time"
)

// authzWaits are the pauses before asking again after a 403: about a second in all.
var authzWaits = []time.Duration{100 * time.Millisecond, 300 * time.Millisecond, 600 * time.Millisecond}

// RetryAuthz wraps a transport to the API server so that a request answered 403 is sent
// again a few times within about a second before that answer counts.
//
// A kube-apiserver that has just started answers with its authenticator and authorizer
// caches still empty: the function's first reads were refused 403 (`RBAC: clusterrole ...
// not found`) and allowed 13 to 47 ms later. Taken as final, that refusal would drop the
// notification for good (Alertmanager does not retry a 4xx). Authentication and
// authorization come before anything is changed, so sending a refused write again cannot
// apply it twice. A refusal that stands (RBAC that really lacks the verb) still ends as
// 403, a second later; and so does one when the request's deadline would not leave room to
// ask again, so that a refusal never turns into a timeout, which would be retried.
//
// A 401 is left alone: this transport sits inside client-go's token layer, which renews a
// rotated token only once a 401 reaches it, so asking again here would only repeat the
// stale token.
func RetryAuthz(next http.RoundTripper) http.RoundTripper {
	return authzRetry{next: next, waits: authzWaits}
}

type authzRetry struct {
	next  http.RoundTripper
	waits []time.Duration
}

func (t authzRetry) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	for _, wait := range t.waits {
		if err != nil || resp.StatusCode != http.StatusForbidden {
			return resp, err
		}
		if deadline, ok := req.Context().Deadline(); ok && time.Until(deadline) < 2*wait {
			return resp, nil // no room to ask again and hear back
		}
		if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
			return resp, nil // a body that cannot be sent again
		}
		timer := time.NewTimer(wait)
		select {
		case <-req.Context().Done():
			timer.Stop()
			return resp, nil
		case <-timer.C:
		}
		again := req.Clone(req.Context())
		if req.GetBody != nil {
			if again.Body, err = req.GetBody(); err != nil {
				return resp, nil
			}
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		resp, err = t.next.RoundTrip(again)
	}
	return resp, err
}
