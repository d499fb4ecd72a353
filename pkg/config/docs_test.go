package config

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/config.schema.json")

const (
	docsPath   = "../../docs/config.md"
	schemaPath = "../../docs/config.schema.json"
)

// yamlBlocks returns the ```yaml blocks of docs/config.md with the line each
// starts on.
func yamlBlocks(t testing.TB) (blocks []string, lines []int) {
	t.Helper()
	data, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	var cur *strings.Builder
	for i, l := range strings.Split(string(data), "\n") {
		switch {
		case cur == nil && strings.TrimSpace(l) == "```yaml":
			cur = &strings.Builder{}
			lines = append(lines, i+2)
		case cur != nil && strings.TrimSpace(l) == "```":
			blocks = append(blocks, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(l + "\n")
		}
	}
	if len(blocks) == 0 {
		t.Fatal("no ```yaml blocks in docs/config.md")
	}
	return blocks, lines
}

// Every example in the docs loads.
func TestDocsExamplesLoad(t *testing.T) {
	blocks, lines := yamlBlocks(t)
	for i, b := range blocks {
		if _, err := Parse(fmt.Sprintf("docs/config.md:%d", lines[i]), []byte(b)); err != nil {
			t.Errorf("example at docs/config.md line %d:\n%v", lines[i], err)
		}
	}
}

// Every config file under examples/ loads.
func TestExamplesLoad(t *testing.T) {
	files, _ := filepath.Glob("../../examples/*.yaml")
	more, _ := filepath.Glob("../../examples/*/*.yaml")
	for _, f := range append(files, more...) {
		if _, err := Load(f); err != nil {
			t.Errorf("%v", err)
		}
	}
}

var docKey = regexp.MustCompile("^\\| `([a-z_\\[\\].]+)` \\|")

// The reference tables in docs/config.md list exactly the keys the decoder
// accepts.
func TestDocsListEveryKey(t *testing.T) {
	data, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, l := range strings.Split(string(data), "\n") {
		if m := docKey.FindStringSubmatch(l); m != nil {
			documented[m[1]] = true
		}
	}
	accepted := acceptedKeys()
	for k := range accepted {
		if !documented[k] {
			t.Errorf("key %s is accepted but has no row in docs/config.md", k)
		}
	}
	for k := range documented {
		if _, ok := accepted[k]; !ok {
			t.Errorf("docs/config.md documents %s, which the decoder does not accept", k)
		}
	}
}

// The schema's description table covers exactly the accepted keys.
func TestSchemaFields(t *testing.T) {
	accepted := acceptedKeys()
	for k := range accepted {
		if _, ok := fields[k]; !ok {
			t.Errorf("key %s is accepted but missing from fields (schema.go)", k)
		}
	}
	for k := range fields {
		if _, ok := accepted[k]; !ok {
			t.Errorf("fields (schema.go) has %s, which the decoder does not accept", k)
		}
	}
}

// docs/config.schema.json is the output of JSONSchema. Regenerate it with
// go generate ./pkg/config (go test -run TestSchemaFile -update).
func TestSchemaFile(t *testing.T) {
	want, err := JSONSchema()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(schemaPath, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("docs/config.schema.json is stale; run go generate ./pkg/config")
	}
}

// The committed schema's properties, walked as JSON, are exactly the keys
// the decoder accepts: a hand edit of the file cannot drift either.
func TestSchemaMatchesDecoder(t *testing.T) {
	data, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	var root map[string]any
	if err := json.Unmarshal(data, &root); err != nil {
		t.Fatal(err)
	}
	var inSchema []string
	var walk func(prefix string, s map[string]any)
	walk = func(prefix string, s map[string]any) {
		props, _ := s["properties"].(map[string]any)
		for name, p := range props {
			ps := p.(map[string]any)
			path := prefix + name
			inSchema = append(inSchema, path)
			if ps["type"] == "object" {
				if _, fixed := ps["properties"]; fixed {
					walk(path+".", ps)
				}
			}
			if items, ok := ps["items"].(map[string]any); ok && items["type"] == "object" {
				walk(path+"[].", items)
			}
		}
	}
	walk("", root)
	var accepted []string
	for k := range acceptedKeys() {
		accepted = append(accepted, k)
	}
	slices.Sort(inSchema)
	slices.Sort(accepted)
	if !slices.Equal(inSchema, accepted) {
		t.Errorf("schema keys differ from decoder keys\nschema:  %v\ndecoder: %v", inSchema, accepted)
	}
}
