// Package bench measures the built binary against the bars in
// docs/benchmarks.md. Run with:
//
//	go test -run '^$' -bench . -benchtime 1x ./test/bench
//
// PHASE_BENCH_TAGS=novault,noaws measures the file-only build.
//
// These are benchmarks, never timed assertions: they report numbers.
package bench

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "phase-sidecar-bench-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "phase-sidecar")
	// As the image is built (Dockerfile): static, stripped. PHASE_BENCH_CGO=1
	// measures a plain go build on a machine with a C compiler instead,
	// which links libc (+1.6 MB idle RSS).
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-tags", os.Getenv("PHASE_BENCH_TAGS"), "-o", binary, "../../cmd/phase-sidecar")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if os.Getenv("PHASE_BENCH_CGO") == "1" {
		build.Args = slices.DeleteFunc(build.Args, func(a string) bool { return a == "-ldflags" || a == "-s -w" })
		build.Env = append(os.Environ(), "CGO_ENABLED=1")
	}
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// setup writes n source files and a config syncing them into a tmpfs dir.
func setup(b *testing.B, n int, extra string) (cfg, src, out, addr string) {
	b.Helper()
	base, err := os.MkdirTemp("/dev/shm", "phase-sidecar-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(base) })
	src, out = filepath.Join(base, "src"), filepath.Join(base, "out")
	for _, d := range []string{src, out} {
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	addr = testenv.Addr(b)
	var y bytes.Buffer
	fmt.Fprintf(&y, "output:\n  dir: %s\nlisten: %q\n%ssecrets:\n", out, addr, extra)
	for i := range n {
		name := fmt.Sprintf("secret_%05d", i)
		if err := os.WriteFile(filepath.Join(src, name), []byte(fmt.Sprintf("value-%05d-%032d", i, i)), 0o644); err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(&y, "  - name: S%05d\n    ref: file://%s/%s\n", i, src, name)
	}
	cfg = filepath.Join(base, "config.yaml")
	if err := os.WriteFile(cfg, y.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	return cfg, src, out, addr
}

func startRun(b *testing.B, cfg string) *exec.Cmd {
	b.Helper()
	cmd := exec.Command(binary, "run", "--config", cfg, "--log-level", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	return cmd
}

func waitReady(b *testing.B, addr string, poll time.Duration) time.Time {
	b.Helper()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := client.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return time.Now()
			}
		}
		time.Sleep(poll)
	}
	b.Fatal("not ready within 30s")
	return time.Time{}
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// BenchmarkFileChangeToTarget: a source file changed on disk → the target
// rewritten, over 1000 changes (bar: p99 ≤ 2 ms).
func BenchmarkFileChangeToTarget(b *testing.B) {
	cfg, src, out, addr := setup(b, 1, "")
	startRun(b, cfg)
	waitReady(b, addr, 5*time.Millisecond)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	if err := w.Add(out); err != nil {
		b.Fatal(err)
	}
	target := filepath.Join(out, "s00000")
	source := filepath.Join(src, "secret_00000")
	const changes = 1000
	lat := make([]time.Duration, 0, changes)
	b.ResetTimer()
	for range b.N {
		for i := range changes {
			want := fmt.Sprintf("changed-%d", i)
			tmp := source + ".tmp"
			if err := os.WriteFile(tmp, []byte(want), 0o644); err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			if err := os.Rename(tmp, source); err != nil {
				b.Fatal(err)
			}
			for {
				select {
				case ev := <-w.Events:
					if ev.Name != target || !ev.Has(fsnotify.Create) {
						continue
					}
				case err := <-w.Errors:
					b.Fatal(err)
				case <-time.After(10 * time.Second):
					b.Fatalf("change %d not delivered within 10s", i)
				}
				if got, _ := os.ReadFile(target); string(got) == want {
					break
				}
			}
			lat = append(lat, time.Since(t0))
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(percentile(lat, 0.5).Microseconds()), "p50-µs")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds()), "p99-µs")
	b.ReportMetric(float64(percentile(lat, 1).Microseconds()), "max-µs")
}

// BenchmarkOnce10000: first full sync of 10 000 file secrets (process start to
// exit) against cp of the same files into tmpfs, with peak RSS (bars: ≤ 1.5×
// cp, ≤ 40 MB).
func BenchmarkOnce10000(b *testing.B) {
	cfg, src, out, _ := setup(b, 10000, "")
	cpOut := out + "-cp"
	var once, cp, validate time.Duration
	var rss int64
	for range b.N {
		os.RemoveAll(out)
		os.RemoveAll(cpOut)
		_ = os.Mkdir(out, 0o755)
		t0 := time.Now()
		c := exec.Command("cp", "-r", src, cpOut)
		if o, err := c.CombinedOutput(); err != nil {
			b.Fatalf("cp: %v %s", err, o)
		}
		cp += time.Since(t0)
		t0 = time.Now()
		c = exec.Command(binary, "once", "--config", cfg, "--log-level", "warn")
		if o, err := c.CombinedOutput(); err != nil {
			b.Fatalf("once: %v %s", err, o)
		}
		once += time.Since(t0)
		rss = max(rss, c.ProcessState.SysUsage().(*syscall.Rusage).Maxrss)
		// The part of once before the first write: process start, parse
		// and validation.
		t0 = time.Now()
		if o, err := exec.Command(binary, "validate", "--config", cfg).CombinedOutput(); err != nil {
			b.Fatalf("validate: %v %s", err, o)
		}
		validate += time.Since(t0)
	}
	n := float64(b.N)
	b.ReportMetric(once.Seconds()*1000/n, "once-ms")
	b.ReportMetric(cp.Seconds()*1000/n, "cp-ms")
	b.ReportMetric(validate.Seconds()*1000/n, "validate-ms")
	b.ReportMetric(once.Seconds()/cp.Seconds(), "once/cp")
	b.ReportMetric(float64(rss)/1024, "peak-rss-MB")
}

// BenchmarkStartToReady100: process start → /readyz 200 with 100 local
// secrets (bar: ≤ 50 ms). /readyz is polled every millisecond.
func BenchmarkStartToReady100(b *testing.B) {
	cfg, _, _, addr := setup(b, 100, "")
	var total time.Duration
	for range b.N {
		t0 := time.Now()
		cmd := exec.Command(binary, "run", "--config", cfg, "--log-level", "warn")
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		total += waitReady(b, addr, time.Millisecond).Sub(t0)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "start-to-ready-ms")
}

// BenchmarkIdle100: RSS and CPU of a sidecar with 100 secrets, idle for 30 s
// between refreshes (bars: RSS ≤ 16 MB, no measurable CPU).
func BenchmarkIdle100(b *testing.B) {
	cfg, _, _, addr := setup(b, 100, "refresh: 1h\n")
	cmd := startRun(b, cfg)
	waitReady(b, addr, 5*time.Millisecond)
	time.Sleep(2 * time.Second) // let start-up settle
	pid := cmd.Process.Pid
	cpu0 := cpuTicks(b, pid)
	idle := 30 * time.Second
	if s := os.Getenv("PHASE_BENCH_IDLE"); s != "" {
		idle, _ = time.ParseDuration(s)
	}
	time.Sleep(idle)
	cpu1 := cpuTicks(b, pid)
	b.ReportMetric(float64(rssKB(b, pid))/1024, "rss-MB")
	b.ReportMetric(float64(cpu1-cpu0)*10, "cpu-ms-idle") // 100 ticks/s
	b.ReportMetric(idle.Seconds(), "idle-s")
}

func cpuTicks(b *testing.B, pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

func rssKB(b *testing.B, pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			n, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return n
		}
	}
	return 0
}
