// Package reload tells the app that its secret files changed: a signal to a
// process found by pid file or by name, an HTTP request, a command, or a
// restart of a supervised child. Changes are coalesced so that the app hears
// once per batch, notifications never overlap, and a failed one is retried
// until it succeeds or a newer batch supersedes it.
package reload

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/phase-sidecar/phase-sidecar/pkg/backoff"
	"github.com/phase-sidecar/phase-sidecar/pkg/metrics"
)

// Notifier tells the app about one batch of changed secrets.
type Notifier interface {
	Notify(ctx context.Context, b Batch) error
}

// Batch is what a notification is about: the names of the changed secrets,
// never their values.
type Batch struct {
	Secrets []string
}

// checker is implemented by notifiers that can diagnose their target
// without notifying it.
type checker interface {
	Check() error
}

// prober is implemented by notifiers that can tell, without notifying,
// whether the app is already running: what on_initial_sync auto decides on.
type prober interface {
	Running() bool
}

// Method label values; the same as the metric's.
const (
	MethodSignal    = "signal"
	MethodHTTP      = "http"
	MethodExec      = "exec"
	MethodSupervise = "supervise"
	MethodNone      = "none"
)

// Defaults of Options.RetryMin and RetryMax.
const (
	DefaultRetryMin = time.Second
	DefaultRetryMax = time.Minute
)

// Options are the Reloader's collaborators.
type Options struct {
	Logger  *slog.Logger     // default slog.Default()
	Metrics *metrics.Metrics // optional
	// Notifier, when set, is used instead of Config's Signal, HTTP and Exec
	// (the caller refuses both: run -- APP does); the supervise mode passes
	// its *Supervisor here. Method is then its metric label ("supervise"
	// for a *Supervisor when empty).
	Notifier Notifier
	Method   string
	// RetryMin and RetryMax are the first and the largest ceiling of the
	// exponential backoff between failed notifications (equal jitter: each
	// wait is between half its ceiling and the ceiling); defaults 1s and 1m.
	RetryMin, RetryMax time.Duration
}

// Status is the reload part of /v1/status. It holds no secret values and no
// URL credentials.
type Status struct {
	Method      string    `json:"method"`
	Target      string    `json:"target,omitempty"`
	Coalesce    string    `json:"coalesce"`
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	Result      string    `json:"result,omitempty"` // success or error
	Error       string    `json:"error,omitempty"`
	// Failures counts consecutive failed attempts of the current batch.
	Failures int `json:"failures,omitempty"`
	// LastSecrets are the secrets of the last attempted notification.
	LastSecrets []string `json:"last_secrets,omitempty"`
	// Pending are changed secrets the app has not yet been told about.
	Pending []string `json:"pending"`
	// InitialSync is what became of the first sync: "pending" (not yet
	// complete), "notified" (the app is told once), or "skipped" with the
	// reason.
	InitialSync string `json:"initial_sync,omitempty"`
}

// InitialSync values of Status.
const (
	InitialPending  = "pending"
	InitialNotified = "notified"
)

// Reloader coalesces changes and hands each batch to its notifier.
type Reloader struct {
	notifier      Notifier
	method        string
	target        string
	coalesce      time.Duration
	maxWait       time.Duration
	onInitialSync string // OnInitialAuto (or ""), OnInitialAlways or OnInitialNever
	exclude       map[string]bool
	retry         backoff.Policy
	logger        *slog.Logger
	metrics       *metrics.Metrics

	wake chan struct{} // capacity 1: "pending changed"

	// recorded, when set (by tests), sees the status after each attempt.
	recorded func(Status)

	mu       sync.Mutex
	pending  map[string]bool // changed, not yet taken into a batch
	first    time.Time       // first change of the pending set
	last     time.Time       // latest change of the pending set
	inflight []string        // the batch being notified or retried
	status   Status
	// Before FirstSync the initial changes are held in initial; FirstSync
	// decides once whether they are news to the app (tellInitial), and
	// initial changes reported after it follow that decision.
	initial     map[string]bool
	firstDone   bool
	tellInitial bool
}

// New builds the Reloader for cfg. With no notifier configured (and none
// in o) it is inert: Changed does nothing and Run waits for ctx.
func New(cfg Config, o Options) (*Reloader, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	logger := o.Logger.With("component", "reload")
	r := &Reloader{
		notifier:      o.Notifier,
		method:        o.Method,
		coalesce:      cfg.Coalesce,
		maxWait:       cfg.MaxWait,
		onInitialSync: cfg.OnInitialSync,
		exclude:       make(map[string]bool, len(cfg.Exclude)),
		retry:         backoff.Policy{Base: o.RetryMin, Max: o.RetryMax, Jitter: backoff.Equal},
		logger:        logger,
		metrics:       o.Metrics,
		wake:          make(chan struct{}, 1),
		pending:       make(map[string]bool),
		initial:       make(map[string]bool),
	}
	if r.retry.Base <= 0 {
		r.retry.Base = DefaultRetryMin
	}
	if r.retry.Max <= 0 {
		r.retry.Max = DefaultRetryMax
	}
	for _, name := range cfg.Exclude {
		r.exclude[name] = true
	}

	switch {
	case r.notifier != nil:
		if r.method == "" {
			r.method = MethodSupervise
		}
		if s, ok := r.notifier.(*Supervisor); ok {
			r.target = s.argv[0]
		}
	case cfg.Signal != nil:
		s, err := NewSignal(*cfg.Signal, logger)
		if err != nil {
			return nil, err
		}
		r.notifier, r.method, r.target = s, MethodSignal, s.target()
	case cfg.HTTP != nil:
		h := NewHTTP(*cfg.HTTP)
		r.notifier, r.method, r.target = h, MethodHTTP, h.Target()
	case cfg.Exec != nil:
		e, err := NewExec(*cfg.Exec, logger)
		if err != nil {
			return nil, err
		}
		r.notifier, r.method, r.target = e, MethodExec, e.target()
	default:
		r.method = MethodNone
	}
	r.status = Status{Method: r.method, Target: r.target, Coalesce: r.coalesce.String()}
	if r.notifier != nil {
		r.status.InitialSync = InitialPending
	}
	return r, nil
}

// Method is the metric label of the configured notifier, or "none".
func (r *Reloader) Method() string { return r.method }

// Changed records that the files of secrets are fully written. It never
// blocks. initial marks a change of the first sync (a file that did not
// exist): those are held until FirstSync decides whether the app needs to
// hear of them.
func (r *Reloader) Changed(secrets []string, initial bool) {
	if r.notifier == nil {
		return
	}
	r.mu.Lock()
	if initial && !r.firstDone {
		for _, name := range secrets {
			if !r.exclude[name] {
				r.initial[name] = true
			}
		}
		r.mu.Unlock()
		return
	}
	tell := r.tellInitial
	r.mu.Unlock()
	if initial && !tell {
		return
	}
	r.enqueue(secrets)
}

// FirstSync is called once, when every required secret has been written
// for the first time (the engine is ready); written names the secrets on
// disk. It decides whether the first sync is news to the app:
//
//   - never: it is not.
//   - always: it is, even when every file already held its value (a
//     restart of the sidecar): the app is told once.
//   - auto: it is when files appeared that the app may have missed, i.e.
//     the app was already running (the pid file names a live process, a
//     process matches, the HTTP endpoint accepts connections): it read the
//     plain-variable fallbacks, or nothing. An exec command cannot tell, so
//     auto does not run it.
//
// A supervised app is started by the sidecar after this sync and reads the
// files itself: it is never told. FirstSync may take as long as a probe (a
// /proc scan, or a connect of at most a second).
func (r *Reloader) FirstSync(written []string) {
	if r.notifier == nil {
		return
	}
	r.mu.Lock()
	if r.firstDone {
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()

	tell, outcome := false, ""
	p, canProbe := r.notifier.(prober)
	switch {
	case r.method == MethodSupervise:
		outcome = "skipped: the supervised app starts after the first sync"
	case r.onInitialSync == OnInitialNever:
		outcome = "skipped: on_initial_sync is never"
	case r.onInitialSync == OnInitialAlways:
		tell = true
	case !canProbe:
		outcome = "skipped: auto cannot tell whether the app runs before an exec command; set on_initial_sync: always to run it"
	case p.Running():
		tell = true
	default:
		outcome = "skipped: the app was not running; it reads the files when it starts"
	}

	r.mu.Lock()
	if r.firstDone { // a concurrent call decided first
		r.mu.Unlock()
		return
	}
	r.firstDone, r.tellInitial = true, tell
	var batch []string
	if tell {
		// Changes held during the probe are in r.initial too.
		for name := range r.initial {
			batch = append(batch, name)
		}
		if r.onInitialSync == OnInitialAlways {
			for _, name := range written {
				if !r.exclude[name] {
					batch = append(batch, name)
				}
			}
		}
		slices.Sort(batch)
		batch = slices.Compact(batch)
		if len(batch) == 0 {
			tell, outcome = false, "skipped: no file appeared in the first sync"
		} else {
			outcome = InitialNotified
		}
	}
	clear(r.initial)
	r.status.InitialSync = outcome
	r.mu.Unlock()

	switch {
	case !tell:
		r.logger.Info("first sync complete; the app is not told (" + strings.TrimPrefix(outcome, "skipped: ") + ")")
	case r.onInitialSync == OnInitialAlways:
		r.logger.Info("first sync complete; telling the app once (on_initial_sync: always)", "secret", strings.Join(batch, ","))
	default:
		r.logger.Info("first sync complete; the app was already running when its files appeared, telling it once", "secret", strings.Join(batch, ","))
	}
	if tell {
		r.enqueue(batch)
	}
}

// enqueue adds secrets to the pending set and wakes Run.
func (r *Reloader) enqueue(secrets []string) {
	now := time.Now()
	r.mu.Lock()
	added := false
	for _, name := range secrets {
		if r.exclude[name] {
			continue
		}
		if len(r.pending) == 0 && !added {
			r.first = now
		}
		r.pending[name] = true
		added = true
	}
	if added {
		r.last = now
		r.setPendingGauge()
	}
	r.mu.Unlock()
	if added {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// Run coalesces changes and notifies, one notification at a time, until ctx
// is cancelled; then it returns nil. It starts no goroutines.
func (r *Reloader) Run(ctx context.Context) error {
	if r.notifier == nil {
		<-ctx.Done()
		return nil
	}
	for {
		batch, ok := r.collect(ctx)
		if !ok {
			return nil
		}
		r.deliver(ctx, batch)
		if ctx.Err() != nil {
			return nil
		}
	}
}

// collect waits until there are pending changes and the coalescing window
// has closed: coalesce after the latest change, or max_wait (when set)
// after the first, whichever comes first. It moves the pending set into inflight.
func (r *Reloader) collect(ctx context.Context) ([]string, bool) {
	for {
		r.mu.Lock()
		if len(r.pending) == 0 {
			r.mu.Unlock()
			select {
			case <-ctx.Done():
				return nil, false
			case <-r.wake:
				continue
			}
		}
		deadline := r.last.Add(r.coalesce)
		if capAt := r.first.Add(r.maxWait); r.maxWait > 0 && capAt.Before(deadline) {
			deadline = capAt
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			batch := make([]string, 0, len(r.pending))
			for name := range r.pending {
				batch = append(batch, name)
			}
			slices.Sort(batch)
			r.inflight = batch
			clear(r.pending)
			r.mu.Unlock()
			return batch, true
		}
		r.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, false
		case <-t.C:
		case <-r.wake:
			t.Stop()
		}
	}
}

// deliver notifies about batch, retrying with backoff. It returns when the
// notification succeeded, when ctx is done, or when a newer change arrived
// during a backoff: then the failed batch is merged into the pending set and
// the merged batch is coalesced and notified instead.
func (r *Reloader) deliver(ctx context.Context, batch []string) {
	for attempt := 1; ; attempt++ {
		start := time.Now()
		err := r.notifier.Notify(ctx, Batch{Secrets: batch})
		if err != nil && ctx.Err() != nil {
			return // shutting down: not the app's failure
		}
		r.record(batch, start, time.Since(start), attempt, err)
		if err == nil {
			return
		}
		wait := r.retry.Delay(attempt)
		r.logger.Warn("reload failed, will retry",
			"secret", strings.Join(batch, ","), "attempt", attempt, "backoff", wait.String(), "err", err)
		if r.backoffOrSuperseded(ctx, batch, wait) {
			return
		}
	}
}

// backoffOrSuperseded waits out a backoff. It reports true when the retry
// should not happen: ctx is done, or a newer change arrived, in which case
// the failed batch is merged into the pending set.
func (r *Reloader) backoffOrSuperseded(ctx context.Context, batch []string, wait time.Duration) bool {
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return true
		case <-t.C:
			return false
		case <-r.wake:
			r.mu.Lock()
			if len(r.pending) == 0 {
				// A late token for a change already in this batch.
				r.mu.Unlock()
				continue
			}
			for _, name := range batch {
				r.pending[name] = true
			}
			r.inflight = nil
			r.mu.Unlock()
			return true
		}
	}
}

func (r *Reloader) record(batch []string, start time.Time, d time.Duration, attempt int, err error) {
	result := "success"
	if err != nil {
		result = "error"
	}
	if m := r.metrics; m != nil {
		m.Reloads.WithLabelValues(r.method, result).Inc()
		m.ReloadDuration.WithLabelValues(r.method).Observe(d.Seconds())
		if err == nil {
			m.LastReloadSuccess.Set(float64(start.Add(d).UnixNano()) / 1e9)
		}
	}
	r.mu.Lock()
	r.status.LastAttempt = start
	r.status.Result = result
	r.status.LastSecrets = batch
	if err == nil {
		r.status.LastSuccess = start.Add(d)
		r.status.Error = ""
		r.status.Failures = 0
		r.inflight = nil
	} else {
		r.status.Error = err.Error()
		r.status.Failures = attempt
	}
	r.setPendingGauge()
	r.mu.Unlock()
	if r.recorded != nil {
		r.recorded(r.Status())
	}
	if err == nil {
		r.logger.Info("app notified", "secret", strings.Join(batch, ","), "attempt", attempt,
			"duration_seconds", d.Seconds())
	}
}

// setPendingGauge needs r.mu.
func (r *Reloader) setPendingGauge() {
	if r.metrics != nil {
		r.metrics.ReloadPendingChange.Set(float64(len(r.pendingNames())))
	}
}

// pendingNames needs r.mu.
func (r *Reloader) pendingNames() []string {
	names := make([]string, 0, len(r.pending)+len(r.inflight))
	for name := range r.pending {
		names = append(names, name)
	}
	for _, name := range r.inflight {
		if !r.pending[name] {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// Status returns a copy of the current reload status.
func (r *Reloader) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.status
	s.LastSecrets = slices.Clone(s.LastSecrets)
	s.Pending = r.pendingNames()
	return s
}

// Check diagnoses the target without notifying it: is the pid file
// readable, does a process match, may the sidecar signal it. The app may
// not be up yet when the sidecar starts, so callers log the error rather
// than stop.
func (r *Reloader) Check() error {
	c, ok := r.notifier.(checker)
	if !ok {
		return nil
	}
	if err := c.Check(); err != nil {
		return fmt.Errorf("reload check: %w", err)
	}
	return nil
}
