package backoff

import (
	"math"
	"testing"
	"time"
)

// fixed returns a Rand that always answers the same fraction of n.
func fixed(frac float64) func(int64) int64 {
	return func(n int64) int64 {
		if frac >= 1 {
			return n - 1
		}
		return int64(frac * float64(n))
	}
}

func TestCeiling(t *testing.T) {
	t.Parallel()
	p := Policy{Base: time.Second, Max: 5 * time.Minute}
	tests := []struct {
		attempt int
		want    time.Duration
	}{
		{-3, time.Second},
		{0, time.Second},
		{1, time.Second},
		{2, 2 * time.Second},
		{3, 4 * time.Second},
		{9, 256 * time.Second},
		{10, 5 * time.Minute},
		{64, 5 * time.Minute},
		{math.MaxInt, 5 * time.Minute},
	}
	for _, tt := range tests {
		if got := p.Ceiling(tt.attempt); got != tt.want {
			t.Errorf("Ceiling(%d) = %v, want %v", tt.attempt, got, tt.want)
		}
	}
	// Max below Base means Base; a huge Max does not overflow.
	if got := (Policy{Base: time.Second, Max: time.Millisecond}).Ceiling(5); got != time.Second {
		t.Errorf("Max < Base: ceiling %v, want 1s", got)
	}
	huge := Policy{Base: time.Second, Max: math.MaxInt64}
	prev := time.Duration(0)
	for a := 1; a < 100; a++ {
		c := huge.Ceiling(a)
		if c < prev {
			t.Fatalf("attempt %d: ceiling %v fell below %v (overflow)", a, c, prev)
		}
		prev = c
	}
}

// TestDelayBounds pins both ends of each jitter with a fixed Rand.
func TestDelayBounds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		p        Policy
		attempt  int
		min, max time.Duration
	}{
		{"full first", Policy{Base: time.Second, Max: time.Minute}, 1, 100 * time.Millisecond, time.Second},
		{"full third", Policy{Base: time.Second, Max: time.Minute}, 3, 100 * time.Millisecond, 4 * time.Second},
		{"full capped", Policy{Base: time.Second, Max: time.Minute}, 20, 100 * time.Millisecond, time.Minute},
		{"equal first", Policy{Base: 500 * time.Millisecond, Max: time.Minute, Jitter: Equal}, 1, 250 * time.Millisecond, 500 * time.Millisecond},
		{"equal capped", Policy{Base: 500 * time.Millisecond, Max: time.Minute, Jitter: Equal}, 30, 30 * time.Second, time.Minute},
		{"no growth", Policy{Base: time.Millisecond, Max: time.Millisecond, Jitter: Equal}, 7, 500 * time.Microsecond, time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			lo, hi := tt.p, tt.p
			lo.Rand, hi.Rand = fixed(0), fixed(1)
			if got := lo.Delay(tt.attempt); got != tt.min {
				t.Errorf("lowest draw: %v, want %v", got, tt.min)
			}
			if got := hi.Delay(tt.attempt); got != tt.max {
				t.Errorf("highest draw: %v, want %v", got, tt.max)
			}
		})
	}
}

// TestDelayDraws checks the real source over many draws: always within
// bounds, and spread across them (full jitter's mean is half the ceiling).
func TestDelayDraws(t *testing.T) {
	t.Parallel()
	for _, j := range []Jitter{Full, Equal} {
		p := Policy{Base: time.Second, Max: 8 * time.Second, Jitter: j}
		for attempt := 1; attempt <= 6; attempt++ {
			c := p.Ceiling(attempt)
			lo := c / 2
			if j == Full {
				lo = p.Base / 10
			}
			var sum time.Duration
			const n = 2000
			for range n {
				d := p.Delay(attempt)
				if d < lo || d > c {
					t.Fatalf("jitter %d attempt %d: %v outside [%v, %v]", j, attempt, d, lo, c)
				}
				sum += d
			}
			mean := sum / n
			want := c / 2
			if j == Equal {
				want = c * 3 / 4
			}
			// Generous: the standard error of the mean is under 1% of c.
			if diff := mean - want; diff > c/20 || diff < -c/20 {
				t.Errorf("jitter %d attempt %d: mean %v, want about %v", j, attempt, mean, want)
			}
		}
	}
}

func TestZeroPolicy(t *testing.T) {
	t.Parallel()
	if d := (Policy{}).Delay(3); d != 0 {
		t.Errorf("zero policy: %v, want 0", d)
	}
}
