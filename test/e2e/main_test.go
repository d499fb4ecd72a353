// Package e2e runs the built phase-sidecar binary as a process against real
// directories, HTTP clients and promtool.
package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "phase-sidecar-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Other uids run it too (startAs with nobody).
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "phase-sidecar")
	// The race detector watches the daemon too.
	build := exec.Command("go", "build", "-race", "-o", binary, "../../cmd/phase-sidecar")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build phase-sidecar:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// canary marks every secret value the e2e tests use; none may ever appear in
// logs, metrics, status, errors or env output.
const canary = "CANARY-e2e-7c1f"

func value(s string) string { return canary + "-" + s }

// shm returns a fresh directory on tmpfs.
func shm(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("/dev/shm", "phase-sidecar-e2e-")
	if err != nil {
		testenv.Missing(t, "/dev/shm not usable: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// sidecar is a running phase-sidecar process.
type sidecar struct {
	t    *testing.T
	cmd  *exec.Cmd
	addr string
	out  *testenv.Buffer
	done chan struct{} // closed once the process has exited and been reaped
}

// writeConfig writes a config whose output goes to out and whose HTTP
// listens on a free port; body holds the secrets: section and the rest.
func writeConfig(t *testing.T, out, body string) (path, addr string) {
	t.Helper()
	addr = testenv.Addr(t)
	path = filepath.Join(t.TempDir(), "config.yaml")
	cfg := fmt.Sprintf("output:\n  dir: %s\nlisten: %q\n%s", out, addr, body)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, addr
}

// start runs `phase-sidecar run` at debug level and checks, when the test
// ends, that no canary value reached its output, /metrics or /v1/status.
func start(t *testing.T, config, addr string, extra ...string) *sidecar {
	t.Helper()
	return startAs(t, nil, config, addr, extra...)
}

// startAs is start with the process attributes attr (nil: none), e.g. to
// run the sidecar as another uid.
func startAs(t *testing.T, attr *syscall.SysProcAttr, config, addr string, extra ...string) *sidecar {
	t.Helper()
	s := &sidecar{t: t, addr: addr, out: &testenv.Buffer{}, done: make(chan struct{})}
	args := append([]string{"run", "--config", config, "--log-level", "debug"}, extra...)
	s.cmd = exec.Command(binary, args...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.SysProcAttr = attr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		if !s.exited() {
			s.scrapeForLeaks()
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-s.done:
			case <-time.After(20 * time.Second):
				_ = s.cmd.Process.Kill()
				<-s.done
			}
		}
		noCanary(t, "log output", s.out.String())
		if t.Failed() {
			t.Logf("sidecar output:\n%s", s.out.String())
		}
	})
	return s
}

func (s *sidecar) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// scrapeForLeaks fetches /metrics and /v1/status, which get checks for
// canaries, from a sidecar still running: the last look before it stops,
// after everything the test did.
func (s *sidecar) scrapeForLeaks() {
	s.t.Helper()
	for _, path := range []string{"/metrics", "/v1/status"} {
		// A test that failed early may not have a server up; do not pile on.
		if code, body := s.get(path); code != 200 && !s.t.Failed() && !s.exited() {
			s.t.Errorf("GET %s before stopping = %d %s; the leak check needs it", path, code, body)
		}
	}
}

func noCanary(t *testing.T, where, text string) {
	t.Helper()
	if strings.Contains(text, canary) {
		t.Errorf("a secret value leaked into %s", where)
	}
}

// client bounds every request so that a hung sidecar fails a test instead
// of stalling it.
var client = &http.Client{Timeout: 10 * time.Second}

// get fetches an endpoint; the body is checked for canaries.
func (s *sidecar) get(path string) (int, string) {
	s.t.Helper()
	resp, err := client.Get("http://" + s.addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	noCanary(s.t, path, string(b))
	return resp.StatusCode, string(b)
}

// eventually polls cond until it holds or the (generous) deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	eventuallyWithin(t, 20*time.Second, what, cond)
}

func eventuallyWithin(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *sidecar) waitReady() {
	s.t.Helper()
	eventually(s.t, "/readyz 200", func() bool { c, _ := s.get("/readyz"); return c == 200 })
}

// waitFile waits until path holds want.
func waitFile(t *testing.T, path, want string) {
	t.Helper()
	eventually(t, fmt.Sprintf("%s to hold the new value", filepath.Base(path)), func() bool {
		b, err := os.ReadFile(path)
		return err == nil && string(b) == want
	})
}

// stop sends SIGTERM and returns the exit code.
func (s *sidecar) stop() int {
	s.t.Helper()
	return s.stopWith(syscall.SIGTERM)
}

// stopWith checks the endpoints for leaks, sends sig and returns the exit
// code.
func (s *sidecar) stopWith(sig syscall.Signal) int {
	s.t.Helper()
	s.scrapeForLeaks()
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		s.t.Fatalf("no exit within 20s of %v", sig)
	}
	return s.cmd.ProcessState.ExitCode()
}

// runCmd runs a one-shot subcommand and returns its exit code and output,
// which is checked for canaries; `once` runs at debug level, so that its
// most talkative output is the one checked.
func runCmd(t *testing.T, args ...string) (int, string) {
	t.Helper()
	if args[0] == "once" && !slices.Contains(args, "--log-level") {
		args = append([]string{"once", "--log-level", "debug"}, args[1:]...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	out, err := cmd.CombinedOutput()
	noCanary(t, strings.Join(args[:1], " ")+" output", string(out))
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		t.Fatal(err)
	}
	return 0, string(out)
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
