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
type Value struct {
	b []byte
}

// New returns a Value holding a copy of b.
func New(b []byte) Value { return Value{b: bytes.Clone(b)} }

// FromString returns a Value holding s.
func FromString(s string) Value { return Value{b: []byte(s)} }

// Reveal returns the plaintext. Only sinks and templates call it; the caller
// must not modify the returned slice.
func (v Value) Reveal() []byte { return v.b }

// Len is the length of the plaintext in bytes.
func (v Value) Len() int { return len(v.b) }

// IsZero reports whether v holds no bytes.
func (v Value) IsZero() bool { return len(v.b) == 0 }

// Equal reports whether v and o hold the same bytes.
func (v Value) Equal(o Value) bool { return bytes.Equal(v.b, o.b) }

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
