package vault

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/phase-sidecar/phase-sidecar/pkg/breaker"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// transport sits under the Vault API client: it applies the client-side
// rate limit to every request (logins and renewals included) and keeps
// the Retry-After of the latest 429 or 503, which the API client's error
// type does not carry.
type transport struct {
	next    http.RoundTripper
	limiter *rate.Limiter // nil: unlimited

	mu    sync.Mutex
	after time.Duration // the latest Retry-After, until taken
}

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	if t.limiter != nil {
		if err := t.limiter.Wait(r.Context()); err != nil {
			return nil, fmt.Errorf("vault: client-side rate limit %g/s: %w", float64(t.limiter.Limit()), err)
		}
	}
	resp, err := t.next.RoundTrip(r)
	if err == nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		if d, ok := breaker.RetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok && d > 0 {
			t.mu.Lock()
			t.after = d
			t.mu.Unlock()
		}
	}
	return resp, err
}

// take returns the Retry-After seen last and forgets it.
func (t *transport) take() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.after
	t.after = 0
	return d
}

// withRetryAfter attaches the server's Retry-After to a source-level error,
// for the engine's circuit breaker.
func (s *Source) withRetryAfter(err error) error {
	if err == nil || s.tr == nil || !sources.SourceLevel(err) {
		return err
	}
	if d := s.tr.take(); d > 0 {
		return &sources.RetryAfterError{Err: err, After: d}
	}
	return err
}

// limiterFor is the rate limiter of rate_limit and rate_burst; nil when
// unlimited.
func limiterFor(limit float64, burst int) *rate.Limiter {
	if limit <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(limit), max(burst, 1))
}
