package engine

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/phase-sidecar/phase-sidecar/pkg/config"
	"github.com/phase-sidecar/phase-sidecar/pkg/metrics"
	"github.com/phase-sidecar/phase-sidecar/pkg/secret"
	"github.com/phase-sidecar/phase-sidecar/pkg/sink"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// What templates add to the engine's work, in process (no start-up, no
// config parse; test/bench measures the binary): a first sync of 1 000
// templated secrets against 1 000 plain ones, and one change of an input
// carried to its rendered file against one change of a plain secret
// (docs/benchmarks.md, "Templates"):
//
//	go test -run '^$' -bench Once1000 -benchtime 20x ./pkg/engine/
//	go test -run '^$' -bench ChangeToFile -benchtime 5000x ./pkg/engine/

// benchShapes are the configs compared. Each reads n objects and writes n
// files, so only the rendering differs.
var benchShapes = []struct {
	name   string
	secret func(i int) string // the secrets[] entries for object i
}{
	// One field of each object, written as it is.
	{"plain", func(i int) string {
		return fmt.Sprintf("  - name: S%05d\n    ref: vault://secret/app%05d#password\n", i, i)
	}},
	// The plain shape with an input-only secret of the same field beside
	// each, read by nothing: the templated config without its templates.
	{"plain+inputs", func(i int) string {
		return fmt.Sprintf("  - name: S%05d\n    ref: vault://secret/app%05d#password\n"+
			"  - name: I%05d\n    ref: vault://secret/app%05d#password\n    write: false\n", i, i, i, i)
	}},
	// The same field, input only, read by a template that encodes it into a URL.
	{"templated", func(i int) string {
		return fmt.Sprintf("  - name: P%05d\n    ref: vault://secret/app%05d#password\n    write: false\n"+
			"  - name: URL%05d\n    template: 'postgresql://app:{{ secret \"P%05d\" | urlencode }}@db:5432/app'\n", i, i, i, i)
	}},
	// DATABASE_URL from a user name and a password of one object, both input only.
	{"database_url", func(i int) string {
		return fmt.Sprintf("  - name: U%05d\n    ref: vault://secret/app%05d#username\n    write: false\n"+
			"  - name: P%05d\n    ref: vault://secret/app%05d#password\n    write: false\n"+
			"  - name: URL%05d\n    template: 'postgresql://{{ secret \"U%05d\" | urlencode }}:{{ secret \"P%05d\" | urlencode }}@db:5432/app'\n", i, i, i, i, i, i, i)
	}},
}

// benchConfig parses a config of n objects of a shape, as the sidecar would.
func benchConfig(b *testing.B, n int, shape func(int) string) *config.Config {
	b.Helper()
	var y strings.Builder
	y.WriteString("output:\n  dir: /dev/shm/unused\n  allow_disk: true\nsources:\n  vault:\n    address: http://127.0.0.1:8200\n    auth: { method: token, token_file: /dev/null }\nsecrets:\n")
	for i := range n {
		y.WriteString(shape(i))
	}
	cfg, err := config.Parse("bench.yaml", []byte(y.String()))
	if err != nil {
		b.Fatal(err)
	}
	return cfg
}

// benchDir is a fresh directory on tmpfs (where the sidecar writes in
// production) when there is one.
func benchDir(b *testing.B) string {
	b.Helper()
	base := "/dev/shm"
	if _, err := os.Stat(base); err != nil {
		base = ""
	}
	d, err := os.MkdirTemp(base, "phase-engine-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// benchSource serves every object with a user name and a password; gen
// changes the password.
type benchSource struct{ gen atomic.Int64 }

func (s *benchSource) Fetch(_ context.Context, ref sources.Ref) (sources.Object, error) {
	g := s.gen.Load()
	return sources.Object{
		Fields: map[string]secret.Value{
			"username": secret.FromString("v-approle-" + ref.Path),
			"password": secret.FromString(fmt.Sprintf("p@ss:w/rd?#%%-%d-%s", g, ref.Path)),
		},
		Version: fmt.Sprint(g),
	}, nil
}

func benchEngine(b *testing.B, cfg *config.Config, dir string, src sources.Source, onChange func(Change)) *Engine {
	b.Helper()
	c := *cfg
	c.Output.Dir = dir
	d, err := sink.Open(sink.Options{Dir: dir, AllowDisk: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	e, err := New(Options{Config: &c, Sources: map[string]sources.Source{sources.Vault: src}, Sink: d,
		Metrics: metrics.New(prometheus.NewRegistry(), "bench", "bench"), OnChange: onChange})
	if err != nil {
		b.Fatal(err)
	}
	return e
}

// BenchmarkOnce1000: the engine's part of `once` (New, then one sync of
// every secret into an empty directory) for 1 000 objects of each shape.
// The shapes alternate within each iteration, so that all see the same
// machine; each is reported as its median in ms, and as a ratio to plain.
func BenchmarkOnce1000(b *testing.B) {
	const n = 1000
	cfgs := make([]*config.Config, len(benchShapes))
	for i, sh := range benchShapes {
		cfgs[i] = benchConfig(b, n, sh.secret)
	}
	src := &benchSource{}
	took := make([][]time.Duration, len(benchShapes))
	b.ReportAllocs()
	for b.Loop() {
		for i, cfg := range cfgs {
			b.StopTimer()
			dir := benchDir(b)
			runtime.GC() // each shape starts from a clean heap
			b.StartTimer()
			t0 := time.Now()
			e := benchEngine(b, cfg, dir, src, nil)
			if err := e.Once(context.Background()); err != nil {
				b.Fatal(err)
			}
			took[i] = append(took[i], time.Since(t0))
		}
	}
	for i, sh := range benchShapes {
		b.ReportMetric(median(took[i]).Seconds()*1000, sh.name+"-ms")
		if i > 0 {
			b.ReportMetric(median(took[i]).Seconds()/median(took[0]).Seconds(), sh.name+"/plain")
		}
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkChangeToFile: one changed object carried to its file: fetch,
// render, compare, atomic write, change report. For the templated shapes
// that is the input (no file of its own) and the template's rendered file.
// The shapes alternate change by change; each is reported as its median
// in µs, and as what that adds to plain's.
func BenchmarkChangeToFile(b *testing.B) {
	ctx := context.Background()
	type run struct {
		e       *Engine
		src     *benchSource
		changes atomic.Int64
		took    []time.Duration
	}
	runs := make([]*run, len(benchShapes))
	for i, sh := range benchShapes {
		r := &run{src: &benchSource{}}
		r.e = benchEngine(b, benchConfig(b, 1, sh.secret), benchDir(b), r.src, func(Change) { r.changes.Add(1) })
		r.e.runJobs(ctx, r.e.jobs, true)
		runs[i] = r
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, r := range runs {
			r.src.gen.Add(1)
			t0 := time.Now()
			r.e.runJobs(ctx, r.e.jobs, true)
			r.took = append(r.took, time.Since(t0))
		}
	}
	for i, r := range runs {
		if got := r.changes.Load(); got != int64(b.N)+1 {
			b.Fatalf("%s: %d changes reported for %d runs, want one each", benchShapes[i].name, got, b.N+1)
		}
		us := median(r.took).Seconds() * 1e6
		b.ReportMetric(us, benchShapes[i].name+"-µs")
		if i > 0 {
			b.ReportMetric(us-median(runs[0].took).Seconds()*1e6, benchShapes[i].name+"-added-µs")
		}
	}
}
