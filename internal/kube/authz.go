package kube

import (
	"io"
	"net/http"
	"time"
)

// authzWaits are the pauses before asking again after a 401 or 403: about a second in all.
var authzWaits = []time.Duration{100 * time.Millisecond, 300 * time.Millisecond, 600 * time.Millisecond}

// RetryAuthz wraps a transport to the API server so that a request answered 401 or 403 is
// sent again a few times within about a second before that answer counts.
//
// A kube-apiserver that has just started answers with its authenticator and authorizer
// caches still empty: the function's first reads were refused 403 (`RBAC: clusterrole ...
// not found`) and allowed 13 to 47 ms later. Taken as final, that refusal would drop the
// notification for good (Alertmanager does not retry a 4xx). Authentication and
// authorization come before anything is changed, so sending a refused write again cannot
// apply it twice. A refusal that stands (RBAC that really lacks the verb) still ends as
// 403, a second later.
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
		if err != nil || resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
			return resp, err
		}
		if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
			return resp, nil // a body that cannot be sent again
		}
		timer := time.NewTimer(wait)
		select {
		case <-req.Context().Done():
			timer.Stop()
			resp.Body.Close()
			return nil, req.Context().Err()
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
