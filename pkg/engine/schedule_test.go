package engine

import (
	"testing"
	"time"
)

// draws is enough that a spread stuck on one value, or a bound missed by a
// few percent, shows up every run.
const draws = 2000

func TestJitterBounds(t *testing.T) {
	for _, d := range []time.Duration{20 * time.Millisecond, time.Second, time.Minute, time.Hour, 24 * time.Hour} {
		t.Run(d.String(), func(t *testing.T) {
			lo, hi := d-d/10, d+d/10
			seen := map[time.Duration]bool{}
			below, above := false, false
			for range draws {
				got := jitter(d)
				if got < lo || got > hi {
					t.Fatalf("jitter(%v) = %v, want within [%v, %v]", d, got, lo, hi)
				}
				seen[got] = true
				below = below || got < d
				above = above || got > d
			}
			if len(seen) < 2 {
				t.Fatalf("jitter(%v) gave one value %d times: no spread", d, draws)
			}
			if !below || !above {
				t.Errorf("jitter(%v) only on one side of d (below %v, above %v)", d, below, above)
			}
		})
	}
}

func TestBackoffFullJitterCapped(t *testing.T) {
	for _, tc := range []struct {
		name     string
		attempt  int
		interval time.Duration
		ceil     time.Duration // the largest value full jitter may draw
	}{
		{"first retry", 1, time.Hour, backoffBase},
		{"doubles", 2, time.Hour, 2 * backoffBase},
		{"doubles again", 4, time.Hour, 8 * backoffBase},
		{"capped by backoffMax", 12, time.Hour, backoffMax},
		{"huge attempt stays capped", 1000, time.Hour, backoffMax},
		{"capped by the refresh interval", 12, 30 * time.Second, 30 * time.Second},
		{"interval below base still waits up to base", 5, 100 * time.Millisecond, backoffBase},
	} {
		t.Run(tc.name, func(t *testing.T) {
			floor := backoffBase / 10
			seen := map[time.Duration]bool{}
			low, high := false, false
			for range draws {
				got := backoff(tc.attempt, tc.interval)
				if got < floor || got > tc.ceil {
					t.Fatalf("backoff(%d, %v) = %v, want within [%v, %v]", tc.attempt, tc.interval, got, floor, tc.ceil)
				}
				seen[got] = true
				// Full jitter draws from the whole of [0, ceil], not a band
				// near ceil: both quarters at the ends are reached.
				low = low || got <= tc.ceil/4
				high = high || got >= tc.ceil*3/4
			}
			if len(seen) < 2 {
				t.Fatalf("backoff(%d, %v) gave one value %d times: no jitter", tc.attempt, tc.interval, draws)
			}
			if !low || !high {
				t.Errorf("backoff(%d, %v) not spread over [0, %v] (reached low quarter %v, high quarter %v)", tc.attempt, tc.interval, tc.ceil, low, high)
			}
		})
	}
}
