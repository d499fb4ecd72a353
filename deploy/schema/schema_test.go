// Package schema checks docs/config.schema.json, the JSON Schema of the
// sidecar's config file, against every config the project ships and every
// YAML example in its docs, with a JSON Schema library: an editor that
// validates with the schema must agree with `phase-sidecar validate`.
package schema

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/phase-sidecar/phase-sidecar/pkg/config"
)

const root = "../.."

func compile(t *testing.T) *jsonschema.Schema {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "docs/config.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("config.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("config.schema.json")
	if err != nil {
		t.Fatalf("the schema does not compile: %v", err)
	}
	return s
}

// instance turns YAML into the JSON value the schema describes.
func instance(t *testing.T, name string, y []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(y, &v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return inst
}

func TestShippedConfigs(t *testing.T) {
	s := compile(t)
	var files []string
	for _, glob := range []string{"deploy/*/phase-sidecar.yaml", "deploy/kubernetes/overlays/*/phase-sidecar.yaml", "deploy/phase/configs/*.yaml", "examples/*.yaml", "examples/templates/*.yaml"} {
		m, _ := filepath.Glob(filepath.Join(root, glob))
		files = append(files, m...)
	}
	if len(files) < 9 {
		t.Fatalf("found %d shipped configs: the globs are stale", len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Validate(instance(t, f, b)); err != nil {
			t.Errorf("%s does not match the schema: %v", f, err)
		}
	}
}

var fence = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// TestDocsExamples: every YAML example in the docs that is a whole config
// (it has output: and secrets:) matches the schema exactly when the config
// parser accepts it.
func TestDocsExamples(t *testing.T) {
	s := compile(t)
	docs, _ := filepath.Glob(filepath.Join(root, "docs/*.md"))
	docs = append(docs, filepath.Join(root, "README.md"))
	n := 0
	for _, d := range docs {
		b, err := os.ReadFile(d)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range fence.FindAllSubmatch(b, -1) {
			y := m[1]
			if !bytes.Contains(y, []byte("output:")) || !bytes.Contains(y, []byte("secrets:")) || bytes.Contains(y, []byte("…")) {
				continue
			}
			name := filepath.Base(d) + " example " + string(rune('0'+i%10))
			var probe any
			if yaml.Unmarshal(y, &probe) != nil {
				continue // a fragment, not a whole document
			}
			if _, ok := probe.(map[string]any); !ok {
				continue
			}
			_, perr := config.Parse(name, y)
			serr := s.Validate(instance(t, name, y))
			n++
			switch {
			case perr == nil && serr != nil:
				t.Errorf("%s: the parser accepts it, the schema refuses it: %v\n%s", name, serr, y)
			case perr != nil && serr == nil && !strings.Contains(perr.Error(), "not configured") && !strings.Contains(perr.Error(), "template_file"):
				// The schema cannot see across entries or the file system;
				// everything else it should refuse too.
				t.Logf("%s: the parser refuses it (%v), the schema accepts it", name, perr)
			}
		}
	}
	if n == 0 {
		t.Fatal("no config example found in the docs")
	}
	t.Logf("%d doc examples checked", n)
}

// TestSchemaRefuses: the schema is not vacuous.
func TestSchemaRefuses(t *testing.T) {
	s := compile(t)
	for _, y := range []string{
		"output: {dir: /a}\nsecrets: [{name: A, ref: \"file:///a\", colour: red}]\n",
		"output: {dir: /a}\nsecrets: [{name: A}]\n",
		"output: {dir: /a}\nsecrets: [{name: A, ref: \"file:///a\", template: \"x\"}]\n",
		"output: {dir: /a}\nsplay: 2\nsecrets: [{name: A, ref: \"file:///a\"}]\n",
		"output: {dir: /a}\nsecrets: [{name: A, ref: \"file:///a\", on_expiry: delete}]\n",
		"output: {dir: /a}\nsources: {aws: {region: \"eu-west-1.evil.example\"}}\nsecrets: [{name: A, ref: \"aws-sm://a#b\"}]\n",
		"output: {dir: /a}\nsources: {vault: {auth: {method: aws, role: r, sts_region: EU-WEST-1}}}\nsecrets: [{name: A, ref: \"vault://s/a#b\"}]\n",
		"output: {dir: /a}\nsources: {vault: {auth: {method: aws, role: r, sts_region: eu-west-1, sts_endpoint: \"http://sts.example\"}}}\nsecrets: [{name: A, ref: \"vault://s/a#b\"}]\n",
		"output: {dir: /a}\nsources: {vault: {auth: {method: aws, role: r, sts_region: eu-west-1, sts_endpoint: \"https://sts.example/?x=1\"}}}\nsecrets: [{name: A, ref: \"vault://s/a#b\"}]\n",
	} {
		if err := s.Validate(instance(t, "x", []byte(y))); err == nil {
			t.Errorf("the schema accepts\n%s", y)
		}
	}
}
