// Package servers starts the real servers integration tests talk to — moto,
// the EC2 metadata mock, a Vault dev server — on 127.0.0.1 free ports and
// stops them with t.Cleanup. Their binaries come from test/testenv.Tool, so
// a missing one skips the test locally and fails it under CI.
//
// A server that a package's tests share (started once, stopped after the
// last test) is started with Shared.T, whose cleanups run in TestMain.
package servers

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// How long a server may take to come up: readiness deadlines, not speed
// assertions.
const (
	httpReadyWithin  = time.Minute
	vaultReadyWithin = 2 * time.Minute
)

// Process starts name with args, env added to the environment, and its
// output in logFile; t's cleanup kills it.
func Process(t testing.TB, logFile string, env []string, name string, args ...string) *exec.Cmd {
	t.Helper()
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		f.Close()
	})
	return cmd
}

// WaitHTTP polls try until it succeeds. A server that is not up within a
// minute fails the test with what it logged.
func WaitHTTP(t testing.TB, what, logFile string, try func() error) {
	t.Helper()
	waitUp(t, what, logFile, httpReadyWithin, nil, try)
}

// waitUp is WaitHTTP with a deadline of within and the log passed through
// redact (when not nil) before it is printed.
func waitUp(t testing.TB, what, logFile string, within time.Duration, redact func(string) string, try func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := try()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready: %v\n%s", what, err, readLog(logFile, redact))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func readLog(logFile string, redact func(string) string) string {
	b, err := os.ReadFile(logFile)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if redact != nil {
		return redact(string(b))
	}
	return string(b)
}

// Shared holds the servers a package's tests share. Its zero value is
// ready; TestMain calls Stop after m.Run.
type Shared struct {
	mu    sync.Mutex
	stops []func()
}

// T returns t with its cleanups (and its TempDir's removal) put off until
// Stop: a server started with it outlives the test that starts it.
func (s *Shared) T(t testing.TB) testing.TB { return sharedT{TB: t, s: s} }

// Stop stops the shared servers, last started first.
func (s *Shared) Stop() {
	s.mu.Lock()
	stops := s.stops
	s.stops = nil
	s.mu.Unlock()
	for i := len(stops) - 1; i >= 0; i-- {
		stops[i]()
	}
}

type sharedT struct {
	testing.TB
	s *Shared
}

func (st sharedT) Cleanup(f func()) {
	st.s.mu.Lock()
	defer st.s.mu.Unlock()
	st.s.stops = append(st.s.stops, f)
}

func (st sharedT) TempDir() string {
	st.Helper()
	dir, err := os.MkdirTemp("", "phase-shared-"+strings.NewReplacer("/", "-").Replace(st.Name())+"-")
	if err != nil {
		st.Fatal(err)
	}
	st.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Logf runs from Stop, after the test that started the server has ended.
func (st sharedT) Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}
