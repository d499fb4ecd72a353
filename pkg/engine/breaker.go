package engine

import (
	"time"

	"github.com/phase-sidecar/phase-sidecar/pkg/breaker"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// remote reports whether kind is a remote source, which gets a circuit
// breaker: files are local and cost nobody anything.
func remote(kind string) bool { return kind != sources.File }

// newBreakers gives every remote source of the engine its own breaker,
// paced by the source's healthy rate (see paceOf).
func (e *Engine) newBreakers() {
	e.breakers = map[string]*breaker.Breaker{}
	e.pace = map[string]time.Duration{}
	for kind := range e.srcs {
		if !remote(kind) {
			continue
		}
		e.pace[kind] = e.paceOf(kind)
		e.breakers[kind] = breaker.New(breaker.Config{
			Threshold: e.cfg.Breaker.Threshold,
			Base:      e.pace[kind],
			Cap:       e.cfg.Breaker.Cap,
			OnChange:  e.breakerChanged(kind),
		})
	}
}

// paceOf is the first backoff period of a failing source: twice the mean
// spacing of its requests when healthy, at least backoffBase (1 s) and at
// most the breaker's cap. From 1 s for every source, a breaker's cost in an
// outage was about the same whatever the source's size (3 failures, then
// about 6 probes in 40 s), so a source read once per refresh sent more in an
// outage than healthy; paced, the retries and probes of a failing source
// start at its healthy rate and fall from there. A source read once a
// second (10 secrets, refresh 10s) starts at 2 s.
func (e *Engine) paceOf(kind string) time.Duration {
	rate := 0.0 // requests per second when healthy, one per object
	for _, j := range e.jobs {
		n := 0
		for _, ob := range j.objects {
			if ob.ref.Kind == kind {
				n++
			}
		}
		rate += float64(n) / e.interval(j).Seconds()
	}
	top := max(e.cfg.Breaker.Cap, backoffBase)
	if rate <= 0 {
		return backoffBase
	}
	gap := time.Duration(float64(time.Second) / rate)
	return min(max(2*gap, backoffBase), top)
}

// paceOfJob is the first retry's ceiling of a job after a source-level
// failure: the widest pace of the remote sources it reads.
func (e *Engine) paceOfJob(j *job) time.Duration {
	d := backoffBase
	for _, ob := range j.objects {
		d = max(d, e.pace[ob.ref.Kind])
	}
	return d
}

// breakerChanged logs once when a source's breaker opens and once when it
// closes (not per secret, not per failed probe), and sets the gauge.
func (e *Engine) breakerChanged(kind string) func(breaker.Change) {
	return func(c breaker.Change) {
		e.m.SourceBreakerState.WithLabelValues(kind).Set(float64(c.To))
		switch {
		case c.From == breaker.Closed && c.To == breaker.Open:
			e.log.Warn("source failing: circuit breaker open; every secret of the source waits, one probe per backoff period, files stay as they are",
				"source", kind, "backoff", c.Next.Sub(c.At).Round(time.Millisecond).String())
		case c.To == breaker.Closed:
			e.log.Info("source answering again: circuit breaker closed", "source", kind,
				"duration_seconds", c.At.Sub(c.Since).Seconds(), "attempt", c.Opens)
		case c.To == breaker.Open:
			e.log.Debug("probe failed; circuit breaker stays open", "source", kind, "attempt", c.Opens,
				"backoff", c.Next.Sub(c.At).Round(time.Millisecond).String())
		}
	}
}

// tickets are a unit's permissions, by source kind.
type tickets map[string]breaker.Ticket

// gate asks the breakers of every remote kind the unit reads. A positive
// wait holds the whole unit back (a bundle is read together or not at
// all); permissions already given are handed back unused.
func (e *Engine) gate(u unit) (tickets, time.Duration) {
	now := e.now()
	var ts tickets
	var wait time.Duration
	for _, kind := range unitKinds(u) {
		b := e.breakers[kind]
		if b == nil {
			continue
		}
		t, w := b.Allow(now)
		if w > 0 {
			wait = max(wait, w)
			continue
		}
		if ts == nil {
			ts = tickets{}
		}
		ts[kind] = t
	}
	if wait > 0 {
		for kind, t := range ts {
			e.breakers[kind].Record(now, t, breaker.Neutral, 0)
		}
		return nil, wait
	}
	return ts, 0
}

// record tells each breaker what the unit's requests to its source said.
func (e *Engine) record(ts tickets, objs []object, results []sources.Result) {
	if len(ts) == 0 {
		return
	}
	now := e.now()
	for kind, t := range ts {
		r := breaker.Neutral
		var after time.Duration
		for i, ob := range objs {
			if ob.ref.Kind != kind || i >= len(results) {
				continue
			}
			err := results[i].Err
			switch {
			case err == nil:
				if r == breaker.Neutral {
					r = breaker.Success
				}
			case sources.SourceLevel(err):
				r = breaker.Failure
				after = max(after, sources.RetryAfter(err))
			}
		}
		e.breakers[kind].Record(now, t, r, after)
	}
}

// unitKinds lists the distinct source kinds a unit reads.
func unitKinds(u unit) []string {
	var kinds []string
	for _, j := range u.jobs {
		for _, ob := range j.objects {
			if !contains(kinds, ob.ref.Kind) {
				kinds = append(kinds, ob.ref.Kind)
			}
		}
	}
	return kinds
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// hold puts back the jobs of a unit that a breaker held: they come again
// after wait, which already spreads them. Files and errors stay as they
// are; staleness grows on its own. In once mode (no reschedule) the
// secrets are reported as not tried.
func (e *Engine) hold(u unit, wait time.Duration, reschedule bool) {
	now := e.now()
	if !reschedule {
		for _, j := range u.jobs {
			for _, ob := range j.objects {
				e.fetchFailed(j, ob, errHeld(ob.ref.Kind))
			}
		}
		return
	}
	for _, j := range u.jobs {
		if removed := e.expire(j, now); len(removed) > 0 && e.change != nil {
			e.checkReady()
			e.change(Change{Secrets: removed})
		}
	}
	e.mu.Lock()
	for _, j := range u.jobs {
		j.due = now.Add(wait)
		if t := nextExpiry(j); !t.IsZero() && t.Before(j.due) {
			j.due = t
		}
		j.running = false
	}
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

type heldError string

func (h heldError) Error() string {
	return string(h) + ": not tried: the source failed several times in a row (circuit breaker open); see the errors above"
}

// Is makes a held fetch count as the source being unavailable.
func (h heldError) Is(target error) bool { return target == sources.ErrUnavailable }

func errHeld(kind string) error { return heldError(kind) }
