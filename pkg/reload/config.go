package reload

import (
	"fmt"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/phase-sidecar/phase-sidecar/pkg/secret"
)

// Config says how the Reloader tells the app. It is taken as given: the
// file layer (pkg/config) applies the defaults and refuses what is invalid,
// so nothing here is defaulted again. Zero values are safe: they never
// panic or signal a process that was not named.
type Config struct {
	// At most one of Signal, HTTP and Exec is set (New takes the first);
	// with none, and no Options.Notifier, the Reloader is inert.
	Signal *SignalConfig
	HTTP   *HTTPConfig
	Exec   *ExecConfig
	// Coalesce is the quiet time after the latest change before the app is
	// told; MaxWait caps the wait after the first change (0: no cap).
	Coalesce, MaxWait time.Duration
	// OnInitialSync is what FirstSync does: OnInitialAuto (also ""),
	// OnInitialAlways or OnInitialNever.
	OnInitialSync string
	// Exclude names the secrets whose change never triggers a reload (the
	// per-secret opt-out).
	Exclude []string
}

// Latency is the longest the app's side of one change takes: the
// coalescing window, then the method's worst case (an HTTP reload whose
// every attempt times out, with the waits between them; an exec reload
// until its timeout). A lease or certificate is replaced at least this long
// before it expires (sources.Lead). A method without a timeout adds nothing.
func (c Config) Latency() time.Duration {
	d := c.Coalesce
	switch {
	case c.Signal != nil:
	case c.HTTP != nil:
		d += c.HTTP.latency()
	case c.Exec != nil:
		d += c.Exec.Timeout
	}
	return d
}

// Values of Config.OnInitialSync (reload.on_initial_sync).
const (
	OnInitialAuto   = "auto"
	OnInitialAlways = "always"
	OnInitialNever  = "never"
)

// SignalConfig sends a signal to a process found by pid file or by name.
type SignalConfig struct {
	Name    string // see ParseSignal; empty means SIGHUP
	PIDFile string
	Process string // executable name, or a pattern matched against the cmdline
}

// HTTPConfig calls a URL.
type HTTPConfig struct {
	URL     string
	Method  string                  // in capitals; empty means GET, as in net/http
	Headers map[string]secret.Value // may hold credentials: never printed
	// StatusMin and StatusMax are the accepted status range, inclusive.
	StatusMin, StatusMax int
	Timeout              time.Duration // bound of one request; 0: none beyond ctx
	Retries              int           // attempts after the first within one notification
}

// ExecConfig runs a command (no shell).
type ExecConfig struct {
	Command []string
	Timeout time.Duration // then the process group is killed; 0: no bound beyond ctx
}

// signalNames are the signals a reload may send: the one table, mapped to
// numbers with x/sys/unix.
var signalNames = []string{"SIGHUP", "SIGTERM", "SIGINT", "SIGUSR1", "SIGUSR2"}

// SignalNames returns the signals a reload may send, by their SIG… names.
func SignalNames() []string { return slices.Clone(signalNames) }

// CanonicalSignal returns name ("SIGHUP", "HUP", case-insensitive) in its
// SIG… form, and whether it is one of SignalNames.
func CanonicalSignal(name string) (string, bool) {
	n := strings.ToUpper(name)
	if !strings.HasPrefix(n, "SIG") {
		n = "SIG" + n
	}
	return n, slices.Contains(signalNames, n) && unix.SignalNum(n) != 0
}

// ParseSignal maps a signal name ("SIGHUP", "HUP", case-insensitive) to the
// signal; empty means SIGHUP. Only SignalNames are allowed; the numbers
// come from golang.org/x/sys/unix.
func ParseSignal(name string) (syscall.Signal, error) {
	if name == "" {
		return syscall.SIGHUP, nil
	}
	if n, ok := CanonicalSignal(name); ok {
		return unix.SignalNum(n), nil
	}
	return 0, fmt.Errorf("reload: signal %q is not one of %s", name, strings.Join(signalNames, ", "))
}
