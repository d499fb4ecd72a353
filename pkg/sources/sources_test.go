package sources

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/phase-sidecar/phase-sidecar/pkg/secret"
)

func TestShortHashIsKeyed(t *testing.T) {
	sum := sha256.Sum256([]byte("hunter2"))
	v := ShortHash(sum)
	if len(v) != 12 || v != ShortHash(sum) {
		t.Fatalf("ShortHash = %q, want 12 stable hex digits", v)
	}
	if v == hex.EncodeToString(sum[:6]) {
		t.Fatal("ShortHash is the plain SHA-256 prefix: a guessed value could be confirmed offline")
	}
}

func TestSelect(t *testing.T) {
	o := Object{Value: secret.FromString(`{"s":"x","n":3,"o":{"a":1}}`), Fields: map[string]secret.Value{"f": secret.FromString("field")}}
	for field, want := range map[string]string{"f": "field", "s": "x", "n": "3", "o": `{"a":1}`, "": `{"s":"x","n":3,"o":{"a":1}}`} {
		v, err := o.Select(field)
		if err != nil || string(v.Reveal()) != want {
			t.Errorf("Select(%q) = %q, %v; want %q", field, v.Reveal(), err, want)
		}
	}
	if _, err := o.Select("missing"); Reason(err) != "field_not_found" {
		t.Errorf("missing field: %v", err)
	}
	bad := Object{Value: secret.FromString("not json canary-123")}
	_, err := bad.Select("k")
	if err == nil || Reason(err) != "field_not_found" {
		t.Fatalf("Select on non-JSON = %v", err)
	}
	if got := err.Error(); strings.Contains(got, "canary-123") {
		t.Fatalf("the error quotes the value: %s", got)
	}
}
