package engine

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phase-sidecar/phase-sidecar/pkg/config"
	"github.com/phase-sidecar/phase-sidecar/pkg/secret"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
	"github.com/phase-sidecar/phase-sidecar/test/testenv"
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

func TestRetryPolicy(t *testing.T) {
	const capd = 5 * time.Minute
	for _, tc := range []struct {
		name      string
		attempt   int
		interval  time.Duration
		sourceErr bool
		ceil      time.Duration // the largest value full jitter may draw
	}{
		{"first retry", 1, time.Hour, false, backoffBase},
		{"doubles", 2, time.Hour, false, 2 * backoffBase},
		{"doubles again", 4, time.Hour, false, 8 * backoffBase},
		{"capped at 5m", 12, time.Hour, false, 5 * time.Minute},
		{"huge attempt stays capped", 1000, time.Hour, false, 5 * time.Minute},
		{"per-secret error: capped by the refresh interval", 12, 30 * time.Second, false, 30 * time.Second},
		{"interval below base still waits up to base", 5, 100 * time.Millisecond, false, backoffBase},
		{"source down: not capped by the interval", 12, 10 * time.Second, true, capd},
		{"source down: doubles from the base", 3, 10 * time.Second, true, 4 * backoffBase},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &Engine{cfg: &config.Config{Refresh: tc.interval, Breaker: config.Breaker{Cap: capd}}}
			j := &job{secrets: []*state{{cfg: &config.Secret{Refresh: tc.interval}}}}
			p := e.retryPolicy(j, tc.sourceErr)
			floor := backoffBase / 10
			seen := map[time.Duration]bool{}
			low, high := false, false
			for range draws {
				got := p.Delay(tc.attempt)
				if got < floor || got > tc.ceil {
					t.Fatalf("Delay(%d) = %v, want within [%v, %v]", tc.attempt, got, floor, tc.ceil)
				}
				seen[got] = true
				// Full jitter draws from the whole of [0, ceil], not a band
				// near ceil: both quarters at the ends are reached.
				low = low || got <= tc.ceil/4
				high = high || got >= tc.ceil*3/4
			}
			if len(seen) < 2 {
				t.Fatalf("Delay(%d) gave one value %d times: no jitter", tc.attempt, draws)
			}
			if !low || !high {
				t.Errorf("Delay(%d) not spread over [0, %v] (reached low quarter %v, high quarter %v)", tc.attempt, tc.ceil, low, high)
			}
		})
	}
}

// TestSplayFirstRefresh: the first refresh after a job's first success
// falls anywhere within splay × interval; later ones keep ±10% jitter.
func TestSplayFirstRefresh(t *testing.T) {
	const iv = 10 * time.Second
	for _, splay := range []float64{1, 0.5} {
		e := &Engine{cfg: &config.Config{Refresh: iv, Splay: splay}}
		lo, hi := iv, time.Duration(0)
		for range draws {
			j := &job{secrets: []*state{{cfg: &config.Secret{Refresh: iv}}}}
			d := e.nextRefresh(j)
			lo, hi = min(lo, d), max(hi, d)
			if later := e.nextRefresh(j); later < iv*9/10 || later > iv*11/10 {
				t.Fatalf("splay %v: a later refresh %v outside ±10%% of %v", splay, later, iv)
			}
		}
		wantLo := time.Duration(float64(iv) * (1 - splay))
		if lo < wantLo || hi > iv {
			t.Errorf("splay %v: first refreshes in [%v, %v], want within [%v, %v]", splay, lo, hi, wantLo, iv)
		}
		if spread := hi - lo; spread < time.Duration(float64(iv)*splay*0.9) {
			t.Errorf("splay %v: first refreshes spread over %v only", splay, spread)
		}
	}
}

// gatedSource holds every fetch made while gated until the test closes
// release, and records how many fetches were in flight at once.
type gatedSource struct {
	mu       sync.Mutex
	gated    bool
	inflight int
	peak     int
	watching int
	started  chan string // the path of each gated fetch, as it starts
	release  chan struct{}
	hints    chan func(sources.Ref)
	// slowFetch and slowWatch, when set, hold fetches and watchers that see
	// their context end until closed: a source slow to abort.
	slowFetch, slowWatch chan struct{}
}

func newGatedSource(gated bool) *gatedSource {
	return &gatedSource{gated: gated, started: make(chan string, 1000), release: make(chan struct{}), hints: make(chan func(sources.Ref), 1)}
}

func (g *gatedSource) Fetch(ctx context.Context, ref sources.Ref) (sources.Object, error) {
	g.mu.Lock()
	gated := g.gated
	g.inflight++
	g.peak = max(g.peak, g.inflight)
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.inflight--
		g.mu.Unlock()
	}()
	if gated {
		g.started <- ref.Path
		select {
		case <-g.release:
		case <-ctx.Done():
			wait(g.slowFetch)
			return sources.Object{}, ctx.Err()
		}
	}
	return sources.Object{Value: secret.FromString(ref.Path), Version: "1"}, nil
}

func (g *gatedSource) Watch(ctx context.Context, _ []sources.Ref, wake func(sources.Ref)) error {
	g.mu.Lock()
	g.watching++
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.watching--
		g.mu.Unlock()
	}()
	g.hints <- wake
	<-ctx.Done()
	wait(g.slowWatch)
	return nil
}

func wait(c chan struct{}) {
	if c != nil {
		<-c
	}
}

// gate starts holding fetches and forgets the peak so far.
func (g *gatedSource) gate() {
	g.mu.Lock()
	g.gated, g.peak = true, 0
	g.mu.Unlock()
}

func (g *gatedSource) peakInFlight() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.peak
}

// expectStarts waits for n gated fetches to start.
func (g *gatedSource) expectStarts(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		select {
		case <-g.started:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d fetches started", i, n)
		}
	}
}

func manySecrets(t *testing.T, n int) []config.Secret {
	var out []config.Secret
	for i := range n {
		out = append(out, config.Secret{Name: fmt.Sprintf("S%02d", i), Ref: testenv.Ref(t, fmt.Sprintf("file:///src/s%02d", i)), Required: true})
	}
	return out
}

// wakeAll waits for Run's first sync, then holds the source's fetches and
// wakes every secret, so all are due at once.
func (g *gatedSource) wakeAll(e *Engine, secrets []config.Secret) {
	wake := <-g.hints
	<-e.Ready()
	g.gate()
	for _, s := range secrets {
		wake(s.Ref)
	}
}

// TestConcurrencyLimit: with more due objects than workers, exactly
// Concurrency fetches are in flight, in the first sync (Once and Run share
// it) and in scheduled runs woken by hints.
func TestConcurrencyLimit(t *testing.T) {
	const objects, limit = 20, 4
	for _, mode := range []string{"first sync", "scheduled"} {
		t.Run(mode, func(t *testing.T) {
			secrets := manySecrets(t, objects)
			f := newFixture(t, secrets...)
			f.cfg.Concurrency = limit
			f.changes = make(chan Change, 2*objects)
			src := newGatedSource(mode == "first sync")
			e := f.engine(t, map[string]sources.Source{sources.File: src})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			if mode == "first sync" {
				go func() { done <- e.Once(ctx) }()
			} else {
				go func() { done <- e.Run(ctx) }()
				src.wakeAll(e, secrets)
			}
			src.expectStarts(t, limit)
			// Every worker is now held: no further fetch may start.
			select {
			case p := <-src.started:
				t.Fatalf("fetch of %s started with %d already in flight (concurrency %d)", p, limit, limit)
			case <-time.After(100 * time.Millisecond):
			}
			close(src.release)
			src.expectStarts(t, objects-limit)
			if mode == "scheduled" {
				cancel()
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if p := src.peakInFlight(); p > limit || p < 2 {
				t.Fatalf("peak fetches in flight = %d, want 2..%d", p, limit)
			}
			if got := f.read(t, "s19"); !strings.HasSuffix(got, "/src/s19") {
				t.Errorf("s19 = %q", got)
			}
		})
	}
}

// TestRunJoinsEveryGoroutine cancels Run while fetches are in flight and the
// dispatcher waits for a free worker: Run waits for the fetches and for the
// watcher however slowly each aborts, and when it returns the goroutine
// count is back where it was.
func TestRunJoinsEveryGoroutine(t *testing.T) {
	for _, slow := range []string{"fetch", "watch"} {
		t.Run("slow "+slow, func(t *testing.T) {
			const limit = 4
			secrets := manySecrets(t, 10)
			f := newFixture(t, secrets...)
			f.cfg.Concurrency = limit
			f.changes = make(chan Change, 2*len(secrets))
			src := newGatedSource(false)
			held := make(chan struct{})
			if slow == "fetch" {
				src.slowFetch = held
			} else {
				src.slowWatch = held
			}
			e := f.engine(t, map[string]sources.Source{sources.File: src})

			before := runtime.NumGoroutine()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- e.Run(ctx) }()
			src.wakeAll(e, secrets)
			src.expectStarts(t, limit)
			cancel()
			select {
			case <-done:
				t.Fatalf("Run returned while a %s was still running", slow)
			case <-time.After(50 * time.Millisecond):
			}
			close(held)
			if err := <-done; err != nil {
				t.Fatalf("Run = %v, want nil on cancellation", err)
			}
			// Checked at once, with no settling: Run must have joined them.
			src.mu.Lock()
			inflight, watching := src.inflight, src.watching
			src.mu.Unlock()
			if inflight != 0 || watching != 0 {
				t.Fatalf("after Run returned: %d fetches and %d watchers still running", inflight, watching)
			}
			// A goroutine that has signalled its WaitGroup may take a moment
			// to exit, so the count is allowed to settle.
			deadline := time.Now().Add(5 * time.Second)
			for {
				n := runtime.NumGoroutine()
				if n <= before {
					break
				}
				if time.Now().After(deadline) {
					buf := make([]byte, 1<<20)
					t.Fatalf("%d goroutines before Run, %d after it returned:\n%s", before, n, buf[:runtime.Stack(buf, true)])
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
}

// TestRecheckWithoutEvents: a file source whose watcher never wakes the
// engine (every event missed) is still re-read every Recheck of the source
// (sources.file.recheck: sources.Rechecker);
// an unchanged file yields no change, a changed one is written and reported.
// A Vault secret on the same hour-long refresh is not re-read meanwhile.
func TestRecheckWithoutEvents(t *testing.T) {
	f := newFixture(t,
		config.Secret{Name: "A", Ref: testenv.Ref(t, "file:///src/a"), Required: true},
		config.Secret{Name: "V", Ref: testenv.Ref(t, "vault://secret/v#v"), Required: true},
	)
	f.cfg.Refresh = time.Hour
	var mu sync.Mutex
	val := "1"
	fetched := make(chan struct{}, 100)
	files := &fakeWatcher{wake: make(chan func(sources.Ref), 1), recheck: 50 * time.Millisecond} // its wake is never called
	files.fetch = func(ref sources.Ref) (sources.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		fetched <- struct{}{}
		return sources.Object{Value: secret.FromString(val), Version: val}, nil
	}
	vault := &fakeSource{fetch: func(ref sources.Ref) (sources.Object, error) {
		return kv(map[string]string{"v": "x"}), nil
	}}
	e := f.engine(t, map[string]sources.Source{sources.File: files, sources.Vault: vault})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	<-files.wake // the watcher runs; it just never reports anything
	<-e.Ready()
	for range 2 { // one initial change per job
		if c := <-f.changes; !c.Initial {
			t.Fatalf("first change not initial: %+v", c)
		}
	}
	awaitFetch := func() {
		t.Helper()
		select {
		case <-fetched:
		case <-time.After(10 * time.Second):
			t.Fatal("the file was not re-checked without an event")
		}
	}
	// The first sync, then two re-checks of unchanged content; the third
	// fetch starts only after the second re-check finished.
	for range 4 {
		awaitFetch()
	}
	select {
	case c := <-f.changes:
		t.Fatalf("an unchanged file reported a change: %+v", c)
	default:
	}

	mu.Lock()
	val = "2"
	mu.Unlock()
	var c Change
	select {
	case c = <-f.changes:
	case <-time.After(10 * time.Second):
		t.Fatal("a changed file was not picked up by the re-check")
	}
	if c.Initial || !slices.Equal(c.Secrets, []string{"A"}) {
		t.Fatalf("change = %+v, want secret A, not initial", c)
	}
	if got := f.read(t, "a"); got != "2" {
		t.Fatalf("a = %q after the re-check", got)
	}
	if n := vault.count("vault://secret/v"); n != 1 {
		t.Errorf("vault secret fetched %d times, want 1: the file recheck must not shorten other sources' refresh", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
