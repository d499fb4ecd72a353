// Package breaker is a source-wide circuit breaker. After a few consecutive
// source-level failures it holds every request to the source back and lets
// one probe through per backoff period (exponential, full jitter, up to a
// cap); the first probe that succeeds closes it, and the requests it held
// back return spread over a short window instead of all at once.
//
// It is pure logic: the caller passes the time, keeps its own timers and
// decides what a failure is. It starts no goroutines and is safe for
// concurrent use.
package breaker

import (
	"sync"
	"time"

	"github.com/phase-sidecar/phase-sidecar/pkg/backoff"
)

// State is the breaker's state; the numbers are the values of the
// phase_sidecar_source_breaker_state gauge.
type State int

const (
	Closed   State = 0 // requests go through
	Open     State = 1 // requests are held back until the next probe
	HalfOpen State = 2 // one probe is in flight; the others wait for it
)

func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return "unknown"
}

// Result is what a request says about the source, as its caller classifies
// it.
type Result int

const (
	// Neutral says nothing about the source: a per-secret answer (not
	// found, permission denied, a value that fails validation), a request
	// cancelled by its caller, a local error. It neither counts towards
	// opening nor breaks a streak of failures; a probe that ends neutral
	// lets the next caller probe at once.
	Neutral Result = iota
	// Success: the source answered.
	Success
	// Failure: the source did not answer usefully: connection refused or
	// reset, a timeout, a 5xx, a 429 or a throttling error.
	Failure
)

// Defaults for a zero Config field.
const (
	DefaultThreshold    = 3
	DefaultBase         = time.Second
	DefaultCap          = 5 * time.Minute
	DefaultSpread       = 5 * time.Second
	DefaultProbeTimeout = time.Minute
)

// Config tunes a Breaker; zero fields take the defaults.
type Config struct {
	// Threshold is the number of consecutive failures that opens it.
	Threshold int
	// Base and Cap bound the wait between probes: the ceiling of the n-th
	// consecutive opening is min(Cap, Base·2^(n-1)), the wait is drawn in
	// [Base/10, ceiling]. A Cap below Base means Base.
	Base, Cap time.Duration
	// Spread is the window over which held-back callers come back after a
	// probe slot, so a closing breaker does not release them in one burst.
	Spread time.Duration
	// ProbeTimeout is how long a probe may stay unreported before it
	// counts as failed (a caller that never calls Record must not keep the
	// source closed off for good).
	ProbeTimeout time.Duration
	// OnChange, when set, is told of every state change, in order. It is
	// called with the breaker's lock held: it must be quick (log, set a
	// gauge, wake a loop) and must not call the breaker.
	OnChange func(Change)
	// Rand returns a uniform number in [0, n) for n > 0 and must be safe
	// for concurrent use; nil means math/rand/v2. Tests pass a fixed one.
	Rand func(n int64) int64
}

// Change is one state change. Closed to Open is the one to log as "the
// source is down", To == Closed as "it answers again"; HalfOpen and Open
// alternate once per probe.
type Change struct {
	From, To State
	At       time.Time
	// Since is when the breaker last left Closed: At itself when it opens
	// from Closed; the start of the outage when it closes.
	Since time.Time
	// Opens counts consecutive openings: 1 at the first, one more per
	// failed probe; 0 when closed.
	Opens int
	// Next is the earliest time of the next probe when To is Open.
	Next time.Time
}

// Ticket is Allow's permission for one request; pass it back to Record. A
// result whose ticket predates the latest state change (a request that was
// already in flight when the breaker opened) is ignored, so only the probe
// decides how an outage ends.
type Ticket struct {
	gen   uint64
	probe bool
}

// Probe reports whether the request is the probe of an open breaker.
func (t Ticket) Probe() bool { return t.probe }

// Breaker is a circuit breaker for one source.
type Breaker struct {
	threshold    int
	probeTimeout time.Duration
	cap          time.Duration
	wait         backoff.Policy // between probes
	spread       backoff.Policy // a held-back caller's share of the window
	onChange     func(Change)

	mu        sync.Mutex
	state     State
	gen       uint64    // advances on every state change; 0 is never issued
	failures  int       // Closed: consecutive failures
	opens     int       // consecutive openings
	next      time.Time // Open: the earliest probe
	probing   time.Time // HalfOpen: when the probe went out
	since     time.Time // when the breaker left Closed
	notBefore time.Time // the floor a Retry-After set
}

// New returns a closed breaker.
func New(cfg Config) *Breaker {
	if cfg.Threshold <= 0 {
		cfg.Threshold = DefaultThreshold
	}
	if cfg.Base <= 0 {
		cfg.Base = DefaultBase
	}
	if cfg.Cap <= 0 {
		cfg.Cap = DefaultCap
	}
	if cfg.Spread <= 0 {
		cfg.Spread = DefaultSpread
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = DefaultProbeTimeout
	}
	return &Breaker{
		threshold:    cfg.Threshold,
		probeTimeout: cfg.ProbeTimeout,
		cap:          max(cfg.Cap, cfg.Base),
		wait:         backoff.Policy{Base: cfg.Base, Max: cfg.Cap, Rand: cfg.Rand},
		spread:       backoff.Policy{Base: cfg.Spread, Max: cfg.Spread, Rand: cfg.Rand},
		onChange:     cfg.OnChange,
		gen:          1,
	}
}

// State is the current state.
func (b *Breaker) State() State {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

// Allow asks whether a request to the source may go at now. A zero wait
// means go, and Record the outcome with the ticket. A positive wait means
// the breaker holds the request back: ask again after it. The wait is the
// time to the next probe plus a random share of the spread window, so the
// callers it held back come back spread out: the first of them probes, and
// if the probe closes the breaker the others follow over the window.
func (b *Breaker) Allow(now time.Time) (Ticket, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case Closed:
		return Ticket{gen: b.gen}, 0
	case HalfOpen:
		if now.Sub(b.probing) < b.probeTimeout {
			return Ticket{}, b.spread.Delay(1)
		}
		// The probe never reported: count it as failed.
		b.opens++
		b.open(now)
	}
	if now.Before(b.next) {
		return Ticket{}, b.next.Sub(now) + b.spread.Delay(1)
	}
	b.probing = now
	b.set(HalfOpen, now)
	return Ticket{gen: b.gen, probe: true}, 0
}

// Record reports the outcome of a request Allow let through. retryAfter is
// the server's Retry-After (0 when it sent none); with a Failure it sets a
// floor, at most Cap, under the next probe: the breaker's own backoff then
// starts from that floor, so clients told the same instant do not all
// return at it.
func (b *Breaker) Record(now time.Time, t Ticket, r Result, retryAfter time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r == Failure && retryAfter > 0 {
		// The server's word holds even for a result that comes too late
		// to change the state.
		if nb := now.Add(min(retryAfter, b.cap)); nb.After(b.notBefore) {
			b.notBefore = nb
		}
	}
	if t.gen != b.gen {
		return
	}
	switch b.state {
	case Closed:
		switch r {
		case Success:
			b.failures = 0
		case Failure:
			b.failures++
			if b.failures >= b.threshold {
				b.since = now
				b.opens = 1
				b.open(now)
			}
		}
	case HalfOpen:
		switch r {
		case Success:
			b.failures, b.opens = 0, 0
			b.set(Closed, now)
		case Failure:
			b.opens++
			b.open(now)
		default:
			// The probe learnt nothing: the next caller probes.
			b.next = later(now, b.notBefore)
			b.set(Open, now)
		}
	}
}

// open schedules the next probe and moves to Open; it needs b.mu.
func (b *Breaker) open(now time.Time) {
	b.next = later(now, b.notBefore).Add(b.wait.Delay(b.opens))
	b.set(Open, now)
}

// set changes the state and tells OnChange; it needs b.mu.
func (b *Breaker) set(s State, now time.Time) {
	from := b.state
	b.state = s
	b.gen++
	if b.onChange == nil {
		return
	}
	c := Change{From: from, To: s, At: now, Since: b.since, Opens: b.opens}
	if s == Open {
		c.Next = b.next
	}
	b.onChange(c)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
