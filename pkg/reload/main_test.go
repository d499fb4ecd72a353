package reload

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

// helperEnv makes the test binary act as a helper process instead of
// running tests: the signaller inside a PID namespace, or as another uid.
const helperEnv = "PHASE_RELOAD_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode))
	}
	code := m.Run()
	if appDir != "" {
		_ = os.RemoveAll(appDir)
	}
	os.Exit(code)
}

var (
	appOnce sync.Once
	appDir  string
	appPath string
	appErr  error
)

// counterApp builds test/apps/sighup-counter once per test binary.
func counterApp(t testing.TB) string {
	t.Helper()
	appOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			appErr = fmt.Errorf("go not on PATH: %w", err)
			return
		}
		if appDir, appErr = os.MkdirTemp("", "reload-apps-"); appErr != nil {
			return
		}
		// Other uids run the app in some tests.
		if appErr = os.Chmod(appDir, 0o755); appErr != nil {
			return
		}
		appPath = filepath.Join(appDir, "sighup-counter")
		cmd := exec.Command(goBin, "build", "-o", appPath, "github.com/phase-sidecar/phase-sidecar/test/apps/sighup-counter")
		if out, err := cmd.CombinedOutput(); err != nil {
			appErr = fmt.Errorf("go build sighup-counter: %v\n%s", err, out)
		}
	})
	if appErr != nil {
		t.Fatal(appErr)
	}
	return appPath
}

// counter is a running sighup-counter whose stdout lines arrive on lines.
type counter struct {
	cmd   *exec.Cmd
	pid   int
	lines chan string
}

// startCounter starts the app and waits for its "ready" line.
func startCounter(t testing.TB, attr *syscall.SysProcAttr, args ...string) *counter {
	t.Helper()
	return startCounterAt(t, counterApp(t), attr, args...)
}

// startCounterAt starts the counter app from path: a copy under a name of
// the test's own, for tests that find it by name while other packages' tests
// run sighup-counter processes on the same machine.
func startCounterAt(t testing.TB, path string, attr *syscall.SysProcAttr, args ...string) *counter {
	t.Helper()
	cmd := exec.Command(path, args...)
	cmd.SysProcAttr = attr
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &counter{cmd: cmd, pid: cmd.Process.Pid, lines: readLines(out)}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	c.expect(t, "ready")
	return c
}

// readLines delivers r's lines on a channel, closed at EOF.
func readLines(r io.Reader) chan string {
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return lines
}

// expect waits for the next line and checks its prefix. The deadline only
// turns a hang into a failure; nothing is measured.
func (c *counter) expect(t testing.TB, prefix string) string {
	t.Helper()
	return expectLine(t, c.lines, prefix)
}

func expectLine(t testing.TB, lines <-chan string, prefix string) string {
	t.Helper()
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatalf("output ended, want a line starting %q", prefix)
		}
		if !strings.HasPrefix(l, prefix) {
			t.Fatalf("line %q, want prefix %q", l, prefix)
		}
		return l
	case <-time.After(time.Minute):
		t.Fatalf("no line starting %q within a minute", prefix)
	}
	return ""
}

func newLogger() (*slog.Logger, *testenv.Buffer) {
	b := &testenv.Buffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// runReloader runs r until the test ends and checks Run's result.
func runReloader(t testing.TB, r *Reloader) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
