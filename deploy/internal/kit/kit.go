// Package kit holds what the deploy kit's tests share: where the checkout
// is, building the phase-sidecar binary, and strict YAML decoding.
package kit

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/phase-sidecar/phase-sidecar/test/testenv"
	"go.yaml.in/yaml/v3"
)

// Root is the checkout's root directory (the main module).
func Root(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("kit: no caller information")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

// Deploy is the deploy/ directory.
func Deploy(t testing.TB) string { return filepath.Join(Root(t), "deploy") }

// Version is the version stamped into binaries the tests build.
const Version = "v0.0.0-deploytest"

// BuildSidecar builds cmd/phase-sidecar as a static binary into dir, with
// the version stamped through -ldflags as the Dockerfile does, and returns
// its path.
func BuildSidecar(t testing.TB, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "phase-sidecar")
	cmd := exec.Command("go", "build", "-trimpath",
		"-ldflags", "-s -w -X main.version="+Version+" -X main.revision=deploytest",
		"-o", out, "./cmd/phase-sidecar")
	cmd.Dir = Root(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/phase-sidecar: %v\n%s", err, b)
	}
	return out
}

// Run runs a command and returns its combined output, failing the test on
// a non-zero exit.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, b)
	}
	return string(b)
}

// DecodeStrict decodes one YAML document into v, rejecting unknown keys.
func DecodeStrict(b []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	return dec.Decode(v)
}

// WaitHTTP polls url until it answers 200 or ctx ends.
func WaitHTTP(ctx context.Context, url string) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w (last: %v)", url, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// TmpfsDir returns a fresh directory on a tmpfs (/dev/shm), removed when
// the test ends; the sidecar refuses disk-backed output directories.
func TmpfsDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "phase-sidecar-deploy-")
	if err != nil {
		testenv.Missing(t, "no tmpfs at /dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Start runs a long-lived process for the test; it is interrupted and
// waited for when the test ends, and its output is logged if the test
// failed.
func Start(t testing.TB, ctx context.Context, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	logf, err := os.CreateTemp(t.TempDir(), filepath.Base(name)+"-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("%s output:\n%s", filepath.Base(name), b)
		}
	})
	return cmd
}

// FileSecretConfig writes a sidecar config that serves one file secret
// (DATABASE_PASSWORD from src) into out, listening on listen, and returns
// its path.
func FileSecretConfig(t testing.TB, dir, out, listen, src, extra string) string {
	t.Helper()
	path := filepath.Join(dir, "phase-sidecar.yaml")
	cfg := fmt.Sprintf("output:\n  dir: %s\nlisten: %q\nsecrets:\n  - name: DATABASE_PASSWORD\n    ref: file://%s\n%s", out, listen, src, extra)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// WriteFile writes content to path or fails the test.
func WriteFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
