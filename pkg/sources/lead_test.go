package sources

import (
	"testing"
	"time"
)

func TestLeadRefreshAfter(t *testing.T) {
	tests := []struct {
		name     string
		lead     Lead
		lifetime time.Duration
		lo, hi   time.Duration // over every jitter draw
	}{
		{"1h lease, defaults: two thirds", Lead{Reload: 11 * time.Second}, time.Hour, 36 * time.Minute, 44 * time.Minute},
		{"24h lease, defaults: two thirds", Lead{Reload: 11 * time.Second}, 24 * time.Hour, 864 * time.Minute, 1056 * time.Minute},
		// 60s − (40s reload + 6s margin) = 14s latest; two thirds (36–44s) is later.
		{"lead caps two thirds", Lead{Reload: 40 * time.Second}, time.Minute, 12600 * time.Millisecond, 14 * time.Second},
		{"fixed margin caps", Lead{Reload: time.Second, Margin: 30 * time.Minute}, time.Hour, 26*time.Minute + 59*time.Second, 29*time.Minute + 59*time.Second},
		{"lead longer than the lifetime: a tenth", Lead{Reload: time.Minute}, 30 * time.Second, 3 * time.Second, 3 * time.Second},
		{"zero lifetime", Lead{}, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, r := range []float64{0, 0.25, 0.5, 0.75, 0.999999} {
				got := tt.lead.refreshAfter(tt.lifetime, r)
				if got < tt.lo || got > tt.hi {
					t.Errorf("r=%v: %v, want in [%v, %v]", r, got, tt.lo, tt.hi)
				}
				if tt.lifetime > 0 && tt.lead.Of(tt.lifetime) < tt.lifetime && got > tt.lifetime-tt.lead.Of(tt.lifetime) {
					t.Errorf("r=%v: %v is later than lifetime − lead = %v", r, got, tt.lifetime-tt.lead.Of(tt.lifetime))
				}
			}
		})
	}
}

func TestLeadOf(t *testing.T) {
	if got := (Lead{Reload: time.Second}).Of(time.Hour); got != time.Second+6*time.Minute {
		t.Errorf("default fraction: %v", got)
	}
	if got := (Lead{Reload: time.Second, Fraction: 0.5}).Of(time.Hour); got != time.Second+30*time.Minute {
		t.Errorf("fraction: %v", got)
	}
	if got := (Lead{Margin: time.Minute, Fraction: 0.5}).Of(time.Hour); got != time.Minute {
		t.Errorf("fixed: %v", got)
	}
	a, b := Lead{Margin: time.Minute}, Lead{Fraction: 0.5}
	if a.Max(b, time.Hour) != b || a.Max(b, time.Minute) != a {
		t.Error("Max picks the longer lead for the lifetime")
	}
}
