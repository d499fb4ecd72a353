package breaker

import (
	"math"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// lowest and highest make every random draw the smallest or the largest.
func lowest(int64) int64    { return 0 }
func highest(n int64) int64 { return n - 1 }

// changes records OnChange calls.
type changes struct {
	mu  sync.Mutex
	all []Change
}

func (c *changes) add(ch Change) {
	c.mu.Lock()
	c.all = append(c.all, ch)
	c.mu.Unlock()
}

func (c *changes) list() []Change {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Change(nil), c.all...)
}

func newBreaker(t *testing.T, cfg Config) (*Breaker, *changes) {
	t.Helper()
	c := &changes{}
	cfg.OnChange = c.add
	return New(cfg), c
}

// fail records n failures of requests allowed at now.
func fail(b *Breaker, now time.Time, n int, retryAfter time.Duration) {
	for range n {
		tk, _ := b.Allow(now)
		b.Record(now, tk, Failure, retryAfter)
	}
}

// probe waits out the breaker and takes the probe ticket.
func probe(t *testing.T, b *Breaker, now time.Time) (Ticket, time.Time) {
	t.Helper()
	for range 3 {
		tk, wait := b.Allow(now)
		if wait == 0 {
			if !tk.Probe() {
				t.Fatalf("allowed at %v without a probe ticket", now.Sub(t0))
			}
			return tk, now
		}
		now = now.Add(wait)
	}
	t.Fatal("no probe after three waits")
	return Ticket{}, now
}

func TestThreshold(t *testing.T) {
	t.Parallel()
	S, F, N := Success, Failure, Neutral
	tests := []struct {
		name      string
		threshold int
		results   []Result
		want      State
	}{
		{"three failures open it", 0, []Result{F, F, F}, Open},
		{"two do not", 0, []Result{F, F}, Closed},
		{"a success breaks the streak", 0, []Result{F, F, S, F, F}, Closed},
		{"neutral answers neither open nor break it", 0, []Result{F, N, F, N, N, F}, Open},
		{"neutral answers alone", 0, []Result{N, N, N, N, N, N}, Closed},
		{"threshold 1", 1, []Result{S, F}, Open},
		{"threshold 5", 5, []Result{F, F, F, F}, Closed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, ch := newBreaker(t, Config{Threshold: tt.threshold})
			now := t0
			for _, r := range tt.results {
				tk, wait := b.Allow(now)
				if wait != 0 {
					t.Fatalf("held back while closed (%v)", wait)
				}
				b.Record(now, tk, r, 0)
				now = now.Add(time.Millisecond)
			}
			if got := b.State(); got != tt.want {
				t.Fatalf("state %v, want %v", got, tt.want)
			}
			opens := 0
			for _, c := range ch.list() {
				if c.From == Closed && c.To == Open {
					opens++
				}
			}
			if want := map[State]int{Open: 1, Closed: 0}[tt.want]; opens != want {
				t.Errorf("%d opening changes, want %d: %+v", opens, want, ch.list())
			}
		})
	}
}

// TestSingleProbe: while open, everyone waits; at the probe time exactly one
// caller goes and the others wait for its answer.
func TestSingleProbe(t *testing.T) {
	t.Parallel()
	b, ch := newBreaker(t, Config{Rand: highest, Spread: 4 * time.Second})
	fail(b, t0, 3, 0)
	first := ch.list()[0]
	if first.From != Closed || first.To != Open || first.Opens != 1 || !first.Since.Equal(t0) {
		t.Fatalf("opening change %+v", first)
	}
	if want := t0.Add(time.Second); !first.Next.Equal(want) {
		t.Fatalf("next probe at %v, want %v", first.Next, want)
	}
	// Before the probe time: wait for it, plus a share of the spread.
	tk, wait := b.Allow(t0.Add(200 * time.Millisecond))
	if tk.Probe() || wait != 800*time.Millisecond+4*time.Second {
		t.Fatalf("early caller: probe %v, wait %v", tk.Probe(), wait)
	}
	at := t0.Add(time.Second)
	tk, wait = b.Allow(at)
	if !tk.Probe() || wait != 0 {
		t.Fatalf("first caller at the probe time: probe %v, wait %v", tk.Probe(), wait)
	}
	if b.State() != HalfOpen {
		t.Fatalf("state %v during the probe", b.State())
	}
	for i := range 5 {
		other, w := b.Allow(at.Add(time.Duration(i) * time.Millisecond))
		if other.Probe() || w == 0 {
			t.Fatalf("second caller let through during the probe (wait %v)", w)
		}
		if w != 4*time.Second {
			t.Errorf("caller waiting for the probe: wait %v, want the spread", w)
		}
	}
}

// TestProbeBackoffGrows: each failed probe doubles the ceiling of the next
// wait, up to Cap, and never stops at a refresh interval.
func TestProbeBackoffGrows(t *testing.T) {
	t.Parallel()
	b, ch := newBreaker(t, Config{Threshold: 1, Rand: highest, Cap: 5 * time.Minute})
	now := t0
	fail(b, now, 1, 0)
	want := []time.Duration{1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300}
	for i, w := range want {
		c := ch.list()[len(ch.list())-1]
		if c.To != Open || c.Opens != i+1 {
			t.Fatalf("step %d: change %+v", i, c)
		}
		if got := c.Next.Sub(now); got != w*time.Second {
			t.Fatalf("step %d: next probe in %v, want %v", i, got, w*time.Second)
		}
		var tk Ticket
		tk, now = probe(t, b, now)
		b.Record(now, tk, Failure, 0)
	}
	// With the real source every wait stays under its ceiling.
	b = New(Config{Threshold: 1, Cap: 10 * time.Second})
	now = t0
	fail(b, now, 1, 0)
	for i := range 50 {
		tk, at := probe(t, b, now)
		ceil := min(time.Second<<min(i+1, 10), 10*time.Second)
		b.Record(at, tk, Failure, 0)
		_, wait := b.Allow(at)
		if wait > ceil+DefaultSpread || wait < 100*time.Millisecond {
			t.Fatalf("probe %d: wait %v outside [100ms, %v]", i+2, wait, ceil+DefaultSpread)
		}
		now = at
	}
}

// TestRetryAfterFloor: a server's Retry-After puts a floor under the next
// probe, the jittered backoff comes on top, and Cap bounds the floor.
func TestRetryAfterFloor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		retryAfter []time.Duration // one per failure
		want       time.Duration   // next probe after t0
	}{
		{"none", []time.Duration{0, 0, 0}, 100 * time.Millisecond},
		{"on the opening failure", []time.Duration{0, 0, 30 * time.Second}, 30*time.Second + 100*time.Millisecond},
		{"from an earlier failure", []time.Duration{45 * time.Second, 0, 0}, 45*time.Second + 100*time.Millisecond},
		{"the largest wins", []time.Duration{45 * time.Second, 10 * time.Second, 0}, 45*time.Second + 100*time.Millisecond},
		{"capped", []time.Duration{0, 0, 24 * time.Hour}, 2*time.Minute + 100*time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, ch := newBreaker(t, Config{Rand: lowest, Cap: 2 * time.Minute})
			for _, ra := range tt.retryAfter {
				fail(b, t0, 1, ra)
			}
			if got := ch.list()[0].Next.Sub(t0); got != tt.want {
				t.Fatalf("next probe in %v, want %v", got, tt.want)
			}
		})
	}

	// A failed probe with Retry-After: the floor counts from its answer.
	b, ch := newBreaker(t, Config{Rand: lowest})
	fail(b, t0, 3, 0)
	tk, at := probe(t, b, t0)
	b.Record(at, tk, Failure, time.Minute)
	if got, want := ch.list()[len(ch.list())-1].Next, at.Add(time.Minute+100*time.Millisecond); !got.Equal(want) {
		t.Fatalf("next probe at %v, want %v", got.Sub(t0), want.Sub(t0))
	}
	// A late answer still raises the floor, though it cannot change the
	// state.
	b, ch = newBreaker(t, Config{Rand: lowest})
	late, _ := b.Allow(t0)
	fail(b, t0, 3, 0)
	b.Record(t0, late, Failure, 20*time.Second)
	tk, at = probe(t, b, t0)
	if at.Sub(t0) < 100*time.Millisecond || at.Sub(t0) > time.Second {
		t.Fatalf("probe at %v: the first wait was already set", at.Sub(t0))
	}
	b.Record(at, tk, Failure, 0)
	if got := ch.list()[len(ch.list())-1].Next; got.Before(t0.Add(20 * time.Second)) {
		t.Fatalf("next probe at %v, before the late Retry-After", got.Sub(t0))
	}
}

// seq is a Rand that walks evenly through [0, n) over count draws.
func seq(count int64) func(int64) int64 {
	var i atomic.Int64
	return func(n int64) int64 {
		k := (i.Add(1) - 1) % count
		return int64(float64(n) * float64(k) / float64(count))
	}
}

// TestCloseSpreads: callers held back while open come back spread over the
// window after the probe time; the first one probes, its success closes the
// breaker, and the rest go through as they come.
func TestCloseSpreads(t *testing.T) {
	t.Parallel()
	const jobs = 50
	spread := 5 * time.Second
	b, ch := newBreaker(t, Config{Rand: seq(jobs), Spread: spread})
	fail(b, t0, 3, 0)
	next := ch.list()[0].Next
	held := t0.Add(10 * time.Millisecond)
	back := make([]time.Time, jobs)
	for i := range back {
		_, wait := b.Allow(held)
		if wait == 0 {
			t.Fatal("let through while open")
		}
		back[i] = held.Add(wait)
	}
	first, last := back[0], back[0]
	for _, r := range back {
		if r.Before(next) || r.After(next.Add(spread)) {
			t.Fatalf("comes back at +%v, outside [next, next+spread]", r.Sub(next))
		}
		first, last = minTime(first, r), maxTime(last, r)
	}
	if last.Sub(first) < spread*8/10 {
		t.Fatalf("returns span %v, want most of %v", last.Sub(first), spread)
	}

	// In order of return: the first probes and succeeds, the others go.
	sortTimes(back)
	tk, wait := b.Allow(back[0])
	if !tk.Probe() || wait != 0 {
		t.Fatalf("first returner: probe %v, wait %v", tk.Probe(), wait)
	}
	b.Record(back[0].Add(20*time.Millisecond), tk, Success, 0)
	c := ch.list()[len(ch.list())-1]
	if c.From != HalfOpen || c.To != Closed || !c.Since.Equal(t0) || c.Opens != 0 {
		t.Fatalf("closing change %+v", c)
	}
	for _, r := range back[1:] {
		if tk, wait := b.Allow(r); wait != 0 || tk.Probe() {
			t.Fatalf("after closing: probe %v, wait %v", tk.Probe(), wait)
		}
	}
	// Closed again: a new streak is needed to open.
	fail(b, back[jobs-1], 2, 0)
	if b.State() != Closed {
		t.Fatalf("state %v after two failures", b.State())
	}
}

// TestStaleResultsIgnored: requests in flight when the breaker opened do
// not decide how the outage ends.
func TestStaleResultsIgnored(t *testing.T) {
	t.Parallel()
	b, ch := newBreaker(t, Config{Rand: highest})
	inflight := make([]Ticket, 3)
	for i := range inflight {
		inflight[i], _ = b.Allow(t0)
	}
	fail(b, t0, 3, 0)
	n := len(ch.list())
	b.Record(t0, inflight[0], Success, 0)
	b.Record(t0, inflight[1], Failure, 0)
	b.Record(t0, Ticket{}, Success, 0)
	if b.State() != Open || len(ch.list()) != n {
		t.Fatalf("stale results changed the breaker: %v, %+v", b.State(), ch.list()[n:])
	}
	// While the probe is in flight, only its answer counts.
	tk, at := probe(t, b, t0)
	b.Record(at, inflight[1], Failure, 0)
	b.Record(at, inflight[2], Success, 0)
	if b.State() != HalfOpen {
		t.Fatalf("a stale answer during the probe: state %v", b.State())
	}
	// A probe answers once.
	b.Record(at, tk, Failure, 0)
	b.Record(at, tk, Success, 0)
	if b.State() != Open {
		t.Fatalf("a probe's second answer: state %v", b.State())
	}
	// After an outage, a streak starts afresh: the failures of requests
	// sent before it do not count.
	tk, at = probe(t, b, at)
	old, _ := b.Allow(at) // held back: a zero ticket
	b.Record(at, tk, Success, 0)
	fail(b, at, 2, 0)
	b.Record(at, inflight[0], Failure, 0)
	b.Record(at, old, Failure, 0)
	if b.State() != Closed {
		t.Fatalf("stale failures reopened it")
	}
}

// TestNeutralProbe: a probe that learnt nothing lets the next caller probe
// at once, without a longer wait.
func TestNeutralProbe(t *testing.T) {
	t.Parallel()
	b, ch := newBreaker(t, Config{Rand: highest})
	fail(b, t0, 3, 0)
	tk, at := probe(t, b, t0)
	b.Record(at, tk, Neutral, 0)
	c := ch.list()[len(ch.list())-1]
	if c.To != Open || c.Opens != 1 || !c.Next.Equal(at) {
		t.Fatalf("after a neutral probe: %+v", c)
	}
	tk, wait := b.Allow(at)
	if !tk.Probe() || wait != 0 {
		t.Fatalf("next caller: probe %v, wait %v", tk.Probe(), wait)
	}
	b.Record(at, tk, Success, 0)
	if b.State() != Closed {
		t.Fatalf("state %v", b.State())
	}
}

// TestProbeTimeout: a probe that never reports counts as failed, and its
// late answer is ignored.
func TestProbeTimeout(t *testing.T) {
	t.Parallel()
	b, ch := newBreaker(t, Config{Rand: highest, ProbeTimeout: 30 * time.Second})
	fail(b, t0, 3, 0)
	lost, at := probe(t, b, t0)
	if _, wait := b.Allow(at.Add(29 * time.Second)); wait == 0 {
		t.Fatal("a second probe before the timeout")
	}
	timeout := at.Add(30 * time.Second)
	tk, wait := b.Allow(timeout)
	if tk.Probe() || wait != 2*time.Second+DefaultSpread {
		t.Fatalf("at the timeout: probe %v, wait %v; want the second backoff", tk.Probe(), wait)
	}
	c := ch.list()[len(ch.list())-1]
	if c.From != HalfOpen || c.To != Open || c.Opens != 2 {
		t.Fatalf("timeout change %+v", c)
	}
	b.Record(timeout, lost, Success, 0)
	if b.State() != Open {
		t.Fatalf("the lost probe's late answer closed the breaker")
	}
	// Nor does it count while the next probe is out.
	next, at := probe(t, b, timeout)
	b.Record(at, lost, Failure, 0)
	if b.State() != HalfOpen {
		t.Fatalf("the lost probe's late answer decided the next probe: %v", b.State())
	}
	b.Record(at, next, Success, 0)
	if b.State() != Closed {
		t.Fatalf("state %v", b.State())
	}
}

// TestConcurrent drives one breaker from many goroutines (run with -race):
// every state change follows the previous one, and every probe ticket
// belongs to exactly one entry into half-open.
func TestConcurrent(t *testing.T) {
	t.Parallel()
	b, ch := newBreaker(t, Config{Threshold: 2, Base: time.Millisecond, Cap: 8 * time.Millisecond, Spread: time.Millisecond})
	var clock atomic.Int64 // nanoseconds after t0
	now := func() time.Time { return t0.Add(time.Duration(clock.Add(int64(50 * time.Microsecond)))) }
	var probes atomic.Int64
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 2000 {
				tk, wait := b.Allow(now())
				if wait > 0 {
					continue
				}
				if tk.Probe() {
					probes.Add(1)
				}
				r := Result((g + i) % 3)
				if g%4 == 0 {
					r = Failure
				}
				b.Record(now(), tk, r, time.Duration(i%3)*time.Millisecond)
			}
		})
	}
	wg.Wait()
	all := ch.list()
	if len(all) < 10 {
		t.Fatalf("only %d changes: the test did not exercise the breaker", len(all))
	}
	prev, halfOpens := Closed, int64(0)
	for i, c := range all {
		if c.From != prev || c.From == c.To {
			t.Fatalf("change %d: %v -> %v after %v", i, c.From, c.To, prev)
		}
		if c.To == HalfOpen {
			halfOpens++
		}
		prev = c.To
	}
	if prev != b.State() {
		t.Fatalf("last change to %v, state %v", prev, b.State())
	}
	if probes.Load() != halfOpens {
		t.Fatalf("%d probe tickets for %d entries into half-open", probes.Load(), halfOpens)
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 4, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"120", 2 * time.Minute, true},
		{" 5 ", 5 * time.Second, true},
		{"0", 0, true},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(time.Hour).Format(time.RFC850), time.Hour, true},
		{now.Add(time.Minute).Format(time.ANSIC), time.Minute, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"99999999999999999999999", math.MaxInt64, true},
		{"9223372037", math.MaxInt64, true},
		{"", 0, false},
		{"-1", 0, false},
		{"+5", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
		{"Tue, 32 Foo 2025 25:00:00 GMT", 0, false},
	}
	for _, tt := range tests {
		got, ok := RetryAfter(tt.in, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("RetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestStateString(t *testing.T) {
	t.Parallel()
	for s, want := range map[State]string{Closed: "closed", Open: "open", HalfOpen: "half-open", State(7): "unknown"} {
		if got := s.String(); got != want {
			t.Errorf("%d: %q, want %q", int(s), got, want)
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func sortTimes(ts []time.Time) {
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
}
