package aws

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/phase-sidecar/phase-sidecar/pkg/backoff"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// throttleGate holds back one service's reads after AWS throttled it, until
// a back-off has passed; the next answer that is not a throttle resets it.
// AWS throttles per API and account, so Secrets Manager and SSM each have
// one. It sits under the engine's circuit breaker on purpose: the breaker
// opens only after consecutive source-level failures, so it never opens
// while throttles and answers interleave (a fleet at its quota), and the
// gate acts from the first throttle; docs/aws.md has what the fleet harness
// measured with and without it.
type throttleGate struct {
	mu     sync.Mutex
	strike int
	open   time.Time
}

// throttlePolicy: 1 s doubling to 1 min, equal jitter: the gate holds every
// read back, so each strike must buy a real pause, not one drawn near zero.
var throttlePolicy = backoff.Policy{Base: time.Second, Max: time.Minute, Jitter: backoff.Equal}

// observe updates the gate with a classified answer and returns the
// back-off a throttle started (0 otherwise). A Retry-After is a floor.
func (g *throttleGate) observe(err error, now time.Time) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case errors.Is(err, sources.ErrThrottled):
		g.strike++
		d := max(throttlePolicy.Delay(g.strike), sources.RetryAfter(err))
		if t := now.Add(d); t.After(g.open) {
			g.open = t
		}
		return d
	case errors.Is(err, context.Canceled):
		// Says nothing about the service.
	case err == nil || !sources.SourceLevel(err):
		// An answer: the service takes requests again.
		g.strike, g.open = 0, time.Time{}
	}
	return 0
}

// wait blocks until the gate is open or ctx ends.
func (g *throttleGate) wait(ctx context.Context, label string) error {
	g.mu.Lock()
	until := g.open
	g.mu.Unlock()
	d := time.Until(until)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("%s: backing off after throttling until %s: %w", label, until.UTC().Format(time.RFC3339), errors.Join(sources.ErrThrottled, ctx.Err()))
	case <-t.C:
		return nil
	}
}
