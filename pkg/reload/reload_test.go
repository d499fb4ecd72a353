package reload

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/phase-sidecar/phase-sidecar/pkg/metrics"
)

// fakeNotifier is a Notifier made of a function field.
type fakeNotifier struct {
	notify func(ctx context.Context, b Batch) error
}

func (f *fakeNotifier) Notify(ctx context.Context, b Batch) error { return f.notify(ctx, b) }

// recorder returns a notifier that reports every batch on a channel and
// answers with the next result from results (nil when exhausted).
func recorder(results ...error) (*fakeNotifier, chan []string) {
	batches := make(chan []string, 100)
	var n atomic.Int32
	return &fakeNotifier{notify: func(_ context.Context, b Batch) error {
		batches <- b.Secrets
		i := int(n.Add(1)) - 1
		if i < len(results) {
			return results[i]
		}
		return nil
	}}, batches
}

func newMetrics() *metrics.Metrics {
	return metrics.New(prometheus.NewRegistry(), "test", "test")
}

func counterValue(t testing.TB, c prometheus.Collector) float64 {
	t.Helper()
	return testutil.ToFloat64(c)
}

// watch makes r report its status after every attempt.
func watch(r *Reloader) <-chan Status {
	ch := make(chan Status, 100)
	r.recorded = func(s Status) { ch <- s }
	return ch
}

func nextStatus(t testing.TB, ch <-chan Status) Status {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(time.Minute):
		t.Fatal("no notification attempt within a minute")
	}
	return Status{}
}

func nextBatch(t testing.TB, ch <-chan []string) []string {
	t.Helper()
	select {
	case b := <-ch:
		return b
	case <-time.After(time.Minute):
		t.Fatal("no notification within a minute")
	}
	return nil
}

func noBatch(t testing.TB, ch <-chan []string) {
	t.Helper()
	select {
	case b := <-ch:
		t.Fatalf("unexpected notification %v", b)
	default:
	}
}

func newReloader(t testing.TB, cfg Config, o Options) *Reloader {
	t.Helper()
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	r, err := New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCoalesce(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		exclude []string
		changes []struct {
			names   []string
			initial bool
		}
		want []string // the one batch, nil for none
	}{
		{
			name: "changes within the window become one batch",
			cfg:  Config{Coalesce: 200 * time.Millisecond},
			changes: []struct {
				names   []string
				initial bool
			}{{[]string{"B"}, false}, {[]string{"A", "C"}, false}, {[]string{"B"}, false}},
			want: []string{"A", "B", "C"},
		},
		{
			name: "the initial sync does not notify",
			cfg:  Config{Coalesce: time.Millisecond},
			changes: []struct {
				names   []string
				initial bool
			}{{[]string{"A", "B"}, true}, {[]string{"C"}, false}},
			want: []string{"C"},
		},
		{
			name:    "excluded secrets do not notify",
			cfg:     Config{Coalesce: time.Millisecond},
			exclude: []string{"A"},
			changes: []struct {
				names   []string
				initial bool
			}{{[]string{"A"}, false}, {[]string{"A", "B"}, false}},
			want: []string{"B"},
		},
		{
			// A window of an hour would never close: only the cap fires.
			name: "max_wait caps the window",
			cfg:  Config{Coalesce: time.Hour, MaxWait: 50 * time.Millisecond},
			changes: []struct {
				names   []string
				initial bool
			}{{[]string{"A"}, false}},
			want: []string{"A"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, batches := recorder()
			cfg := tt.cfg
			cfg.Exclude = tt.exclude
			r := newReloader(t, cfg, Options{Notifier: n, Method: "exec"})
			for _, c := range tt.changes {
				r.Changed(c.names, c.initial)
			}
			runReloader(t, r)
			if got := nextBatch(t, batches); !slices.Equal(got, tt.want) {
				t.Fatalf("batch %v, want %v", got, tt.want)
			}
			noBatch(t, batches)
		})
	}
}

func TestRetryUntilSuccess(t *testing.T) {
	boom := errors.New("exec: \"reload-app\": exited with status 1")
	n, batches := recorder(boom, boom)
	m := newMetrics()
	r := newReloader(t, Config{Coalesce: time.Millisecond}, Options{
		Notifier: n, Method: "exec", Metrics: m, RetryMin: time.Millisecond, RetryMax: 4 * time.Millisecond,
	})
	results := watch(r)
	runReloader(t, r)
	r.Changed([]string{"A"}, false)

	for i, want := range []struct {
		result   string
		failures int
	}{{"error", 1}, {"error", 2}, {"success", 0}} {
		if b := nextBatch(t, batches); !slices.Equal(b, []string{"A"}) {
			t.Fatalf("attempt %d: batch %v", i+1, b)
		}
		st := nextStatus(t, results)
		if st.Result != want.result || st.Failures != want.failures {
			t.Fatalf("attempt %d: status %+v, want %s with %d failures", i+1, st, want.result, want.failures)
		}
		if want.result == "error" && (st.Error != boom.Error() || !slices.Equal(st.Pending, []string{"A"})) {
			t.Fatalf("attempt %d: status %+v, want the error and A pending", i+1, st)
		}
	}
	st := r.Status()
	if st.Error != "" || len(st.Pending) != 0 || st.LastSuccess.IsZero() {
		t.Fatalf("final status %+v", st)
	}
	for _, c := range []struct {
		result string
		want   float64
	}{{"error", 2}, {"success", 1}} {
		if got := counterValue(t, m.Reloads.WithLabelValues("exec", c.result)); got != c.want {
			t.Errorf("reloads_total{exec,%s} = %v, want %v", c.result, got, c.want)
		}
	}
	if got := counterValue(t, m.ReloadPendingChange); got != 0 {
		t.Errorf("pending = %v, want 0", got)
	}
	if got := counterValue(t, m.LastReloadSuccess); got < float64(st.LastSuccess.Unix()) {
		t.Errorf("last success = %v, want ≥ %v", got, st.LastSuccess.Unix())
	}
	if got := testutil.CollectAndCount(m.ReloadDuration); got != 1 {
		t.Errorf("reload_duration_seconds series = %d", got)
	}
}

// TestNewerBatchSupersedesFailing: a change during the backoff of a failed
// notification replaces the retry with one merged batch.
func TestNewerBatchSupersedesFailing(t *testing.T) {
	n, batches := recorder(errors.New("down"))
	m := newMetrics()
	r := newReloader(t, Config{Coalesce: time.Millisecond}, Options{
		Notifier: n, Method: "http", Metrics: m, RetryMin: time.Hour,
	})
	results := watch(r)
	runReloader(t, r)
	r.Changed([]string{"A"}, false)
	if b := nextBatch(t, batches); !slices.Equal(b, []string{"A"}) {
		t.Fatalf("batch %v", b)
	}
	if st := nextStatus(t, results); st.Result != "error" {
		t.Fatalf("status %+v", st)
	}
	if got := counterValue(t, m.ReloadPendingChange); got != 1 {
		t.Errorf("pending = %v, want 1", got)
	}
	// The retry is an hour away; the newer change must not wait for it.
	r.Changed([]string{"B"}, false)
	if b := nextBatch(t, batches); !slices.Equal(b, []string{"A", "B"}) {
		t.Fatalf("merged batch %v, want [A B]", b)
	}
	if st := nextStatus(t, results); st.Result != "success" || len(st.Pending) != 0 {
		t.Fatalf("status %+v", st)
	}
}

// TestNeverOverlapping: while a notification runs, new changes wait for it.
func TestNeverOverlapping(t *testing.T) {
	var active, maxActive atomic.Int32
	release := make(chan struct{})
	started := make(chan []string, 10)
	n := &fakeNotifier{notify: func(ctx context.Context, b Batch) error {
		cur := active.Add(1)
		defer active.Add(-1)
		if cur > maxActive.Load() {
			maxActive.Store(cur)
		}
		started <- b.Secrets
		<-release
		return nil
	}}
	r := newReloader(t, Config{}, Options{Notifier: n, Method: "exec"})
	runReloader(t, r)
	r.Changed([]string{"A"}, false)
	if b := nextBatch(t, started); !slices.Equal(b, []string{"A"}) {
		t.Fatalf("batch %v", b)
	}
	for _, name := range []string{"B", "C", "D"} {
		r.Changed([]string{name}, false)
	}
	if st := r.Status(); !slices.Equal(st.Pending, []string{"A", "B", "C", "D"}) {
		t.Fatalf("pending %v", st.Pending)
	}
	noBatch(t, started)
	release <- struct{}{}
	if b := nextBatch(t, started); !slices.Equal(b, []string{"B", "C", "D"}) {
		t.Fatalf("batch %v", b)
	}
	close(release)
	if maxActive.Load() != 1 {
		t.Fatalf("%d notifications ran at once", maxActive.Load())
	}
}

// TestRunStopsOnCancel: Run returns nil when cancelled in the middle of a
// notification and in the middle of a backoff.
func TestRunStopsOnCancel(t *testing.T) {
	for _, phase := range []string{"notify", "backoff"} {
		t.Run(phase, func(t *testing.T) {
			entered := make(chan struct{}, 1)
			n := &fakeNotifier{notify: func(ctx context.Context, b Batch) error {
				entered <- struct{}{}
				if phase == "notify" {
					<-ctx.Done()
					return ctx.Err()
				}
				return errors.New("down")
			}}
			r := newReloader(t, Config{}, Options{Notifier: n, Method: "exec", RetryMin: time.Hour})
			results := watch(r)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			r.Changed([]string{"A"}, false)
			<-entered
			if phase == "backoff" {
				nextStatus(t, results)
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Run = %v", err)
				}
			case <-time.After(time.Minute):
				t.Fatal("Run did not return")
			}
		})
	}
}

func TestNoReloadConfigured(t *testing.T) {
	r := newReloader(t, Config{Coalesce: time.Second}, Options{})
	if r.Method() != MethodNone {
		t.Fatalf("method %q", r.Method())
	}
	r.Changed([]string{"A"}, false)
	if err := r.Check(); err != nil {
		t.Fatal(err)
	}
	if st := r.Status(); st.Method != "none" || len(st.Pending) != 0 {
		t.Fatalf("status %+v", st)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestNewErrors: New refuses only what it cannot build (pkg/config refuses
// the rest, with positions, before New is called).
func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no command", Config{Exec: &ExecConfig{}}, "must name a program"},
		{"signal without a target", Config{Signal: &SignalConfig{}}, "exactly one of pid_file and process"},
		{"unknown signal", Config{Signal: &SignalConfig{Name: "SIGKILL", PIDFile: "/run/app.pid"}}, "not one of SIGHUP, SIGTERM, SIGINT, SIGUSR1, SIGUSR2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

func TestStatusJSON(t *testing.T) {
	r := newReloader(t, Config{Coalesce: time.Second, HTTP: &HTTPConfig{URL: "https://admin:hunter2@app:8000/reload?token=t0ps3cret"}}, Options{})
	r.Changed([]string{"SECRET_KEY"}, false)
	b, err := json.Marshal(r.Status())
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{`"method":"http"`, `"target":"https://app:8000/reload?token=REDACTED"`, `"pending":["SECRET_KEY"]`, `"coalesce":"1s"`} {
		if !strings.Contains(got, want) {
			t.Errorf("%s lacks %s", got, want)
		}
	}
	for _, leak := range []string{"hunter2", "t0ps3cret", "admin"} {
		if strings.Contains(got, leak) {
			t.Errorf("%s leaks %q", got, leak)
		}
	}
}

// probing is a notifier that reports batches and says whether the app runs.
type probing struct {
	*fakeNotifier
	running atomic.Bool
	probes  atomic.Int32
}

func (p *probing) Running() bool { p.probes.Add(1); return p.running.Load() }

// TestFirstSync: what on_initial_sync makes of the first sync, for an app
// that runs already or not yet, after files appeared (initial changes) or
// when every file already held its value (a restart: none).
func TestFirstSync(t *testing.T) {
	written := []string{"A", "B", "X"} // X is excluded
	tests := []struct {
		name     string
		mode     string
		probe    bool // the notifier can tell whether the app runs
		running  bool
		initial  []string // initial changes before FirstSync
		want     []string // the one batch, nil for none
		outcome  string
		noProbes bool
		late     bool // a file appearing after the decision is news too
	}{
		{name: "auto, app not running", mode: OnInitialAuto, probe: true, initial: []string{"A", "B"}, outcome: "skipped: the app was not running"},
		{name: "auto, app already running", mode: OnInitialAuto, probe: true, running: true, initial: []string{"B", "A"}, want: []string{"A", "B"}, outcome: InitialNotified, late: true},
		{name: "auto is the default", mode: "", probe: true, running: true, initial: []string{"A"}, want: []string{"A"}, outcome: InitialNotified, late: true},
		{name: "auto, restart with matching files", mode: OnInitialAuto, probe: true, running: true, outcome: "skipped: no file appeared", late: true},
		{name: "auto cannot tell for exec", mode: OnInitialAuto, running: true, initial: []string{"A"}, outcome: "skipped: auto cannot tell", noProbes: true},
		{name: "never, app running", mode: OnInitialNever, probe: true, running: true, initial: []string{"A"}, outcome: "skipped: on_initial_sync is never", noProbes: true},
		{name: "always, app not running", mode: OnInitialAlways, probe: true, initial: []string{"A"}, want: []string{"A", "B"}, outcome: InitialNotified, noProbes: true, late: true},
		{name: "always, restart with matching files", mode: OnInitialAlways, probe: true, want: []string{"A", "B"}, outcome: InitialNotified, noProbes: true, late: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, batches := recorder()
			var n Notifier = f
			p := &probing{fakeNotifier: f}
			p.running.Store(tt.running)
			if tt.probe {
				n = p
			}
			r := newReloader(t, Config{Coalesce: time.Millisecond, OnInitialSync: tt.mode, Exclude: []string{"X"}}, Options{Notifier: n, Method: MethodSignal})
			if st := r.Status(); st.InitialSync != InitialPending {
				t.Fatalf("initial_sync before the first sync = %q", st.InitialSync)
			}
			runReloader(t, r)
			if len(tt.initial) > 0 {
				r.Changed(tt.initial, true)
			}
			// Held: had they been queued, their batch would come first below.
			noBatch(t, batches)
			r.FirstSync(written)
			r.FirstSync(written) // once only
			if tt.want != nil {
				if got := nextBatch(t, batches); !slices.Equal(got, tt.want) {
					t.Fatalf("batch %v, want %v", got, tt.want)
				}
			}
			// An initial change that arrives after the decision follows it.
			r.Changed([]string{"LATE"}, true)
			r.Changed([]string{"C"}, false)
			want := []string{"C"}
			if tt.late {
				want = []string{"C", "LATE"}
			}
			if got := nextBatch(t, batches); !slices.Equal(got, want) {
				t.Fatalf("after the first sync: batch %v, want %v", got, want)
			}
			noBatch(t, batches)
			if st := r.Status(); !strings.HasPrefix(st.InitialSync, tt.outcome) {
				t.Errorf("initial_sync = %q, want %q…", st.InitialSync, tt.outcome)
			}
			if probes := p.probes.Load(); tt.noProbes && probes != 0 || !tt.noProbes && tt.probe && probes != 1 {
				t.Errorf("%d probes", probes)
			}
		})
	}
}

// TestFirstSyncSupervised: a supervised app starts after the first sync and
// is never told about it, whatever on_initial_sync says.
func TestFirstSyncSupervised(t *testing.T) {
	for _, mode := range []string{OnInitialAuto, OnInitialAlways} {
		f, batches := recorder()
		r := newReloader(t, Config{Coalesce: time.Millisecond, OnInitialSync: mode}, Options{Notifier: f})
		runReloader(t, r)
		r.Changed([]string{"A"}, true)
		r.FirstSync([]string{"A"})
		r.Changed([]string{"B"}, false)
		if got := nextBatch(t, batches); !slices.Equal(got, []string{"B"}) {
			t.Fatalf("%s: batch %v, want only the later change", mode, got)
		}
		if st := r.Status(); !strings.Contains(st.InitialSync, "supervised") {
			t.Errorf("%s: initial_sync = %q", mode, st.InitialSync)
		}
	}
}
