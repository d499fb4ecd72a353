package reload

import (
	"testing"
	"time"
)

// Latency is the worst case of the app's side of a change: what the
// engine's lead for expiring values is built on.
func TestLatency(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
		want time.Duration
	}{
		{"signal", Config{Coalesce: time.Second, Signal: &SignalConfig{PIDFile: "/run/app.pid"}}, time.Second},
		{"exec", Config{Coalesce: time.Second, Exec: &ExecConfig{Command: []string{"true"}, Timeout: 30 * time.Second}}, 31 * time.Second},
		// 4 attempts of 5 s, waits of at most 0.2, 0.4 and 0.8 s.
		{"http, the defaults", Config{Coalesce: time.Second, HTTP: &HTTPConfig{Timeout: 5 * time.Second, Retries: 3}}, 22400 * time.Millisecond},
		{"http, no retries", Config{HTTP: &HTTPConfig{Timeout: 2 * time.Second}}, 2 * time.Second},
		// The waits stop growing at 5 s.
		{"http, many retries", Config{HTTP: &HTTPConfig{Timeout: time.Second, Retries: 8}}, 9*time.Second + (200+400+800+1600+3200+5000+5000+5000)*time.Millisecond},
		{"none", Config{Coalesce: 3 * time.Second}, 3 * time.Second},
	} {
		if got := c.cfg.Latency(); got != c.want {
			t.Errorf("%s: Latency() = %v, want %v", c.name, got, c.want)
		}
	}
}
