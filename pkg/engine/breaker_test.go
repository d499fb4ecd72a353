package engine

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/phase-sidecar/phase-sidecar/pkg/config"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

// TestBreakerHoldsASourceBack: consecutive source-level failures open the
// source's breaker; then its jobs wait without requests, one probe goes out
// per backoff period, the files stay, and the first success closes it.
// Per-secret answers (not found) never open it.
func TestBreakerHoldsASourceBack(t *testing.T) {
	var secrets []config.Secret
	for i := range 10 {
		secrets = append(secrets, config.Secret{Name: fmt.Sprintf("S%d", i), Ref: testenv.Ref(t, fmt.Sprintf("vault://secret/s%d#v", i)), Required: true})
	}
	f := newFixture(t, secrets...)
	f.cfg.Concurrency = 1
	f.cfg.Refresh = 10 * time.Second
	f.cfg.Breaker = config.Breaker{Threshold: 3, Cap: time.Minute}
	mode := "ok"
	src := &fakeSource{fetch: func(ref sources.Ref) (sources.Object, error) {
		switch mode {
		case "down":
			return sources.Object{}, fmt.Errorf("vault: read: status 503: %w", sources.ErrUnavailable)
		case "missing":
			return sources.Object{}, fmt.Errorf("vault: read: %w", sources.ErrNotFound)
		}
		return kv(map[string]string{"v": "x"}), nil
	}}
	e := f.engine(t, map[string]sources.Source{sources.Vault: src})
	clock := time.Now()
	e.now = func() time.Time { return clock }
	e.exportSecrets()
	ctx := context.Background()
	total := func() int {
		n := 0
		for i := range 10 {
			n += src.count(testenv.Ref(t, fmt.Sprintf("vault://secret/s%d#v", i)).Object())
		}
		return n
	}
	e.runJobs(ctx, e.jobs, true)
	if n := total(); n != 10 {
		t.Fatalf("first sync made %d fetches, want 10", n)
	}

	// Not found everywhere: per-secret, the breaker stays closed.
	mode = "missing"
	e.runJobs(ctx, e.jobs, true)
	if st := e.breakers[sources.Vault].State(); st != 0 {
		t.Fatalf("breaker state %v after per-secret errors, want closed", st)
	}

	// Down: three failures open it; the other seven jobs make no request.
	mode = "down"
	before := total()
	e.runJobs(ctx, e.jobs, true)
	if n := total() - before; n != 3 {
		t.Errorf("with the source down one round made %d requests, want 3 (the threshold)", n)
	}
	if v := testutil.ToFloat64(f.m.SourceBreakerState.WithLabelValues(sources.Vault)); v != 1 {
		t.Errorf("breaker gauge = %v, want 1 (open)", v)
	}
	for i := range 10 {
		if got := f.read(t, fmt.Sprintf("s%d", i)); got != "x" {
			t.Errorf("s%d = %q: the last good file must stay", i, got)
		}
	}

	// Over a long outage, at most one request per probe slot: simulate
	// the scheduler by running every due job at each step of 100 ms.
	before = total()
	start := clock
	for clock.Before(start.Add(10 * time.Minute)) {
		clock = clock.Add(100 * time.Millisecond)
		runDue(ctx, e, clock)
	}
	probes := total() - before
	// 1 s doubling to the 1 min cap, full jitter: about a dozen probes in
	// 10 minutes; the 10 jobs alone would have made ~600 requests at their
	// 10 s interval.
	if probes < 3 || probes > 60 {
		t.Errorf("%d requests during a 10 min outage, want a handful of probes (healthy: ~600)", probes)
	}

	// Back: the next probe closes the breaker and every job refreshes
	// within the cap plus the spread window.
	mode = "ok"
	end := clock
	for clock.Before(end.Add(2*time.Minute)) && len(e.Missing()) == 0 {
		clock = clock.Add(100 * time.Millisecond)
		runDue(ctx, e, clock)
		fresh := 0
		for _, st := range e.Status() {
			if st.LastError == "" {
				fresh++
			}
		}
		if fresh == 10 {
			break
		}
	}
	if st := e.breakers[sources.Vault].State(); st != 0 {
		t.Errorf("breaker state %v after recovery, want closed", st)
	}
	for _, st := range e.Status() {
		if st.LastError != "" {
			t.Errorf("%s still failing %v after recovery: %s", st.Name, clock.Sub(end), st.LastError)
		}
	}
}

// runDue runs every job due at now, as the scheduler would.
func runDue(ctx context.Context, e *Engine, now time.Time) {
	var due []*job
	e.mu.Lock()
	for _, j := range e.jobs {
		if !j.due.After(now) {
			due = append(due, j)
		}
	}
	e.mu.Unlock()
	if len(due) > 0 {
		e.runJobs(ctx, due, true)
	}
}

// TestBreakerInOnce: in once mode a source that is down costs the
// threshold's requests, not one per secret; the rest fail at once.
func TestBreakerInOnce(t *testing.T) {
	var secrets []config.Secret
	for i := range 10 {
		secrets = append(secrets, config.Secret{Name: fmt.Sprintf("S%d", i), Ref: testenv.Ref(t, fmt.Sprintf("vault://secret/s%d#v", i)), Required: true})
	}
	f := newFixture(t, secrets...)
	f.cfg.Concurrency = 1
	src := &fakeSource{fetch: func(ref sources.Ref) (sources.Object, error) {
		return sources.Object{}, fmt.Errorf("vault: dial: %w", sources.ErrUnavailable)
	}}
	e := f.engine(t, map[string]sources.Source{sources.Vault: src})
	err := e.Once(context.Background())
	if err == nil {
		t.Fatal("once succeeded with the source down")
	}
	n := 0
	for i := range 10 {
		n += src.count(testenv.Ref(t, fmt.Sprintf("vault://secret/s%d#v", i)).Object())
	}
	if n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
}

// TestBreakerPace: a failing source's first backoff period is twice the
// mean spacing of its healthy requests, from 1 s up to the breaker's cap,
// so a small source's retries and probes never outnumber its healthy reads.
func TestBreakerPace(t *testing.T) {
	for _, c := range []struct {
		name    string
		n       int
		refresh time.Duration
		want    time.Duration
	}{
		{"10 secrets every 10s", 10, 10 * time.Second, 2 * time.Second},
		{"5 secrets every 10s", 5, 10 * time.Second, 4 * time.Second},
		{"1 secret every 10s", 1, 10 * time.Second, 20 * time.Second},
		{"100 secrets every 10s: not below 1 s", 100, 10 * time.Second, time.Second},
		{"1 secret every hour: the cap", 1, time.Hour, 5 * time.Minute},
	} {
		t.Run(c.name, func(t *testing.T) {
			var secrets []config.Secret
			for i := range c.n {
				secrets = append(secrets, config.Secret{Name: fmt.Sprintf("S%d", i), Ref: testenv.Ref(t, fmt.Sprintf("vault://secret/s%d#v", i))})
			}
			secrets = append(secrets, config.Secret{Name: "F", Ref: testenv.Ref(t, "file:///src/f")})
			f := newFixture(t, secrets...)
			f.cfg.Refresh = c.refresh
			f.cfg.Breaker = config.Breaker{Threshold: 3, Cap: 5 * time.Minute}
			ok := &fakeSource{fetch: func(sources.Ref) (sources.Object, error) { return kv(map[string]string{"v": "x"}), nil }}
			e := f.engine(t, map[string]sources.Source{sources.Vault: ok, sources.File: ok})
			if got := e.pace[sources.Vault]; got != c.want {
				t.Errorf("pace = %v, want %v", got, c.want)
			}
			if _, paced := e.pace[sources.File]; paced {
				t.Error("the file source has a pace: files cost nobody anything")
			}
			for _, j := range e.jobs {
				if j.objects[0].ref.Kind == sources.Vault {
					if got := e.retryPolicy(j, true).Base; got != c.want {
						t.Errorf("retry base after a source-level failure = %v, want %v", got, c.want)
					}
				}
			}
		})
	}
}
