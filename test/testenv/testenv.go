// Package testenv finds the real servers and tools that integration tests
// need. test/ci.sh installs or builds them and exports their paths; outside
// CI a missing tool skips the test, under CI it fails it.
package testenv

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"

	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// CI reports whether the tests run under CI (CI set and not "false").
func CI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "false" && v != "0"
}

// Tool returns the path of an external tool: the value of envVar if set, or
// else name looked up on PATH (when name is not empty). When neither gives
// an executable the test is skipped, or failed under CI.
func Tool(t testing.TB, envVar, name string) string {
	t.Helper()
	if p := os.Getenv(envVar); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
		Missing(t, "%s=%s does not exist", envVar, p)
	}
	if name != "" {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	Missing(t, "%s is not set and %q is not on PATH; run test/ci.sh, which installs it", envVar, name)
	return ""
}

// Missing skips the test, or fails it under CI, where a missing server or
// tool is a failure.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if CI() {
		t.Fatalf("CI: required test dependency missing: "+format, args...)
	}
	t.Skipf("skipped, dependency missing: "+format, args...)
}

// FreePort returns a free TCP port on 127.0.0.1.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Addr returns "127.0.0.1:PORT" for a free port.
func Addr(t testing.TB) string {
	return "127.0.0.1:" + strconv.Itoa(FreePort(t))
}

// Ref parses a ref the test knows to be valid.
func Ref(t testing.TB, s string) sources.Ref {
	t.Helper()
	r, err := sources.ParseRef(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Reveal selects field from a fetched object and returns its plaintext.
func Reveal(t testing.TB, o sources.Object, field string) string {
	t.Helper()
	v, err := o.Select(field)
	if err != nil {
		t.Fatalf("select %q: %v", field, err)
	}
	return string(v.Reveal())
}

// Buffer is an io.Writer that goroutines may write while a test reads it:
// the target of a logger or of a child process's output.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
