package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/phase-sidecar/phase-sidecar/pkg/secret"
	"github.com/phase-sidecar/phase-sidecar/pkg/sink"
)

// TestNoPlaintextInStructs: the structs that carry secret bytes (an HTTP
// reload's headers, a file on its way to the sink) print none of them
// under %v, %+v, %#v, slog or JSON.
func TestNoPlaintextInStructs(t *testing.T) {
	const canary = "Bearer s3cr3t-canary-header"
	c, err := Parse("x.yaml", []byte("output: {dir: /a}\nsecrets: [{name: A, ref: \"file:///a\"}]\nreload: {http: {url: \"http://127.0.0.1:1/reload\", headers: {Authorization: \""+canary+"\"}}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Reload.HTTP.Headers["Authorization"]; string(got.Reveal()) != canary {
		t.Fatalf("header = %q", got.Reveal())
	}
	f := sink.File{Name: "a", Data: secret.FromString(canary), Mode: 0o440}
	for name, v := range map[string]any{"config": c, "reload": c.Reload, "http": *c.Reload.HTTP, "file": f, "files": []sink.File{f}} {
		var out bytes.Buffer
		fmt.Fprintf(&out, "%v %+v %#v %s", v, v, v, v)
		slog.New(slog.NewTextHandler(&out, nil)).Info("x", "v", v)
		slog.New(slog.NewJSONHandler(&out, nil)).Info("x", "v", v)
		if b, err := json.Marshal(v); err == nil {
			out.Write(b)
		}
		if strings.Contains(out.String(), "s3cr3t-canary") {
			t.Errorf("%s prints the canary:\n%s", name, out.String())
		}
	}
}
