package engine

import (
	"context"
	"errors"
	"time"

	"github.com/phase-sidecar/phase-sidecar/pkg/sink"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// cycle is one run of a job: the objects read, the files they render to,
// and what publishing them changed. Each step of runJob fills a part.
type cycle struct {
	now  time.Time
	objs map[string]sources.Object // by object key, the fresh ones only

	fetchFailed bool // an object could not be read
	sourceErr   bool // … because its source as a whole failed
	writeErr    bool // a value could not be rendered or written

	// Rendered secrets, plain and by bundle; broken bundles lack a member.
	plain   []rendered
	bundles map[string][]rendered
	broken  map[string]bool
	// vals are the files each secret renders to this cycle: what a
	// template's {{ secret "NAME" }} reads. robjs are the objects the
	// rendered secrets are recorded with.
	vals  map[*state][]sink.File
	robjs map[*state]sources.Object

	changed []string // names of the secrets whose targets changed
	initial bool     // every change was a first write the app cannot have read
}

// rendered is one secret's files, ready to publish.
type rendered struct {
	s       *state
	files   []sink.File
	existed bool // a first write found the target already there
}

// runJob is one cycle of a job: fetch (unless results are given), render,
// publish, and schedule the next run.
func (e *Engine) runJob(ctx context.Context, j *job, results []sources.Result, ts tickets, reschedule bool) {
	if results == nil {
		results = e.fetch(ctx, j)
		e.record(ts, j.objects, results)
	}
	if ctx.Err() != nil && reschedule {
		return // shutting down: nothing half-done is written
	}
	c := e.collect(j, results)
	e.renderValues(j, c)
	e.renderTemplates(j, c)
	e.publish(j, c)
	if reschedule {
		e.reschedule(j, c)
	}
}

// collect records failed fetches and keeps the fresh objects.
func (e *Engine) collect(j *job, results []sources.Result) *cycle {
	c := &cycle{
		now:     e.now(),
		objs:    make(map[string]sources.Object, len(j.objects)),
		bundles: map[string][]rendered{},
		broken:  map[string]bool{},
		vals:    make(map[*state][]sink.File, len(j.secrets)),
		robjs:   make(map[*state]sources.Object, len(j.secrets)),
		initial: true,
	}
	for i, ob := range j.objects {
		if err := results[i].Err; err != nil {
			e.fetchFailed(j, ob, err)
			c.fetchFailed = true
			c.sourceErr = c.sourceErr || sources.SourceLevel(err)
			continue
		}
		c.objs[ob.key] = withCertExpiry(ob.ref.Kind, results[i].Object)
	}
	return c
}

// renderValues renders every secret read from an object. Nothing is
// written yet: a bundle is written only when all its members have fresh
// values, so no reader sees a new certificate with an old (or missing) key.
func (e *Engine) renderValues(j *job, c *cycle) {
	for _, s := range j.secrets {
		if s.cfg.IsTemplate() {
			continue
		}
		obj, ok := c.objs[s.obj]
		if !ok {
			c.breaks(s)
			continue
		}
		files, err := e.render(s, obj)
		if err == nil {
			err = expiredValue(s, obj, c.now)
		}
		if err != nil {
			e.secretFailed(s, err)
			c.writeErr = true
			c.breaks(s)
			continue
		}
		e.keep(c, s, obj, files)
	}
}

// renderTemplates renders the job's templates, each after the templates
// it reads (config refuses cycles), from the values of this cycle.
func (e *Engine) renderTemplates(j *job, c *cycle) {
	var pending []*state
	for _, s := range j.secrets {
		if s.cfg.IsTemplate() {
			pending = append(pending, s)
		}
	}
	for len(pending) > 0 {
		var next []*state
		for _, s := range pending {
			if !inputsDone(s, c.vals, pending) {
				next = append(next, s)
				continue
			}
			files, obj, err := e.renderTemplate(s, c.objs, c.vals, c.robjs)
			if err == nil {
				err = expiredValue(s, obj, c.now)
			}
			switch {
			case errors.Is(err, errNoInput):
				e.setError(s, err) // the input's own error is counted
				c.breaks(s)
			case err != nil:
				e.secretFailed(s, err)
				c.writeErr = true
				c.breaks(s)
			default:
				e.keep(c, s, obj, files)
			}
		}
		if len(next) == len(pending) {
			return
		}
		pending = next
	}
}

// breaks marks the bundle of s, if any, as missing a member this cycle.
func (c *cycle) breaks(s *state) {
	if s.cfg.Bundle != "" {
		c.broken[s.cfg.Bundle] = true
	}
}

// keep holds the rendered files of s for publishing; an input-only secret
// is recorded as synced at once, since it writes nothing.
func (e *Engine) keep(c *cycle, s *state, obj sources.Object, files []sink.File) {
	c.vals[s], c.robjs[s] = files, obj
	if s.cfg.InputOnly {
		e.synced(s, obj, false, c.now, false)
		return
	}
	r := rendered{s: s, files: files, existed: e.existed(s, files)}
	if s.cfg.Bundle != "" {
		c.bundles[s.cfg.Bundle] = append(c.bundles[s.cfg.Bundle], r)
	} else {
		c.plain = append(c.plain, r)
	}
}

// publish writes what was rendered (plain files one by one, each bundle
// as a whole), handles expired values, and tells the listener once, after
// every file of the cycle is in place.
func (e *Engine) publish(j *job, c *cycle) {
	if e.outputLost() {
		e.mu.Lock()
		err := e.lost
		e.mu.Unlock()
		for _, r := range c.plain {
			e.m.SecretWriteErrors.WithLabelValues(r.s.labels()...).Inc()
			e.setError(r.s, err)
		}
		for _, members := range c.bundles {
			for _, r := range members {
				e.m.SecretWriteErrors.WithLabelValues(r.s.labels()...).Inc()
				e.setError(r.s, err)
			}
		}
		return
	}
	note := func(r rendered, changed bool) {
		if e.synced(r.s, c.robjs[r.s], changed, c.now, r.existed) {
			c.changed = append(c.changed, r.s.cfg.Name)
			c.initial = c.initial && r.s.firstChange
		}
	}
	for _, r := range c.plain {
		changed, err := e.writeFiles(r.files)
		if err != nil {
			e.writeFailed(r.s, err)
			c.writeErr = true
			if changed {
				// Some files of an expanding secret are new on disk: the app
				// must hear of them even though the rest will be retried,
				// unless, as in synced, this is a first write before ready
				// to targets that were not there: the app reads them when
				// it starts.
				c.changed = append(c.changed, r.s.cfg.Name)
				e.mu.Lock()
				initial := e.initialLocked(r.s, r.existed)
				e.mu.Unlock()
				c.initial = c.initial && initial
			}
			continue
		}
		note(r, changed)
	}
	for b, members := range c.bundles {
		if c.broken[b] {
			for _, r := range members {
				e.log.Warn("bundle not published: a member has no fresh value; the last good bundle stays", "secret", r.s.cfg.Name, "path", e.sink.Path(b))
			}
			continue
		}
		var files []sink.File
		for _, r := range members {
			files = append(files, r.files...)
		}
		changed, err := e.sink.WriteBundle(b, files)
		for _, r := range members {
			if err != nil {
				e.writeFailed(r.s, err)
				c.writeErr = true
				continue
			}
			note(r, changed)
		}
	}
	if removed := e.expire(j, c.now); len(removed) > 0 {
		c.changed = append(c.changed, removed...)
		c.initial = false
	}
	e.checkReady()
	if len(c.changed) > 0 && e.change != nil {
		e.change(Change{Secrets: c.changed, Initial: c.initial})
	}
}

// outputLost checks the output directory once per cycle; once it was
// replaced, nothing more is written (the app no longer sees it), and every
// required secret counts as missing.
func (e *Engine) outputLost() bool {
	err := e.sink.Check()
	e.mu.Lock()
	defer e.mu.Unlock()
	if err == nil {
		if e.lost != nil {
			e.log.Info("output directory is back as it was opened; writing again", "path", e.sink.Path(""))
		}
		e.lost = nil
		return false
	}
	if e.lost == nil {
		e.log.Error("the output directory was replaced; not ready, nothing more is written", "path", e.sink.Path(""), "err", err)
		e.m.Ready.Set(0)
	}
	e.lost = err
	return true
}

// writeFiles writes the files of one plain secret, stopping at the first
// error; changed says whether any of them changed on disk.
func (e *Engine) writeFiles(files []sink.File) (changed bool, err error) {
	for _, f := range files {
		ch, err := e.sink.Write(f)
		if err != nil {
			return changed, err
		}
		changed = changed || ch
	}
	return changed, nil
}

// reschedule sets when the job runs next: after a backoff when anything
// failed, else at its next refresh or a lease's renewal point, whichever
// comes first, and never after a value's expiry.
func (e *Engine) reschedule(j *job, c *cycle) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c.fetchFailed || c.writeErr {
		j.attempt++
		j.refreshed = false // spread the first refresh after recovery again
		d := e.retryPolicy(j, c.sourceErr).Delay(j.attempt)
		j.due = c.now.Add(d)
		e.log.Debug("retry scheduled", "secret", j.secrets[0].cfg.Name, "attempt", j.attempt, "backoff", d.String())
	} else {
		j.attempt = 0
		j.due = c.now.Add(e.nextRefresh(j))
		for _, ob := range j.objects {
			if o, ok := c.objs[ob.key]; ok && !o.RefreshAt.IsZero() && o.RefreshAt.Before(j.due) {
				j.due = o.RefreshAt
			}
		}
	}
	if t := nextExpiry(j); !t.IsZero() && t.Before(j.due) {
		// Be there when a value expires, to mark it (and remove it with
		// on_expiry remove) if no replacement came.
		j.due = t
	}
	if j.hinted {
		// A hint arrived while this job ran; run it again now.
		j.due = c.now
	}
	j.running = false
	select {
	case e.wake <- struct{}{}:
	default:
	}
}
