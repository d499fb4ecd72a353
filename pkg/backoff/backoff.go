// Package backoff computes the wait before a retry: exponential growth from
// a base to a cap, with jitter so that many clients that failed together do
// not come back together. It is the one backoff of the project; callers
// keep their own attempt counters and timers.
package backoff

import (
	"math"
	"math/rand/v2"
	"time"
)

// Jitter is how a delay is drawn below its ceiling.
type Jitter int

const (
	// Full draws uniformly in [0, ceiling] (floored at Base/10): the least
	// total load when many clients retry against one server.
	Full Jitter = iota
	// Equal draws uniformly in [ceiling/2, ceiling]: for a retry whose
	// caller needs a guaranteed pause that grows, such as a single gate
	// that refuses all work until the delay has passed.
	Equal
)

// Policy is exponential backoff: the ceiling of attempt n is
// min(Max, Base·2^(n-1)), and the delay is drawn below it by Jitter.
// The zero Jitter is Full. A Policy is a value; it is safe for concurrent
// use when Rand is.
type Policy struct {
	Base   time.Duration // ceiling of the first attempt; must be positive
	Max    time.Duration // the ceiling stops growing here; below Base means Base
	Jitter Jitter
	// Rand returns a uniform number in [0, n) for n > 0; nil means
	// math/rand/v2's Int64N. Tests pass a fixed one.
	Rand func(n int64) int64
}

// Delay is the wait before attempt (1 for the first retry; lower counts
// as 1). It is never below Base/10, so full jitter cannot spin, and never
// above Max. A Policy without a positive Base returns 0.
func (p Policy) Delay(attempt int) time.Duration {
	if p.Base <= 0 {
		return 0
	}
	c := p.Ceiling(attempt)
	switch p.Jitter {
	case Equal:
		return c/2 + p.rand(c-c/2)
	default:
		return max(p.rand(c), p.Base/10)
	}
}

// Ceiling is the largest delay attempt can get: min(Max, Base·2^(attempt-1)).
func (p Policy) Ceiling(attempt int) time.Duration {
	top := max(p.Max, p.Base)
	d := p.Base
	for i := 1; i < attempt && d < top; i++ {
		if d > top/2 {
			return top
		}
		d *= 2
	}
	return min(d, top)
}

// rand is uniform in [0, d].
func (p Policy) rand(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	n := int64(d)
	if n < math.MaxInt64 {
		n++
	}
	if p.Rand != nil {
		return time.Duration(p.Rand(n))
	}
	return time.Duration(rand.Int64N(n))
}
