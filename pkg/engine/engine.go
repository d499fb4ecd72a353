// Package engine schedules fetches, detects change, writes targets through
// the sink and keeps the status that metrics, /readyz and /v1/status show.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phase-sidecar/phase-sidecar/pkg/backoff"
	"github.com/phase-sidecar/phase-sidecar/pkg/breaker"
	"github.com/phase-sidecar/phase-sidecar/pkg/config"
	"github.com/phase-sidecar/phase-sidecar/pkg/metrics"
	"github.com/phase-sidecar/phase-sidecar/pkg/render"
	"github.com/phase-sidecar/phase-sidecar/pkg/secret"
	"github.com/phase-sidecar/phase-sidecar/pkg/sink"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// Sink is the part of *sink.Dir the engine uses.
type Sink interface {
	Write(f sink.File) (changed bool, err error)
	WriteBundle(bundle string, files []sink.File) (changed bool, err error)
	Exists(name string) bool
	Path(name string) string
	Remove(name string) error
	Check() error // the output directory is still the one opened
}

var _ Sink = (*sink.Dir)(nil)

// Change is a batch of secrets whose targets changed, reported after every
// file of the batch is in place.
type Change struct {
	Secrets []string // config names of the secrets that changed
	// Initial is true for changes made by the first sync of each secret,
	// which the app reads at start-up anyway.
	Initial bool
}

// Options wires an Engine.
type Options struct {
	Config   *config.Config
	Sources  map[string]sources.Source // by kind: sources.File, sources.Vault, …
	Sink     Sink
	Metrics  *metrics.Metrics
	Logger   *slog.Logger
	OnChange func(Change) // called from worker goroutines; must not block for long
	// ReloadLatency is the longest the app's side of a change takes
	// (reload.Config.Latency): leases and certificates are replaced at
	// least this long, plus their renew margin, before they expire.
	ReloadLatency time.Duration
}

// backoffBase is the first retry's ceiling after a failed fetch or write.
const backoffBase = time.Second

// Engine keeps every configured secret in sync.
type Engine struct {
	cfg     *config.Config
	srcs    map[string]sources.Source
	sink    Sink
	m       *metrics.Metrics
	log     *slog.Logger
	change  func(Change)
	jobs    []*job // fixed after New; their scheduling fields are guarded by mu
	secrets []*state
	byObj   map[string]*job   // object key → job, for watcher hints
	targets map[string]*state // configured target → secret, fixed after New
	claimed map[string]*state // file of an expansion → its secret; guarded by mu
	// breakers hold every job of a failing remote source back, by kind;
	// pace is each one's first backoff period (paceOf).
	breakers map[string]*breaker.Breaker
	pace     map[string]time.Duration

	mu        sync.Mutex // guards the per-secret status and job scheduling fields
	lost      error      // the output directory was replaced: nothing written reaches the app
	wake      chan struct{}
	readyC    chan struct{}
	ready     bool
	unwritten int // required secrets not written yet
	now       func() time.Time
	started   time.Time
}

// New checks that every secret has a source and prepares the plan.
func New(o Options) (*Engine, error) {
	e := &Engine{
		cfg:     o.Config,
		srcs:    o.Sources,
		sink:    o.Sink,
		m:       o.Metrics,
		log:     o.Logger,
		change:  o.OnChange,
		byObj:   map[string]*job{},
		targets: map[string]*state{},
		claimed: map[string]*state{},
		wake:    make(chan struct{}, 1),
		readyC:  make(chan struct{}),
		now:     time.Now,
	}
	e.started = e.now()
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.log = e.log.With("component", "engine")
	var missing []string
	for i := range o.Config.Secrets {
		sc := &o.Config.Secrets[i]
		st := &state{cfg: sc, target: sc.Target(), obj: sc.Ref.Object()}
		if sc.Template != "" {
			// An inline template reads no object of its own.
			st.obj = inlineTemplate + sc.Name
			t := sc.Parsed
			if t == nil {
				var err error
				if t, err = render.Parse(sc.Name, sc.Template); err != nil {
					missing = append(missing, fmt.Sprintf("secret %s: template: %v", sc.Name, err))
					continue
				}
			}
			st.tmpl = t
		} else if _, ok := e.srcs[sc.Ref.Kind]; !ok {
			missing = append(missing, fmt.Sprintf("secret %s: source %q is not available in this build/config", sc.Name, sc.Ref.Kind))
			continue
		}
		e.secrets = append(e.secrets, st)
		if !sc.InputOnly {
			e.targets[st.target] = st
			if sc.Bundle != "" {
				e.targets[sc.Bundle] = st // the bundle's directory is taken too
			}
			if sc.Required {
				e.unwritten++
			}
		}
	}
	if len(missing) > 0 {
		return nil, errors.New(strings.Join(missing, "\n"))
	}
	byName := make(map[string]*state, len(e.secrets))
	for _, st := range e.secrets {
		byName[st.cfg.Name] = st
	}
	for _, st := range e.secrets {
		for _, name := range st.cfg.Inputs {
			in, ok := byName[name]
			if !ok {
				return nil, fmt.Errorf("secret %s: template reads secret %q, which is not configured", st.cfg.Name, name)
			}
			st.inputs = append(st.inputs, in)
		}
	}
	e.jobs = plan(e.secrets)
	setLeads(e.jobs, o.ReloadLatency)
	e.newBreakers()
	for _, j := range e.jobs {
		for _, ob := range j.objects {
			e.byObj[ob.key] = j
		}
	}
	e.checkReady()
	return e, nil
}

// exportSecrets creates every per-secret series up front, so dashboards see
// each secret from the first scrape. Only Run does this: once serves no
// metrics, and 10 000 secrets' series would cost it ~10 MB.
func (e *Engine) exportSecrets() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.secrets {
		l := s.labels()
		e.m.SecretInfo.WithLabelValues(s.cfg.Name, s.cfg.Source(), refLabel(s.cfg), s.target, strconv.FormatBool(s.cfg.Required)).Set(1)
		s.mSuccess = e.m.SecretLastSuccess.WithLabelValues(l...)
		s.mChange = e.m.SecretLastChange.WithLabelValues(l...)
		s.mStale = e.m.SecretStale.WithLabelValues(l...)
		e.m.SecretWriteErrors.WithLabelValues(l...)
	}
	for kind := range e.srcs {
		for _, r := range []string{"success", "error"} {
			e.m.SourceRequests.WithLabelValues(kind, r)
		}
		e.m.SourceRequestDuration.WithLabelValues(kind)
	}
}

// Once syncs every secret one time, without retries, and reports the
// required secrets that were not written.
func (e *Engine) Once(ctx context.Context) error {
	e.runJobs(ctx, e.jobs, false)
	var failed []string
	for _, st := range e.Status() {
		if st.Required && !st.Written {
			failed = append(failed, fmt.Sprintf("%s (%s): %s", st.Name, st.Ref, st.LastError))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d required secret(s) not written:\n  %s", len(failed), strings.Join(failed, "\n  "))
	}
	return nil
}

// Ready is closed once every required secret has been written.
func (e *Engine) Ready() <-chan struct{} { return e.readyC }

// Run syncs everything, then keeps each job on its schedule until ctx ends.
// It returns nil on cancellation after the work in flight has finished.
func (e *Engine) Run(ctx context.Context) error {
	e.exportSecrets()
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Watchers only wake the scheduler; content decides.
	for kind, src := range e.srcs {
		w, ok := src.(sources.Watcher)
		if !ok {
			continue
		}
		var refs []sources.Ref
		for _, j := range e.jobs {
			for _, ob := range j.objects {
				if ob.ref.Kind == kind {
					refs = append(refs, ob.ref)
				}
			}
		}
		if len(refs) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.Watch(ctx, refs, e.hint); err != nil && ctx.Err() == nil {
				e.log.Warn("watcher stopped; periodic re-checks continue", "source", kind, "err", err)
			}
		}()
	}

	e.runJobs(ctx, e.jobs, true)
	e.schedule(ctx)
	return nil
}

// hint marks the job of ref due now.
func (e *Engine) hint(ref sources.Ref) {
	j, ok := e.byObj[ref.Object()]
	if !ok {
		return
	}
	e.mu.Lock()
	j.due = e.now()
	j.hinted = true
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// schedule runs due jobs until ctx ends. A single timer sleeps until the
// earliest due job, so an idle sidecar does no work between refreshes.
func (e *Engine) schedule(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, max(e.cfg.Concurrency, 1))
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := e.now()
		var due []*job
		next := now.Add(24 * time.Hour)
		e.mu.Lock()
		for _, j := range e.jobs {
			if j.running {
				continue
			}
			if !j.due.After(now) {
				due = append(due, j)
				j.running = true
				j.hinted = false
			} else if j.due.Before(next) {
				next = j.due
			}
		}
		e.mu.Unlock()
		if len(due) > 0 {
			e.dispatch(ctx, due, true, sem, &wg)
		}
		if ctx.Err() != nil {
			return
		}
		if len(due) > 0 {
			continue
		}
		timer.Reset(next.Sub(now))
		select {
		case <-ctx.Done():
			return
		case <-e.wake:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		case <-timer.C:
		}
	}
}

// runJobs runs the given jobs and waits for them. Workers take the next unit
// from a shared cursor, so a first sync of thousands of secrets costs no
// goroutine or channel hand-off per secret.
func (e *Engine) runJobs(ctx context.Context, jobs []*job, reschedule bool) {
	units := e.units(jobs)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(max(e.cfg.Concurrency, 1), len(units)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(units) {
					return
				}
				e.runUnit(ctx, units[i], reschedule)
			}
		}()
	}
	wg.Wait()
}

// unit is one piece of work: a batch of single-object jobs of a source that
// can batch, or one job.
type unit struct {
	jobs  []*job
	batch bool
}

// units splits jobs into units of work.
func (e *Engine) units(jobs []*job) []unit {
	var units []unit
	batches := map[string][]*job{}
	for _, j := range jobs {
		kind := j.objects[0].ref.Kind
		if _, ok := e.srcs[kind].(sources.Batcher); ok && len(j.objects) == 1 {
			batches[kind] = append(batches[kind], j)
			continue
		}
		units = append(units, unit{jobs: []*job{j}})
	}
	for _, kind := range sources.Kinds {
		if bj := batches[kind]; len(bj) > 0 {
			units = append(units, unit{jobs: bj, batch: true})
		}
	}
	return units
}

// runUnit runs one unit of work, unless a breaker holds it back.
func (e *Engine) runUnit(ctx context.Context, u unit, reschedule bool) {
	ts, wait := e.gate(u)
	if wait > 0 {
		e.hold(u, wait, reschedule)
		return
	}
	if u.batch {
		e.runBatch(ctx, u.jobs, ts, reschedule)
		return
	}
	e.runJob(ctx, u.jobs[0], nil, ts, reschedule)
}

// dispatch starts the given jobs with at most cap(sem) units in flight. It
// blocks only while every worker is busy.
func (e *Engine) dispatch(ctx context.Context, jobs []*job, reschedule bool, sem chan struct{}, wg *sync.WaitGroup) {
	units := e.units(jobs)
	for i, u := range units {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			e.release(units[i:])
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			e.runUnit(ctx, u, reschedule)
		}()
	}
}

// release marks jobs that will not run as idle again.
func (e *Engine) release(units []unit) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, u := range units {
		for _, j := range u.jobs {
			j.running = false
		}
	}
}

// runBatch reads the objects of single-object jobs of one source in one
// batch call, then completes each job.
func (e *Engine) runBatch(ctx context.Context, jobs []*job, ts tickets, reschedule bool) {
	kind := jobs[0].objects[0].ref.Kind
	b := e.srcs[kind].(sources.Batcher)
	refs := make([]sources.Ref, len(jobs))
	for i, j := range jobs {
		refs[i] = j.objects[0].ref
	}
	start := e.now()
	results := b.FetchBatch(ctx, refs)
	e.observe(kind, start, firstErr(results))
	objs := make([]object, len(jobs))
	for i, j := range jobs {
		objs[i] = j.objects[0]
	}
	e.record(ts, objs, results)
	for i, j := range jobs {
		r := sources.Result{Err: fmt.Errorf("%s: batch returned no result for %s", kind, refs[i])}
		if i < len(results) {
			r = results[i]
		}
		e.runJob(ctx, j, []sources.Result{r}, nil, reschedule)
	}
}

func firstErr(rs []sources.Result) error {
	for _, r := range rs {
		if r.Err != nil && !errors.Is(r.Err, sources.ErrNotFound) {
			return r.Err
		}
	}
	return nil
}

// observe records one request to a source. The source is up when it
// answered, even if the answer was "not found" or "denied".
func (e *Engine) observe(kind string, start time.Time, err error) {
	e.m.SourceRequestDuration.WithLabelValues(kind).Observe(e.now().Sub(start).Seconds())
	result := "success"
	if err != nil {
		result = "error"
	}
	e.m.SourceRequests.WithLabelValues(kind, result).Inc()
	up := 1.0
	switch sources.Reason(err) {
	case "", "not_found", "field_not_found", "permission_denied", "too_large":
	default:
		up = 0
	}
	e.m.SourceUp.WithLabelValues(kind).Set(up)
}

// fetch reads the job's objects: as one group when they all come from a
// source that reads groups consistently (a bundle from one kubelet volume),
// else one by one.
func (e *Engine) fetch(ctx context.Context, j *job) []sources.Result {
	kind := j.objects[0].ref.Kind
	if g, ok := e.srcs[kind].(sources.Grouper); ok && len(j.objects) > 1 && sameKind(j.objects) {
		refs := make([]sources.Ref, len(j.objects))
		for i, ob := range j.objects {
			refs[i] = ob.ref
		}
		start := e.now()
		results := g.FetchGroup(ctx, refs)
		e.observe(kind, start, firstErr(results))
		for len(results) < len(refs) {
			results = append(results, sources.Result{Err: fmt.Errorf("%s: group read returned no result for %s", kind, refs[len(results)])})
		}
		return results
	}
	results := make([]sources.Result, len(j.objects))
	for i, ob := range j.objects {
		if ctx.Err() != nil {
			results[i].Err = ctx.Err()
			continue
		}
		start := e.now()
		obj, err := e.srcs[ob.ref.Kind].Fetch(ctx, ob.ref)
		e.observe(ob.ref.Kind, start, err)
		results[i] = sources.Result{Object: obj, Err: err}
	}
	return results
}

func sameKind(obs []object) bool {
	for _, ob := range obs[1:] {
		if ob.ref.Kind != obs[0].ref.Kind {
			return false
		}
	}
	return true
}

// interval is the job's refresh interval: the shortest of its secrets'.
func (e *Engine) interval(j *job) time.Duration {
	d := time.Duration(0)
	for _, s := range j.secrets {
		r := s.cfg.Refresh
		if r <= 0 {
			r = e.cfg.Refresh
		}
		if rc, ok := e.srcs[s.cfg.Ref.Kind].(sources.Rechecker); ok && rc.Recheck() > 0 && rc.Recheck() < r {
			r = rc.Recheck()
		}
		if d == 0 || r < d {
			d = r
		}
	}
	if d <= 0 {
		d = time.Minute
	}
	return d
}

// jitter spreads d by ±10%.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration((rand.Float64()*0.2-0.1)*float64(d))
}

// nextRefresh is the wait after a successful run of j (e.mu held). The
// first refresh after a job's first success falls uniformly within the
// splay fraction of its interval, so a fleet started together is spread
// after one cycle; later ones keep ±10% jitter.
func (e *Engine) nextRefresh(j *job) time.Duration {
	iv := e.interval(j)
	if j.refreshed || e.cfg.Splay <= 0 {
		j.refreshed = true
		return jitter(iv)
	}
	j.refreshed = true
	return max(time.Duration(float64(iv)*(1-e.cfg.Splay*rand.Float64())), backoffBase/10)
}

// retryPolicy is the backoff after a failed run of j. A failure of the
// whole source backs off exponentially up to the breaker's cap, whatever
// the refresh interval: retrying sooner only adds load to a source that is
// down. A per-secret failure (not found, denied, a bad value) is retried
// within the interval, since the next refresh would come then anyway.
func (e *Engine) retryPolicy(j *job, sourceErr bool) backoff.Policy {
	if sourceErr {
		return backoff.Policy{Base: e.paceOfJob(j), Max: max(e.cfg.Breaker.Cap, backoffBase)}
	}
	return backoff.Policy{Base: backoffBase, Max: min(5*time.Minute, max(e.interval(j), backoffBase))}
}

// render turns a fetched object into the files of one secret.
func (e *Engine) render(s *state, obj sources.Object) ([]sink.File, error) {
	mk := func(name string, v secret.Value) sink.File {
		return sink.File{Name: name, Data: secret.New(newline(v.Reveal(), s.cfg.Newline)), Mode: s.cfg.Mode, UID: s.cfg.UID, GID: s.cfg.GID}
	}
	if s.cfg.Format != "" {
		v, err := render.Format(s.cfg.Format, obj.Fields, obj.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.cfg.Ref, err)
		}
		return []sink.File{mk(s.cfg.File, v)}, nil
	}
	if s.cfg.Ref.Field == "" && obj.Expands() && s.cfg.Bundle != "" {
		// Each field is a member of the bundle, under its own name: a
		// kubelet TLS volume gives tls.crt and tls.key.
		files := make([]sink.File, 0, len(obj.Fields))
		for _, k := range obj.Keys() {
			if err := sink.CheckName(k); err != nil {
				return nil, fmt.Errorf("%s: field %q cannot be a file name in bundle %q: %v; rename the field", s.cfg.Ref, k, s.cfg.Bundle, err)
			}
			files = append(files, mk(k, obj.Fields[k]))
		}
		return files, nil
	}
	if s.cfg.Ref.Field == "" && obj.Expands() {
		files := make([]sink.File, 0, len(obj.Fields))
		names := make([]string, 0, len(obj.Fields))
		seen := make(map[string]string, len(obj.Fields))
		for _, k := range obj.Keys() {
			n := expandedName(s.cfg.File, k)
			if other, dup := seen[n]; dup {
				return nil, fmt.Errorf("%s: fields %q and %q both map to file %q; rename one", s.cfg.Ref, other, k, n)
			}
			seen[n] = k
			if err := sink.CheckName(n); err != nil {
				return nil, fmt.Errorf("%s: field %q cannot be a file name (%s): %v; rename the field", s.cfg.Ref, k, n, err)
			}
			if owner, taken := e.targets[n]; taken && owner != s {
				return nil, fmt.Errorf("%s: field %q maps to %q, which secret %s writes; rename the field or that secret's file", s.cfg.Ref, k, n, owner.cfg.Name)
			}
			files = append(files, mk(n, obj.Fields[k]))
			names = append(names, n)
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, n := range names {
			if owner, taken := e.claimed[n]; taken && owner != s {
				return nil, fmt.Errorf("%s: file %q is already written by the expansion of secret %s", s.cfg.Ref, n, owner.cfg.Name)
			}
		}
		for _, n := range s.expanded {
			delete(e.claimed, n)
		}
		for _, n := range names {
			e.claimed[n] = s
		}
		s.expanded = names
		return files, nil
	}
	v, err := obj.Select(s.cfg.Ref.Field)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.cfg.Ref, err)
	}
	name := s.cfg.File
	return []sink.File{mk(name, v)}, nil
}

// existed reports, for a secret's first write, whether its target was already
// on disk: a sidecar restarted next to a running app must reload it when the
// value changed while it was down. The first look is kept: a retry after a
// write that stopped half-way (an expanding secret) finds files this process
// wrote, which the app has not read either.
func (e *Engine) existed(s *state, files []sink.File) bool {
	if e.change == nil {
		return false // nobody to tell
	}
	e.mu.Lock()
	first, seen, before := !s.written, s.existedSeen, s.existedBefore
	e.mu.Unlock()
	if !first || len(files) == 0 {
		return false
	}
	if seen {
		return before
	}
	name := files[0].Name
	if s.cfg.Bundle != "" {
		name = s.cfg.Bundle + "/" + name
	}
	ex := e.sink.Exists(name)
	e.mu.Lock()
	s.existedSeen, s.existedBefore = true, ex
	e.mu.Unlock()
	return ex
}

// newline applies the secret's newline policy.
func newline(b []byte, policy string) []byte {
	switch policy {
	case "strip":
		for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
			b = b[:len(b)-1]
		}
	case "add":
		for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
			b = b[:len(b)-1]
		}
		b = append(b[:len(b):len(b)], '\n')
	}
	return b
}
