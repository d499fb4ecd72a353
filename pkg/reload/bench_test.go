package reload

import (
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// BenchmarkChangeToSignal measures Changed() → SIGHUP received by a real
// child process (its "hup N" line read back through a pipe), with a 1 ms
// coalescing window, the pid file re-read or /proc scanned each time. The
// bar is p99 ≤ 2 ms plus the window; p99-over-window-ms is that margin.
func BenchmarkChangeToSignal(b *testing.B) {
	const window = time.Millisecond
	for _, by := range []string{"pid_file", "process"} {
		b.Run(by, func(b *testing.B) {
			pidFile := filepath.Join(b.TempDir(), "app.pid")
			c := startCounter(b, nil, "-pid-file", pidFile)
			sig := &SignalConfig{PIDFile: pidFile}
			if by == "process" {
				sig = &SignalConfig{Process: "sighup-counter"}
			}
			r, err := New(Config{Signal: sig, Coalesce: window}, Options{Logger: discard()})
			if err != nil {
				b.Fatal(err)
			}
			runReloader(b, r)
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for b.Loop() {
				start := time.Now()
				r.Changed([]string{"SECRET_KEY"}, false)
				c.expect(b, "hup")
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(lat)
			q := func(p float64) float64 {
				return float64(lat[int(p*float64(len(lat)-1))]) / float64(time.Millisecond)
			}
			b.ReportMetric(q(0.50), "p50-ms")
			b.ReportMetric(q(0.99), "p99-ms")
			b.ReportMetric(q(0.99)-float64(window)/float64(time.Millisecond), "p99-over-window-ms")
		})
	}
}

// BenchmarkScanProc is the /proc scan that signal.process costs on every
// notification, on this machine's process table.
func BenchmarkScanProc(b *testing.B) {
	s, err := NewSignal(SignalConfig{Process: "no-such-process-name"}, discard())
	if err != nil {
		b.Fatal(err)
	}
	var n int
	for b.Loop() {
		procs, err := scanProc("/proc")
		if err != nil {
			b.Fatal(err)
		}
		n = len(procs)
		_ = s.match(procs)
	}
	b.ReportMetric(float64(n), "processes")
}
