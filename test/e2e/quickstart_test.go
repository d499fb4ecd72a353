package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

// TestQuickstart runs examples/quickstart.sh the way the README tells a
// newcomer to, on a free port, and stops it the way Ctrl-C in a job-control
// shell would: a signal to the whole process group (the script's `go run`
// and the sidecar it builds).
func TestQuickstart(t *testing.T) {
	// Its own directory, so a developer's quickstart (in the default
	// /dev/shm/phase-sidecar-quickstart) is never touched.
	quickstartBase := shm(t)
	script, err := filepath.Abs("../../examples/quickstart.sh")
	if err != nil {
		t.Fatal(err)
	}
	addr := testenv.Addr(t)
	out := &testenv.Buffer{}
	cmd := exec.Command(script, "--listen", addr) // the script passes "$@" to run
	cmd.Env = append(os.Environ(), "PHASE_QUICKSTART_DIR="+quickstartBase)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-pgid, syscall.SIGKILL) // whatever is left of the group
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Errorf("the quickstart script did not exit after SIGKILL")
		}
		if t.Failed() {
			t.Logf("quickstart output:\n%s", out.String())
		}
	})

	// `go run` compiles the sidecar first, without a warm cache in a fresh
	// clone: minutes on a small machine.
	s := &sidecar{t: t, addr: addr}
	dir := filepath.Join(quickstartBase, "out")
	eventuallyWithin(t, 5*time.Minute, "the quickstart to be ready", func() bool {
		select {
		case <-done:
			t.Fatalf("the quickstart exited before it was ready:\n%s", out.String())
		default:
		}
		c, _ := s.get("/readyz")
		return c == 200
	})
	// Each target holds its seeded source, database_password without the
	// trailing newline (newline: strip).
	for name, source := range map[string]string{
		"database_password": "database_password",
		"redis_password":    "redis/password",
		"redis_username":    "redis/username",
		"secret_key":        "secret_key",
	} {
		want, err := os.ReadFile(filepath.Join(quickstartBase, "source", source))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || len(got) == 0 || !bytes.Equal(got, bytes.TrimSuffix(want, []byte("\n"))) {
			t.Errorf("quickstart target %s does not hold its seeded source (err %v)", name, err)
		}
	}
	if c, m := s.get("/metrics"); c != 200 || !strings.Contains(m, "phase_sidecar_build_info") {
		t.Errorf("/metrics = %d, no phase_sidecar_build_info", c)
	}

	if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the quickstart script did not exit within 20s of SIGTERM")
	}
	// The script's `go run` dies of the signal; the sidecar, its child,
	// stops by itself and says so.
	eventually(t, "every process of the quickstart to exit", func() bool {
		return errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH)
	})
	if !strings.Contains(out.String(), "stopped; files stay in place") {
		t.Errorf("the sidecar did not log its clean stop")
	}
	if _, err := os.Stat(filepath.Join(dir, "secret_key")); err != nil {
		t.Errorf("targets gone after the quickstart stopped: %v", err)
	}
}
