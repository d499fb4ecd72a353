package fleet

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Sidecar runs `phase-sidecar run`, one process per pod.
type Sidecar struct {
	Bin string // the built binary
}

var _ Client = Sidecar{}

func (Sidecar) Name() string { return "phase-sidecar" }

func (s Sidecar) Command(t testing.TB, b Backend, p Pod, o Options, proxyURL string) *exec.Cmd {
	t.Helper()
	var y strings.Builder
	fmt.Fprintf(&y, "output:\n  dir: %s\n", p.Out)
	if p.Disk {
		y.WriteString("  allow_disk: true\n")
	}
	fmt.Fprintf(&y, "listen: \"127.0.0.1:0\"\nrefresh: %s\n", o.Refresh)
	y.WriteString(b.Sources(proxyURL))
	y.WriteString("secrets:\n")
	for j := range o.Paths {
		fmt.Fprintf(&y, "  - name: P%d\n    file: %s\n    ref: %q\n", j, File(j), b.Ref(p.I, j))
	}
	cfg := filepath.Join(p.Dir, "phase-sidecar.yaml")
	writeFile(t, cfg, y.String())
	cmd := exec.Command(s.Bin, "run", "--config", cfg, "--log-level", "info")
	cmd.Env = env(b.Env(proxyURL))
	return cmd
}

// Agent runs `vault agent` with one template per path, rendered every
// Options.Refresh, logging in with the same AppRole role as the sidecars.
// It reads from a Vault backend only.
type Agent struct {
	Bin string // the vault binary
}

var _ Client = Agent{}

func (Agent) Name() string { return "vault-agent" }

func (a Agent) Command(t testing.TB, b Backend, p Pod, o Options, proxyURL string) *exec.Cmd {
	t.Helper()
	v, ok := b.(*Vault)
	if !ok {
		t.Fatalf("vault agent reads from vault, not %s", b.Name())
	}
	var h strings.Builder
	fmt.Fprintf(&h, "vault {\n  address = %q\n}\n", proxyURL)
	fmt.Fprintf(&h, "auto_auth {\n  method \"approle\" {\n    config = {\n      role_id_file_path = %q\n      secret_id_file_path = %q\n      remove_secret_id_file_after_reading = false\n    }\n  }\n}\n",
		v.roleIDFile, v.secretIDFile)
	fmt.Fprintf(&h, "template_config {\n  static_secret_render_interval = %q\n}\n", o.Refresh.String())
	for j := range o.Paths {
		contents := fmt.Sprintf(`{{ with secret "secret/data/%s" }}{{ .Data.data.value }}{{ end }}`, strings.TrimPrefix(v.KVPath(p.I, j), "secret/"))
		fmt.Fprintf(&h, "template {\n  contents = %q\n  destination = %q\n}\n", contents, filepath.Join(p.Out, File(j)))
	}
	cfg := filepath.Join(p.Dir, "agent.hcl")
	writeFile(t, cfg, h.String())
	cmd := exec.Command(a.Bin, "agent", "-config="+cfg, "-log-level=info")
	cmd.Env = env(append(b.Env(proxyURL), "HOME="+p.Dir))
	return cmd
}
