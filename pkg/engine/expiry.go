package engine

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/phase-sidecar/phase-sidecar/pkg/config"
	"github.com/phase-sidecar/phase-sidecar/pkg/secret"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// setLeads gives every object of every job the lead that its expiring
// values need: the reload's time plus the longest renew margin of the
// secrets that read it. Sources schedule leases and certificates by it.
func setLeads(jobs []*job, reload time.Duration) {
	for _, j := range jobs {
		for i := range j.objects {
			ob := &j.objects[i]
			lead := sources.Lead{Reload: reload}
			first := true
			for _, s := range j.secrets {
				if s.obj != ob.key {
					continue
				}
				m := s.cfg.RenewMargin
				l := sources.Lead{Reload: reload, Margin: m.Fixed, Fraction: m.Fraction}
				if first {
					lead, first = l, false
					continue
				}
				lead.Margin = max(lead.Margin, l.Margin)
				lead.Fraction = max(lead.Fraction, l.Fraction)
			}
			ob.ref.Lead = lead
		}
	}
}

// withCertExpiry gives a file object without an expiry the earliest
// NotAfter of the PEM certificates it holds: a mounted TLS secret expires
// like a Vault certificate does.
func withCertExpiry(kind string, o sources.Object) sources.Object {
	if kind != sources.File || !o.Expiry.IsZero() {
		return o
	}
	earliest := func(v secret.Value) {
		if t := notAfter(v.Reveal()); !t.IsZero() && (o.Expiry.IsZero() || t.Before(o.Expiry)) {
			o.Expiry = t
		}
	}
	earliest(o.Value)
	for _, v := range o.Fields {
		earliest(v)
	}
	return o
}

var pemCert = []byte("-----BEGIN CERTIFICATE-----")

// notAfter is the NotAfter of the first certificate in b, or zero.
func notAfter(b []byte) time.Time {
	i := bytes.Index(b, pemCert)
	if i < 0 {
		return time.Time{}
	}
	block, _ := pem.Decode(b[i:])
	if block == nil || block.Type != "CERTIFICATE" {
		return time.Time{}
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return time.Time{}
	}
	return c.NotAfter
}

// expired reports whether the value on disk has outlived its expiry. e.mu
// is held.
func (s *state) expired(now time.Time) bool {
	return s.written && !s.expiry.IsZero() && !now.Before(s.expiry)
}

// expire handles the secrets of j whose value expired without a
// replacement: they count as stale (and, with readiness strict, not ready);
// with on_expiry remove their files go, so the app fails loudly instead of
// using dead credentials. It returns the names of removed secrets.
func (e *Engine) expire(j *job, now time.Time) []string {
	var removed []string
	for _, s := range j.secrets {
		e.mu.Lock()
		exp := s.expired(now) && !s.expiredSeen
		if exp {
			s.expiredSeen = true
		}
		e.mu.Unlock()
		if !exp {
			continue
		}
		if s.cfg.OnExpiry != config.OnExpiryRemove {
			e.log.Warn("the value expired and could not be replaced; the expired file stays (on_expiry: keep)", "secret", s.cfg.Name, "source", s.cfg.Source(), "path", e.path(s))
			continue
		}
		var err error
		for _, n := range e.targetNames(s) {
			if rerr := e.sink.Remove(n); rerr != nil && err == nil {
				err = rerr
			}
		}
		if err != nil {
			e.writeFailed(s, err)
			continue
		}
		e.mu.Lock()
		s.removed = true
		e.mu.Unlock()
		e.log.Warn("the value expired and could not be replaced; its file is removed (on_expiry: remove)", "secret", s.cfg.Name, "source", s.cfg.Source(), "path", e.path(s))
		removed = append(removed, s.cfg.Name)
	}
	return removed
}

// targetNames are the names in the output directory that hold s.
func (e *Engine) targetNames(s *state) []string {
	switch {
	case s.cfg.Bundle != "":
		return []string{s.cfg.Bundle}
	case s.expanded != nil:
		return s.expanded
	default:
		return []string{s.cfg.File}
	}
}

// nextExpiry is the earliest expiry among j's secrets not handled yet by
// expire, or zero. e.mu is held.
func nextExpiry(j *job) time.Time {
	var t time.Time
	for _, s := range j.secrets {
		if s.written && !s.expiredSeen && !s.expiry.IsZero() && (t.IsZero() || s.expiry.Before(t)) {
			t = s.expiry
		}
	}
	return t
}

// errExpired marks a value read after its own expiry.
var errExpired = errors.New("already expired")

// expiredValue refuses a value that is already expired for a secret with
// on_expiry remove: writing it would undo the removal.
func expiredValue(s *state, obj sources.Object, now time.Time) error {
	if s.cfg.OnExpiry != config.OnExpiryRemove || obj.Expiry.IsZero() || now.Before(obj.Expiry) {
		return nil
	}
	what := s.cfg.Ref.String()
	if s.cfg.IsTemplate() {
		what = "template: an input" // a rendered value expires with its earliest input
	}
	return fmt.Errorf("%s: the value expired at %s (on_expiry: remove): %w", what, obj.Expiry.UTC().Format(time.RFC3339), errExpired)
}
