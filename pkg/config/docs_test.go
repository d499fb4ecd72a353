package config

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"
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

// Every default in fields (schema.go) is the one the decoder applies, and
// the one docs/config.md shows: a config that sets the key to its documented
// default decodes exactly like one that leaves it out.
func TestDefaultsAgree(t *testing.T) {
	data, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	docDefault := map[string]string{}
	for _, l := range strings.Split(string(data), "\n") {
		if m := docKey.FindStringSubmatch(l); m != nil {
			if cells := strings.Split(l, " | "); len(cells) >= 3 {
				docDefault[m[1]] = strings.Trim(cells[2], "`\"")
			}
		}
	}
	type tree = map[string]any
	// base is the smallest config in which the keys under each section are
	// decoded.
	base := func(key string) tree {
		c := tree{"output": tree{"dir": "/a"}, "secrets": []any{tree{"name": "A", "ref": "file:///a"}}}
		switch {
		case strings.HasPrefix(key, "sources.aws.assume_role."):
			c["sources"] = tree{"aws": tree{"assume_role": tree{"role_arn": "arn:aws:iam::123456789012:role/x"}}}
		case key == "sources.vault.auth.wrapped_secret_id":
			c["sources"] = tree{"vault": tree{"address": "http://127.0.0.1:8200", "auth": tree{
				"method": "approle", "role_id_file": "/r", "secret_id_file": "/s"}}}
		case strings.HasPrefix(key, "sources.vault."):
			c["sources"] = tree{"vault": tree{"address": "http://127.0.0.1:8200", "auth": tree{}}}
		case strings.HasPrefix(key, "sources.aws."):
			c["sources"] = tree{"aws": tree{}}
		case strings.HasPrefix(key, "reload.signal."):
			c["reload"] = tree{"signal": tree{"pid_file": "/run/app.pid"}}
		case strings.HasPrefix(key, "reload.http."):
			c["reload"] = tree{"http": tree{"url": "http://127.0.0.1:1/reload"}}
		case strings.HasPrefix(key, "reload.exec."):
			c["reload"] = tree{"exec": tree{"command": []any{"/bin/true"}}}
		}
		return c
	}
	decode := func(t *testing.T, c tree) *Config {
		t.Helper()
		src, err := yaml.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := Parse("d.yaml", src)
		if err != nil {
			t.Fatalf("%v\n%s", err, src)
		}
		for i := range cfg.Secrets {
			cfg.Secrets[i].Pos, cfg.Secrets[i].RefPos = Pos{}, Pos{}
		}
		return cfg
	}
	for key, f := range fields {
		if f.def == nil {
			continue
		}
		t.Run(key, func(t *testing.T) {
			if got, want := docDefault[key], fmt.Sprint(f.def); got != want {
				t.Errorf("docs/config.md shows default %q, fields (schema.go) has %q", got, want)
			}
			with := base(key)
			if name, ok := strings.CutPrefix(key, "secrets[]."); ok {
				with["secrets"].([]any)[0].(tree)[name] = f.def
			} else {
				m := with
				parts := strings.Split(key, ".")
				for _, p := range parts[:len(parts)-1] {
					if _, ok := m[p]; !ok {
						m[p] = tree{}
					}
					m = m[p].(tree)
				}
				m[parts[len(parts)-1]] = f.def
			}
			if !reflect.DeepEqual(decode(t, base(key)), decode(t, with)) {
				t.Errorf("setting %s to its documented default %v changes the decoded config", key, f.def)
			}
		})
	}
}
