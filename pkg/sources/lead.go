package sources

import (
	"math/rand/v2"
	"time"
)

// Lead is how far ahead of its expiry an expiring value must be replaced:
// the app's side (the reload's coalescing window and timeout) plus the
// secret's renew margin, a fixed duration or, when Margin is zero, a
// Fraction of the value's lifetime.
type Lead struct {
	Reload   time.Duration
	Margin   time.Duration
	Fraction float64
}

// DefaultFraction is the margin when a Lead names none: a tenth of the
// lifetime.
const DefaultFraction = 0.1

// Of is the whole lead for a value that lives lifetime.
func (l Lead) Of(lifetime time.Duration) time.Duration {
	m := l.Margin
	if m <= 0 {
		f := l.Fraction
		if f <= 0 {
			f = DefaultFraction
		}
		m = time.Duration(f * float64(lifetime))
	}
	return l.Reload + m
}

// Max is the larger of two leads for lifetime, for an object that several
// secrets read.
func (l Lead) Max(o Lead, lifetime time.Duration) Lead {
	if o.Of(lifetime) > l.Of(lifetime) {
		return o
	}
	return l
}

// RefreshAfter is when, counted from now, to fetch again a value that
// expires after lifetime: at two thirds of it with ±10% jitter (as
// consul-template renews leases, so sidecars started together spread out),
// but never later than lifetime − Of(lifetime), so the new value, the
// write and the app's reload all fit before the old value dies. When the
// lead is longer than the lifetime itself it cannot be met: the value is
// fetched again at a tenth of its lifetime, not in a busy loop.
func (l Lead) RefreshAfter(lifetime time.Duration) time.Duration {
	return l.refreshAfter(lifetime, rand.Float64())
}

func (l Lead) refreshAfter(lifetime time.Duration, r float64) time.Duration {
	if lifetime <= 0 {
		return 0
	}
	at := time.Duration(float64(lifetime) * 2 / 3 * (0.9 + 0.2*r))
	latest := lifetime - l.Of(lifetime)
	if at > latest {
		// Spread below the deadline too, by up to a tenth of it.
		at = time.Duration(float64(latest) * (0.9 + 0.1*r))
	}
	return max(at, lifetime/10)
}
