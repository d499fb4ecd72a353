package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSlimBuild: a binary built without the Vault and AWS sources
// (-tags novault,noaws) rejects their refs with a clear error at validate
// time and still syncs files.
func TestSlimBuild(t *testing.T) {
	slim := filepath.Join(t.TempDir(), "phase-sidecar-slim")
	if out, err := exec.Command("go", "build", "-tags", "novault,noaws", "-o", slim, "../../cmd/phase-sidecar").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	src, out := t.TempDir(), shm(t)
	writeFile(t, filepath.Join(src, "a"), value("a"))
	cfg, _ := writeConfig(t, out, `secrets:
  - name: V
    ref: vault://secret/app#k
  - name: S
    ref: aws-sm://prod/app#k
sources:
  vault: { address: "http://127.0.0.1:1" }
`)
	o, err := exec.Command(slim, "validate", "--config", cfg).CombinedOutput()
	noCanary(t, "slim validate output", string(o))
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 ||
		!strings.Contains(string(o), "built without the Vault source") || !strings.Contains(string(o), "built without the AWS source") {
		t.Fatalf("slim validate = %v:\n%s", err, o)
	}
	files, _ := writeConfig(t, out, "secrets:\n  - name: A\n    ref: file://"+src+"/a\n")
	o, err = exec.Command(slim, "once", "--config", files, "--log-level", "debug").CombinedOutput()
	noCanary(t, "slim once output", string(o))
	if err != nil {
		t.Fatalf("slim once: %v\n%s", err, o)
	}
	waitFile(t, filepath.Join(out, "a"), value("a"))
}
