package e2e

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// counter builds and starts test/apps/sighup-counter, which prints one line
// per SIGHUP.
type counter struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
}

var counterBin = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "sighup-counter-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "sighup-counter")
	out, err := exec.Command("go", "build", "-o", bin, "../apps/sighup-counter").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build sighup-counter: %v\n%s", err, out)
	}
	return bin, nil
})

func buildCounter(t *testing.T) string {
	t.Helper()
	bin, err := counterBin()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func startCounter(t *testing.T, args ...string) *counter {
	t.Helper()
	c := &counter{cmd: exec.Command(buildCounter(t), args...)}
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go c.read(out)
	t.Cleanup(func() { _ = c.cmd.Process.Kill(); _ = c.cmd.Wait() })
	eventually(t, "the counter to be ready", func() bool { return c.count("ready") == 1 })
	return c
}

func (c *counter) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		c.mu.Lock()
		c.lines = append(c.lines, sc.Text())
		c.mu.Unlock()
	}
}

func (c *counter) count(prefix string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, l := range c.lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

// TestSignalOncePerBatch: three secrets of one kubelet volume rotate
// together → exactly one SIGHUP to the app found by its pid file; none after
// the initial sync.
func TestSignalOncePerBatch(t *testing.T) {
	src, out := t.TempDir(), shm(t)
	pidFile := filepath.Join(t.TempDir(), "app.pid")
	app := startCounter(t, "-pid-file", pidFile)
	files := func(gen int) map[string]string {
		return map[string]string{"a": value(fmt.Sprint("a", gen)), "b": value(fmt.Sprint("b", gen)), "c": value(fmt.Sprint("c", gen))}
	}
	vol := newKubeletVolume(t, filepath.Join(src, "vol"), files(1))
	cfg, addr := writeConfig(t, out, fmt.Sprintf(`refresh: 1h
secrets:
  - name: A
    ref: file://%[1]s/vol/a
  - name: B
    ref: file://%[1]s/vol/b
  - name: C
    ref: file://%[1]s/vol/c
reload:
  signal:
    pid_file: %[2]s
  coalesce: 200ms
  # The app runs before the first sync: auto would tell it once then.
  on_initial_sync: never
`, src, pidFile))
	s := start(t, cfg, addr)
	s.waitReady()
	vol.update(files(2))
	waitFile(t, filepath.Join(out, "c"), value("c2"))
	eventually(t, "one SIGHUP", func() bool { return app.count("hup") >= 1 })
	eventually(t, "the reload to be reported", func() bool {
		_, m := s.get("/metrics")
		return strings.Contains(m, `phase_sidecar_reloads_total{method="signal",result="success"} 1`)
	})
	if n := app.count("hup"); n != 1 {
		t.Fatalf("the app got %d SIGHUPs for one batch, want 1 (none for the initial sync)", n)
	}
	_, st := s.get("/v1/status")
	if !strings.Contains(st, `"method": "signal"`) {
		t.Errorf("status lacks the reload section:\n%s", st)
	}
}

// TestSupervise: the app starts after the first sync, is signalled on change,
// gets SIGTERM forwarded, and its exit code becomes the sidecar's.
func TestSupervise(t *testing.T) {
	src, out := t.TempDir(), shm(t)
	a := filepath.Join(src, "a")
	writeFile(t, a, value("1"))
	cfg, addr := writeConfig(t, out, fmt.Sprintf("refresh: 1h\nsecrets:\n  - name: ALPHA\n    ref: file://%s\nreload:\n  coalesce: 100ms\n", a))
	s := start(t, cfg, addr, "--", buildCounter(t), "-exit-code", "7")
	eventually(t, "the app to start", func() bool { return strings.Contains(s.out.String(), "ready ") })
	log := s.out.String()
	if strings.Index(log, "every required secret is written") > strings.Index(log, "app started") {
		t.Fatalf("the app started before the first sync:\n%s", log)
	}
	writeFile(t, a+".new", value("2"))
	if err := os.Rename(a+".new", a); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the app to get SIGHUP", func() bool { return strings.Contains(s.out.String(), "hup 1") })
	// A SIGHUP to the sidecar is passed on, not fatal: the app must never be
	// orphaned by a signal that would end the sidecar.
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the forwarded SIGHUP", func() bool { return strings.Contains(s.out.String(), "hup 2") })
	if code := s.stop(); code != 7 {
		t.Fatalf("sidecar exit %d, want the app's 7", code)
	}
	if !strings.Contains(s.out.String(), "term terminated") {
		t.Errorf("SIGTERM was not forwarded to the app:\n%s", s.out.String())
	}
}

// TestSuperviseAppExit: an app that exits by itself ends the sidecar with
// its code.
func TestSuperviseAppExit(t *testing.T) {
	src, out := t.TempDir(), shm(t)
	writeFile(t, filepath.Join(src, "a"), value("1"))
	cfg, addr := writeConfig(t, out, fmt.Sprintf("secrets:\n  - name: ALPHA\n    ref: file://%s/a\n", src))
	s := start(t, cfg, addr, "--", "/bin/sh", "-c", "test -s \"$0\" && exit 3; exit 4", filepath.Join(out, "alpha"))
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the sidecar did not exit after its app did")
	}
	if code := s.cmd.ProcessState.ExitCode(); code != 3 {
		t.Fatalf("sidecar exit %d, want 3 (the app saw its secret file)", code)
	}
}
