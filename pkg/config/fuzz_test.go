package config

import (
	"fmt"
	"strings"
	"testing"
)

// FuzzParse: Parse never panics, and every problem it reports has a
// position inside the file or none.
func FuzzParse(f *testing.F) {
	blocks, _ := yamlBlocks(f)
	for _, b := range blocks {
		f.Add([]byte(b))
	}
	f.Add([]byte(minimal))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("output: {<<: {dir: /a}}\n"))
	f.Add([]byte("secrets: [*x]\n"))
	f.Add([]byte("output:\n  dir: /a\n  dir: /b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.yaml", data)
		if err == nil {
			if c == nil || c.Output.Dir == "" || len(c.Secrets) == 0 {
				t.Fatalf("Parse succeeded with %+v", c)
			}
			for _, s := range c.Secrets {
				if s.File == "" || badTargetName(s.File) != "" || s.Bundle != "" && badTargetName(s.Bundle) != "" || s.Mode > 0o777 || s.Refresh < minRefresh {
					t.Fatalf("accepted secret %+v", s)
				}
			}
			return
		}
		es, ok := err.(Errors)
		if !ok || len(es) == 0 {
			t.Fatalf("err = %T %v", err, err)
		}
		// YAML also breaks lines at \r; an upper bound is enough.
		lines := strings.Count(string(data), "\n") + strings.Count(string(data), "\r") + 2
		for _, e := range es {
			if e.Line < 0 || e.Line > lines || e.Column < 0 {
				t.Fatalf("bad position %d:%d in %d lines: %v", e.Line, e.Column, lines, e)
			}
		}
	})
}

// BenchmarkParse10000 parses a config of 10 000 secrets.
func BenchmarkParse10000(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("output: {dir: /run/secrets}\nsources:\n  vault: {address: \"https://vault:8200\"}\nsecrets:\n")
	for i := range 10000 {
		fmt.Fprintf(&sb, "  - name: SECRET_%d\n    ref: vault://secret/app/s%d#value\n", i, i/4)
		if i%10 == 0 {
			fmt.Fprintf(&sb, "    mode: \"0400\"\n    refresh: 5m\n")
		}
	}
	data := []byte(sb.String())
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		c, err := Parse("bench.yaml", data)
		if err != nil || len(c.Secrets) != 10000 {
			b.Fatal(err)
		}
	}
}
