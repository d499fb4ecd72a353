package nomad_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/phase-sidecar/phase-sidecar/deploy/phase"
	"github.com/phase-sidecar/phase-sidecar/pkg/config"
)

// TestJobAgainstCatalogue loads the sidecar config embedded in the job
// with the real config loader and checks the backend's env block against it
// and against the Phase catalogue.
func TestJobAgainstCatalogue(t *testing.T) {
	b, err := os.ReadFile(jobFile)
	if err != nil {
		t.Fatal(err)
	}
	job := string(b)
	m := regexp.MustCompile(`(?s)sidecar_config = <<-EOF\n(.*?)\n\s*EOF\n`).FindStringSubmatch(job)
	if m == nil {
		t.Fatal("no sidecar_config heredoc in the job")
	}
	// <<-EOF strips the common indentation, as Nomad's HCL does.
	lines := strings.Split(m[1], "\n")
	indent := len(lines[0]) - len(strings.TrimLeft(lines[0], " "))
	for i, l := range lines {
		if len(l) >= indent {
			lines[i] = l[indent:]
		}
	}
	cfg, err := config.Parse(jobFile+" sidecar_config", []byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	cat, err := phase.Load("../phase/catalogue.yaml")
	if err != nil {
		t.Fatal(err)
	}

	env := regexp.MustCompile(`(?m)^\s+([A-Z0-9_]+_FILE)\s+= "([^"]+)"$`).FindAllStringSubmatch(job, -1)
	got := map[string]string{}
	for _, e := range env {
		got[e[1]] = e[2]
	}
	want := map[string]string{}
	for _, s := range cfg.Secrets {
		v, ok := cat.Variable(s.Name)
		if !ok || !slices.Contains(v.Containers, "backend") {
			t.Errorf("secret %s is not a catalogue variable of the backend", s.Name)
		}
		if !v.Example {
			t.Errorf("secret %s is not one of the catalogue's examples", s.Name)
		}
		want[cfg.EnvName(s)] = cfg.TargetPath(s)
	}
	for _, v := range cat.For("backend") {
		if v.Example && v.Kind == "secret" {
			if _, ok := want[v.Name+"_FILE"]; !ok {
				t.Errorf("the job's config lacks the catalogue example %s", v.Name)
			}
		}
	}
	if len(got) != len(want) {
		t.Errorf("backend env has %d *_FILE entries, the config writes %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("backend env %s = %q, the config writes %q", k, got[k], v)
		}
	}
	if cfg.Reload.Signal == nil || !strings.HasPrefix(cfg.Reload.Signal.PIDFile, "/alloc/") {
		t.Errorf("the reload must signal through a pid file in the shared /alloc dir")
	}
	if !strings.Contains(job, `GUNICORN_CMD_ARGS = "--pid `+cfg.Reload.Signal.PIDFile+`"`) {
		t.Errorf("gunicorn must write its pid to %s", cfg.Reload.Signal.PIDFile)
	}
}
