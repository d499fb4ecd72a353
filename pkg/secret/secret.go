// Package secret holds secret bytes in a type that never prints them.
package secret

import (
	"bytes"
	"fmt"
	"log/slog"
)

// Redacted is what every printing path of a Value produces.
const Redacted = "[REDACTED]"

// Value holds secret bytes. Every way of printing, logging or marshalling it
// yields Redacted; the bytes come out only through Reveal.
//
// The bytes sit behind a pointer so that even where fmt cannot call the
// methods (a Value in an unexported struct field) it prints an address, never
// the content.
type Value struct {
	p *[]byte
}

// New returns a Value holding a copy of b.
func New(b []byte) Value {
	c := bytes.Clone(b)
	return Value{p: &c}
}

// FromString returns a Value holding s.
func FromString(s string) Value {
	b := []byte(s)
	return Value{p: &b}
}

// Reveal returns the plaintext. Only sinks and templates call it; the caller
// must not modify the returned slice.
func (v Value) Reveal() []byte {
	if v.p == nil {
		return nil
	}
	return *v.p
}

// Len is the length of the plaintext in bytes.
func (v Value) Len() int { return len(v.Reveal()) }

// IsZero reports whether v holds no bytes.
func (v Value) IsZero() bool { return v.Len() == 0 }

// Equal reports whether v and o hold the same bytes.
func (v Value) Equal(o Value) bool { return bytes.Equal(v.Reveal(), o.Reveal()) }

func (v Value) String() string   { return Redacted }
func (v Value) GoString() string { return "secret.Value(" + Redacted + ")" }

// Format redacts under every verb, including %x, %q and %#v.
func (v Value) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(v.GoString()))
		return
	}
	_, _ = f.Write([]byte(Redacted))
}

func (v Value) LogValue() slog.Value         { return slog.StringValue(Redacted) }
func (v Value) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }
func (v Value) MarshalText() ([]byte, error) { return []byte(Redacted), nil }
func (v Value) MarshalYAML() (any, error)    { return Redacted, nil }
