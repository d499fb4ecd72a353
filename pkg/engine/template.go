package engine

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/phase-sidecar/phase-sidecar/pkg/render"
	"github.com/phase-sidecar/phase-sidecar/pkg/secret"
	"github.com/phase-sidecar/phase-sidecar/pkg/sink"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// errNoInput: an input of a template has no value this cycle; its own
// failure is reported, and the template keeps its last good file.
var errNoInput = errors.New("an input has no value this cycle")

// inputsDone reports whether every template s reads has been dealt with
// this cycle (is not still pending).
func inputsDone(s *state, vals map[*state][]sink.File, pending []*state) bool {
	for _, in := range s.inputs {
		if _, ok := vals[in]; ok || !in.cfg.IsTemplate() {
			continue
		}
		for _, p := range pending {
			if p == in {
				return false
			}
		}
	}
	return true
}

// renderTemplate renders template secret s from the values of this cycle.
// The object it is recorded with has the output's hash as its version and
// the earliest expiry of its inputs: a DATABASE_URL expires with its lease.
func (e *Engine) renderTemplate(s *state, objs map[string]sources.Object, vals map[*state][]sink.File, robjs map[*state]sources.Object) ([]sink.File, sources.Object, error) {
	t := s.tmpl
	if s.cfg.TemplateFile != "" {
		src, ok := objs[s.obj]
		if !ok {
			return nil, sources.Object{}, fmt.Errorf("template_file %q: %w", s.cfg.TemplateFile, errNoInput)
		}
		if s.tmpl == nil || s.tmplVersion != src.Version {
			nt, err := render.Parse(s.cfg.Name, string(src.Value.Reveal()))
			if err != nil {
				return nil, sources.Object{}, fmt.Errorf("template_file %q: %w: %v", s.cfg.TemplateFile, render.ErrRender, err)
			}
			s.tmpl, s.tmplVersion = nt, src.Version
		}
		t = s.tmpl
	}
	var expiry time.Time
	byName := make(map[string]*state, len(s.inputs))
	for _, in := range s.inputs {
		files, ok := vals[in]
		if !ok {
			return nil, sources.Object{}, fmt.Errorf("secret %s: %w", in.cfg.Name, errNoInput)
		}
		if len(files) != 1 {
			return nil, sources.Object{}, fmt.Errorf("template: secret %q writes %d files; a template reads one value: %w", in.cfg.Name, len(files), render.ErrRender)
		}
		if x := robjs[in].Expiry; !x.IsZero() && (expiry.IsZero() || x.Before(expiry)) {
			expiry = x
		}
		byName[in.cfg.Name] = in
	}
	out, err := t.Execute(func(name string) (secret.Value, error) {
		in, ok := byName[name]
		if !ok {
			return secret.Value{}, fmt.Errorf("secret %q is not among the secrets this template read when the sidecar started (its template_file changed since): restart the sidecar to read it", name)
		}
		return vals[in][0].Data, nil
	})
	if err != nil {
		return nil, sources.Object{}, fmt.Errorf("secret %s: template: %w", s.cfg.Name, err)
	}
	f := sink.File{Name: s.cfg.File, Data: secret.New(newline(out.Reveal(), s.cfg.Newline)), Mode: s.cfg.Mode, UID: s.cfg.UID, GID: s.cfg.GID}
	obj := sources.Object{Version: sources.ShortHash(sha256.Sum256(f.Data.Reveal())), Expiry: expiry}
	return []sink.File{f}, obj, nil
}
