package bench

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

// The templates' bars (docs/benchmarks.md, "Templates"): rendering adds at
// most 10 % to `once` and at most 200 µs to a change's propagation. Both
// compare the same work with and without templates, in the same run:
//
//	go test -run '^$' -bench 'Template' -benchtime 10x ./test/bench

// templateShapes: n file secrets written as they are; the same with n
// input-only secrets of the same files beside them that nothing reads (the
// config of the templated shape without its templates: it separates what
// the extra entries cost from what rendering costs); and n templates, each
// reading one file input only, writing the same number of files.
var templateShapes = []struct {
	name   string
	secret func(i int, src string) string
}{
	{"plain", func(i int, src string) string {
		return fmt.Sprintf("  - name: S%05d\n    ref: file://%s/secret_%05d\n", i, src, i)
	}},
	{"plain+inputs", func(i int, src string) string {
		return fmt.Sprintf("  - name: S%05d\n    ref: file://%s/secret_%05d\n"+
			"  - name: I%05d\n    ref: file://%s/secret_%05d\n    write: false\n", i, src, i, i, src, i)
	}},
	{"templated", func(i int, src string) string {
		return fmt.Sprintf("  - name: S%05d\n    ref: file://%s/secret_%05d\n    write: false\n"+
			"  - name: T%05d\n    template: 'postgresql://app:{{ secret \"S%05d\" | urlencode }}@db:5432/app'\n", i, src, i, i, i)
	}},
}

// templateSetup writes n source files and one config per shape.
func templateSetup(b *testing.B, n int) (src string, cfgs, outs []string, addrs []string) {
	b.Helper()
	base, err := os.MkdirTemp("/dev/shm", "phase-sidecar-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(base) })
	src = filepath.Join(base, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		b.Fatal(err)
	}
	for i := range n {
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("secret_%05d", i)), []byte(fmt.Sprintf("p@ss:w/rd-%05d-%024d", i, i)), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	for _, sh := range templateShapes {
		out := filepath.Join(base, "out-"+sh.name)
		if err := os.Mkdir(out, 0o755); err != nil {
			b.Fatal(err)
		}
		addr := testenv.Addr(b)
		var y bytes.Buffer
		fmt.Fprintf(&y, "output:\n  dir: %s\nlisten: %q\nrefresh: 1h\nsecrets:\n", out, addr)
		for i := range n {
			y.WriteString(sh.secret(i, src))
		}
		cfg := filepath.Join(base, sh.name+".yaml")
		if err := os.WriteFile(cfg, y.Bytes(), 0o644); err != nil {
			b.Fatal(err)
		}
		cfgs, outs, addrs = append(cfgs, cfg), append(outs, out), append(addrs, addr)
	}
	return src, cfgs, outs, addrs
}

// BenchmarkTemplateOnce1000: `once` from process start to exit for each
// shape of 1 000: the same reads, the same number of files written. The
// shapes alternate within each iteration, so that all see the same
// machine; each is reported as its median (bar: templated ≤ 1.1 × plain),
// with `validate` of the same config: process start, parse and checks,
// the part of once before the first read.
func BenchmarkTemplateOnce1000(b *testing.B) {
	_, cfgs, outs, _ := templateSetup(b, 1000)
	took := make([][]time.Duration, len(cfgs))
	validate := make([][]time.Duration, len(cfgs))
	var rss int64
	for range b.N {
		for i, cfg := range cfgs {
			os.RemoveAll(outs[i])
			if err := os.Mkdir(outs[i], 0o755); err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			c := exec.Command(binary, "once", "--config", cfg, "--log-level", "warn")
			if o, err := c.CombinedOutput(); err != nil {
				b.Fatalf("once %s: %v %s", templateShapes[i].name, err, o)
			}
			took[i] = append(took[i], time.Since(t0))
			t0 = time.Now()
			if o, err := exec.Command(binary, "validate", "--config", cfg).CombinedOutput(); err != nil {
				b.Fatalf("validate %s: %v %s", templateShapes[i].name, err, o)
			}
			validate[i] = append(validate[i], time.Since(t0))
			if i == len(cfgs)-1 {
				rss = max(rss, c.ProcessState.SysUsage().(*syscall.Rusage).Maxrss)
			}
		}
	}
	plain, inputs, templated := percentile(took[0], 0.5), percentile(took[1], 0.5), percentile(took[2], 0.5)
	b.ReportMetric(plain.Seconds()*1000, "plain-ms")
	b.ReportMetric(inputs.Seconds()*1000, "plain+inputs-ms")
	b.ReportMetric(templated.Seconds()*1000, "templated-ms")
	b.ReportMetric(templated.Seconds()/plain.Seconds(), "templated/plain")
	b.ReportMetric(templated.Seconds()/inputs.Seconds(), "templated/plain+inputs")
	for i, sh := range templateShapes {
		b.ReportMetric(percentile(validate[i], 0.5).Seconds()*1000, sh.name+"-validate-ms")
	}
	b.ReportMetric(float64(rss)/1024, "templated-peak-rss-MB")
}

// BenchmarkTemplateChangeToTarget: a source file renamed over → its target
// rewritten, 1 000 changes each, for a plain secret and for a template
// reading the file input only, in one sidecar (bar: the template's p50
// and p99 ≤ the plain secret's + 200 µs). The changes alternate between
// the two, so both see the same machine.
func BenchmarkTemplateChangeToTarget(b *testing.B) {
	base, err := os.MkdirTemp("/dev/shm", "phase-sidecar-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(base) })
	src, out := filepath.Join(base, "src"), filepath.Join(base, "out")
	for _, d := range []string{src, out} {
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	for _, f := range []string{"plain", "input"} {
		if err := os.WriteFile(filepath.Join(src, f), []byte("initial"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	addr := testenv.Addr(b)
	cfg := filepath.Join(base, "config.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`output:
  dir: %[1]s
listen: %[2]q
refresh: 1h
secrets:
  - name: PLAIN
    ref: file://%[3]s/plain
  - name: INPUT
    ref: file://%[3]s/input
    write: false
  - name: RENDERED
    template: 'postgresql://app:{{ secret "INPUT" | urlencode }}@db:5432/app'
`, out, addr, src)), 0o644); err != nil {
		b.Fatal(err)
	}
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
	type kind struct {
		source, target string
		want           func(string) string
		lat            []time.Duration
	}
	kinds := []*kind{
		{source: filepath.Join(src, "plain"), target: filepath.Join(out, "plain"), want: func(v string) string { return v }},
		{source: filepath.Join(src, "input"), target: filepath.Join(out, "rendered"), want: func(v string) string { return "postgresql://app:" + v + "@db:5432/app" }},
	}
	const changes = 1000
	b.ResetTimer()
	for range b.N {
		for i := range 2 * changes {
			k := kinds[i%2]
			v := fmt.Sprintf("changed-%d", i)
			tmp := k.source + ".tmp"
			if err := os.WriteFile(tmp, []byte(v), 0o644); err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			if err := os.Rename(tmp, k.source); err != nil {
				b.Fatal(err)
			}
			want := k.want(v)
			for {
				select {
				case ev := <-w.Events:
					if ev.Name != k.target || !ev.Has(fsnotify.Create) {
						continue
					}
				case err := <-w.Errors:
					b.Fatal(err)
				case <-time.After(10 * time.Second):
					b.Fatalf("change %d not delivered within 10s", i)
				}
				if got, _ := os.ReadFile(k.target); string(got) == want {
					break
				}
			}
			k.lat = append(k.lat, time.Since(t0))
		}
	}
	b.StopTimer()
	for _, k := range []struct {
		name string
		lat  []time.Duration
	}{{"plain", kinds[0].lat}, {"template", kinds[1].lat}} {
		b.ReportMetric(float64(percentile(k.lat, 0.5).Microseconds()), k.name+"-p50-µs")
		b.ReportMetric(float64(percentile(k.lat, 0.99).Microseconds()), k.name+"-p99-µs")
	}
	b.ReportMetric(float64((percentile(kinds[1].lat, 0.5) - percentile(kinds[0].lat, 0.5)).Microseconds()), "added-p50-µs")
	b.ReportMetric(float64((percentile(kinds[1].lat, 0.99) - percentile(kinds[0].lat, 0.99)).Microseconds()), "added-p99-µs")
}
