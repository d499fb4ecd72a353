package phase

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phase-sidecar/phase-sidecar/deploy/internal/kit"
	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite the generated configs")

func load(t *testing.T) *Catalogue {
	t.Helper()
	c, err := Load("catalogue.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestGenerated keeps every generated config equal to what the catalogue
// renders; run with -update after editing the catalogue.
func TestGenerated(t *testing.T) {
	c := load(t)
	for _, tg := range c.Targets() {
		t.Run(tg.Path, func(t *testing.T) {
			path := filepath.Join("..", tg.Path)
			want := c.Render(tg)
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, want, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./phase -run TestGenerated -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the catalogue's rendering; run go test ./phase -run TestGenerated -update", path)
			}
		})
	}
}

// TestDocs keeps the container table of docs/phase.md equal to the
// catalogue's; run with -update after editing the catalogue.
func TestDocs(t *testing.T) {
	c := load(t)
	path := filepath.Join("..", "..", "docs", "phase.md")
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	before, rest, ok := strings.Cut(string(doc), TableBegin+"\n")
	_, after, ok2 := strings.Cut(rest, TableEnd)
	if !ok || !ok2 {
		t.Fatalf("%s lacks the markers %q … %q", path, TableBegin, TableEnd)
	}
	want := before + TableBegin + "\n" + c.ContainerTable() + TableEnd + after
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if string(doc) != want {
		t.Errorf("the container table of %s differs from the catalogue's; run go test ./phase -run TestDocs -update", path)
	}
}

// TestRenderedShape decodes every rendered config and checks that it
// holds exactly the example variables of its containers, with the reload
// each container needs.
func TestRenderedShape(t *testing.T) {
	c := load(t)
	type doc struct {
		Output struct {
			Dir string `yaml:"dir"`
		} `yaml:"output"`
		Secrets []struct {
			Name     string `yaml:"name"`
			Ref      string `yaml:"ref"`
			File     string `yaml:"file"`
			Required *bool  `yaml:"required"`
		} `yaml:"secrets"`
		Reload struct {
			Signal struct {
				Name    string `yaml:"name"`
				Process string `yaml:"process"`
			} `yaml:"signal"`
		} `yaml:"reload"`
	}
	for _, tg := range c.Targets() {
		t.Run(tg.Path, func(t *testing.T) {
			var d doc
			if err := yaml.Unmarshal(c.Render(tg), &d); err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, v := range c.For(tg.Containers...) {
				if v.Example {
					want = append(want, v.SecretName())
				}
			}
			var got []string
			for _, s := range d.Secrets {
				got = append(got, s.Name)
				v, ok := c.Variable(s.Name)
				if !ok {
					v, ok = c.Variable(s.Name + "_PATH")
				}
				if !ok {
					t.Errorf("secret %s is not in the catalogue", s.Name)
					continue
				}
				if req := s.Required == nil || *s.Required; req != v.Required {
					t.Errorf("secret %s: required=%v, catalogue says %v", s.Name, req, v.Required)
				}
				prefix := map[string]string{"vault": "vault://", "aws": "aws-sm://"}[tg.Source]
				if !strings.HasPrefix(s.Ref, prefix) {
					t.Errorf("secret %s: ref %q is not a %s ref", s.Name, s.Ref, tg.Source)
				}
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("secrets = %v, want the catalogue's examples %v", got, want)
			}
			ct := c.Containers[tg.Containers[0]]
			if d.Reload.Signal.Name != ct.Signal || d.Reload.Signal.Process != ct.Process {
				t.Errorf("reload = %+v, want %s to %s", d.Reload.Signal, ct.Signal, ct.Process)
			}
		})
	}
}

func TestLoadRejects(t *testing.T) {
	good, err := os.ReadFile("catalogue.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, old, new, want string
	}{
		{"unknown key", "    example: true\n    description: Django secret key.", "    example: true\n    colour: red\n    description: Django secret key.", "colour"},
		{"unknown container", "containers: [backend]\n", "containers: [backend, cron]\n", `unknown container "cron"`},
		{"duplicate", "  - name: SERVER_SECRET\n", "  - name: SECRET_KEY\n", "listed twice"},
		{"suffix", "  - name: CF_API_KEY\n", "  - name: CF_API_KEY_FILE\n", "without _FILE"},
		{"bad reload", "    reload: restart\n", "    reload: reboot\n", "neither reload nor restart"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(string(good), tt.old) {
				t.Fatalf("fixture text %q not found", tt.old)
			}
			path := filepath.Join(t.TempDir(), "catalogue.yaml")
			if err := os.WriteFile(path, []byte(strings.Replace(string(good), tt.old, tt.new, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestReferencePage checks the catalogue against the reference page in
// shared/ when it is present beside the checkout: every variable the page
// calls mountable with _FILE must be in the catalogue.
func TestReferencePage(t *testing.T) {
	page, err := os.ReadFile(filepath.Join("..", "..", "..", "shared", "reference", "phase-self-hosting-secrets.txt"))
	if err != nil {
		t.Skipf("reference page not beside the checkout: %v", err)
	}
	c := load(t)
	lines := strings.Split(string(page), "\n")
	for i, l := range lines {
		if !strings.Contains(l, "Can be mounted from a file") {
			continue
		}
		// The page lists "Name", then "<VAR>- Type" a few lines above.
		for j := i; j > i-8 && j >= 0; j-- {
			if name, ok := strings.CutSuffix(strings.TrimSpace(lines[j]), "- Type"); ok {
				if _, found := c.Variable(name); !found {
					t.Errorf("the reference page documents %s_FILE; the catalogue lacks it", name)
				}
				break
			}
		}
	}
}

// TestValidate runs the real binary's validate on every generated config.
func TestValidate(t *testing.T) {
	bin := kit.BuildSidecar(t, t.TempDir())
	c := load(t)
	for _, tg := range c.Targets() {
		t.Run(tg.Path, func(t *testing.T) {
			out, err := exec.Command(bin, "validate", "--config", filepath.Join("..", tg.Path)).CombinedOutput()
			if err != nil {
				t.Errorf("phase-sidecar validate: %v\n%s", err, out)
			}
			// A preset the sidecar warns about (a bare script name as
			// process) would be the kit's bug.
			if strings.Contains(string(out), "warning:") {
				t.Errorf("phase-sidecar validate warns:\n%s", out)
			}
		})
	}
}
