package engine

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/phase-sidecar/phase-sidecar/pkg/config"
	"github.com/phase-sidecar/phase-sidecar/pkg/render"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// state is what the engine knows about one secret. Fields after cfg and
// target are guarded by Engine.mu.
type state struct {
	cfg    *config.Secret // points into the Config, which the engine never changes
	target string
	obj    string // the source object's key, sources.Ref.Object()
	job    *job

	written     bool // synced at least once by this process
	firstChange bool // the latest change was this process's first write
	version     string
	lastSuccess time.Time
	lastChange  time.Time
	lastError   string
	errorSince  time.Time
	expiry      time.Time
	expiredSeen bool     // expire has handled the current expiry
	removed     bool     // on_expiry remove took the file away
	expanded    []string // target names of an expanding secret

	// existedBefore is what existed found on its first look (existedSeen),
	// before this process wrote any of the secret's files.
	existedSeen, existedBefore bool

	// A template: parsed once for an inline one, at every new version of
	// its template_file otherwise; inputs are the secrets it reads.
	tmpl        *render.Template
	tmplVersion string
	inputs      []*state

	// The secret's metric children, looked up once.
	mSuccess, mChange, mStale prometheus.Gauge
}

func (s *state) labels() []string { return []string{s.cfg.Name, s.cfg.Source()} }

// job scheduling fields, guarded by Engine.mu.
type schedule struct {
	due       time.Time
	attempt   int
	running   bool
	hinted    bool
	refreshed bool // the first refresh after a success is scheduled (splay)
}

// reason is the reason label of a failed secret.
func reason(err error) string {
	if errors.Is(err, render.ErrRender) {
		return "render"
	}
	return sources.Reason(err)
}

// refLabel is what the ref label and the status show of a secret: its
// ref, or "template" for an inline template.
func refLabel(c *config.Secret) string {
	if c.Template != "" {
		return config.Template
	}
	return c.Ref.String()
}

// fetchFailed records a failed fetch for every secret reading ob. The last
// good target stays as it is.
func (e *Engine) fetchFailed(j *job, ob object, err error) {
	why := sources.Reason(err)
	for _, s := range j.secrets {
		if s.obj != ob.key && s.cfg.Bundle == "" {
			continue
		}
		e.m.SecretFetchErrors.WithLabelValues(s.cfg.Name, s.cfg.Source(), why).Inc()
		e.setError(s, err)
		lvl := e.log.Warn
		if !s.cfg.Required && errors.Is(err, sources.ErrNotFound) {
			lvl = e.log.Info
		}
		msg := "fetch failed; keeping the last good file"
		if !s.written {
			msg = "fetch failed; nothing written yet"
		}
		lvl(msg, "secret", s.cfg.Name, "source", s.cfg.Source(), "err", err)
	}
}

// secretFailed records an error selecting or rendering a secret's value.
func (e *Engine) secretFailed(s *state, err error) {
	e.m.SecretFetchErrors.WithLabelValues(s.cfg.Name, s.cfg.Source(), reason(err)).Inc()
	e.setError(s, err)
	msg := "cannot select the value; keeping the last good file"
	switch {
	case errors.Is(err, errExpired):
		msg = "the value read has already expired; it is not written"
	case errors.Is(err, render.ErrRender):
		msg = "cannot render the value; keeping the last good file"
	}
	e.log.Warn(msg, "secret", s.cfg.Name, "source", s.cfg.Source(), "err", err)
}

// writeFailed records a failed write; the sink left the old file intact.
func (e *Engine) writeFailed(s *state, err error) {
	e.m.SecretWriteErrors.WithLabelValues(s.cfg.Name, s.cfg.Source()).Inc()
	e.setError(s, err)
	e.log.Error("write failed; the old file stays", "secret", s.cfg.Name, "path", e.path(s), "err", err)
}

func (e *Engine) setError(s *state, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s.lastError = err.Error()
	if s.errorSince.IsZero() {
		s.errorSince = e.now()
	}
}

// initialLocked reports whether a write of s now is an initial change (see
// synced): its first, before ready, to a target that did not exist. e.mu
// is held.
func (e *Engine) initialLocked(s *state, existed bool) bool {
	return !s.written && !e.ready && !existed
}

// synced records a successful sync and reports whether the target changed.
//
// A change is initial, and needs no reload, only when it is this process's
// first write of the secret, made before the sidecar was ready, to a target
// that did not exist: the app cannot have read anything yet.
func (e *Engine) synced(s *state, obj sources.Object, changed bool, now time.Time, existed bool) bool {
	e.mu.Lock()
	first, initial := !s.written, e.initialLocked(s, existed)
	if first && s.cfg.Required && !s.cfg.InputOnly {
		e.unwritten--
	}
	s.written = true
	s.version = obj.Version
	exported := s.mSuccess != nil
	s.lastSuccess = now
	s.lastError = ""
	s.errorSince = time.Time{}
	if !obj.Expiry.Equal(s.expiry) || !obj.Expiry.Before(now) {
		s.expiredSeen = false
	}
	s.expiry = obj.Expiry
	s.removed = false
	if changed {
		s.lastChange = now
		s.firstChange = initial
	}
	e.mu.Unlock()
	if exported {
		s.mSuccess.Set(float64(now.UnixNano()) / 1e9)
		s.mStale.Set(0)
		if !obj.Expiry.IsZero() {
			e.m.SecretExpiry.WithLabelValues(s.labels()...).Set(float64(obj.Expiry.Unix()))
		}
		if changed {
			s.mChange.Set(float64(now.UnixNano()) / 1e9)
		}
	}
	if changed {
		e.log.Info("secret written", "secret", s.cfg.Name, "source", s.cfg.Source(), "path", e.path(s), "version", obj.Version)
	} else if e.log.Enabled(context.Background(), slog.LevelDebug) {
		e.log.Debug("secret unchanged", "secret", s.cfg.Name, "source", s.cfg.Source(), "version", obj.Version)
	}
	return changed
}

// checkReady closes Ready once every required secret is written.
func (e *Engine) checkReady() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ready || e.unwritten > 0 {
		return
	}
	e.ready = true
	e.m.Ready.Set(1)
	close(e.readyC)
	e.log.Info("ready: every required secret is written")
}

// SecretStatus is one secret in /v1/status. It never holds a value.
type SecretStatus struct {
	Name       string     `json:"name"`
	Source     string     `json:"source"`
	Ref        string     `json:"ref"`
	Path       string     `json:"path"`
	Files      []string   `json:"files,omitempty"` // targets of an expanding secret
	Bundle     string     `json:"bundle,omitempty"`
	Required   bool       `json:"required"`
	Written    bool       `json:"written"`
	Version    string     `json:"version,omitempty"`
	LastSync   *time.Time `json:"last_sync,omitempty"`
	LastChange *time.Time `json:"last_change,omitempty"`
	Expiry     *time.Time `json:"expiry,omitempty"`
	LastError  string     `json:"last_error,omitempty"`
	Stale      bool       `json:"stale"`
	// Expired: the value on disk outlived its expiry (or was removed for
	// it) and no replacement could be read.
	Expired bool `json:"expired"`
}

// Status reports every secret, in config order. It also refreshes the stale
// gauges, so staleness costs nothing between scrapes.
func (e *Engine) Status() []SecretStatus {
	now := e.now()
	e.mu.Lock()
	out := make([]SecretStatus, 0, len(e.secrets))
	for _, s := range e.secrets {
		st := SecretStatus{
			Name: s.cfg.Name, Source: s.cfg.Source(), Ref: refLabel(s.cfg),
			Path: e.path(s), Bundle: s.cfg.Bundle, Required: s.cfg.Required,
			Written: s.written, Version: s.version, LastError: s.lastError,
			LastSync: tp(s.lastSuccess), LastChange: tp(s.lastChange), Expiry: tp(s.expiry),
			Stale: e.stale(s, now), Expired: s.expired(now),
		}
		st.Stale = st.Stale || st.Expired
		st.Written = st.Written && !s.removed
		for _, n := range s.expanded {
			st.Files = append(st.Files, e.sink.Path(n))
		}
		if s.mStale != nil {
			v := 0.0
			if st.Stale {
				v = 1
			}
			s.mStale.Set(v)
		}
		out = append(out, st)
	}
	e.mu.Unlock()
	return out
}

// Missing lists the required secrets not written yet, removed for their
// expiry, or (with readiness strict) holding only an expired value, sorted.
func (e *Engine) Missing() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	now := e.now()
	strict := e.cfg.Readiness != config.ReadinessServeExpired
	for _, s := range e.secrets {
		if s.cfg.Required && !s.cfg.InputOnly && (e.lost != nil || !s.written || s.removed || (strict && s.expired(now))) {
			out = append(out, s.cfg.Name)
		}
	}
	sort.Strings(out)
	return out
}

// stale: not synced within max_stale (default 3× the refresh interval).
// A secret never synced is stale once its first sync is overdue by as much.
func (e *Engine) stale(s *state, now time.Time) bool {
	limit := s.cfg.MaxStale
	if limit <= 0 {
		limit = e.cfg.MaxStale
	}
	if limit <= 0 {
		limit = 3 * e.interval(s.job)
	}
	last := s.lastSuccess
	if last.IsZero() {
		last = e.started
	}
	return now.Sub(last) > limit
}

// path is where a secret is written; for an expanding secret, the pattern
// of its files. Only the secret's own job writes s.expanded, so that job may
// call this without e.mu; others hold it.
func (e *Engine) path(s *state) string {
	if s.expanded != nil {
		return e.sink.Path(s.target) + "_*"
	}
	return e.sink.Path(s.target)
}

func tp(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
