package reload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ChangedEnv is the environment variable that carries the changed secrets'
// names, comma-separated, to an exec command.
const ChangedEnv = "PHASE_SIDECAR_CHANGED"

// MaxOutput is how much of a command's combined output is logged.
const MaxOutput = 4 << 10

// Exec runs a command, without a shell, in its own process group. On
// timeout the whole group is killed. Its combined output goes to the log,
// truncated to MaxOutput bytes; it is never part of an error, since the
// error ends up in the status.
type Exec struct {
	argv    []string
	timeout time.Duration
	logger  *slog.Logger
}

var _ Notifier = (*Exec)(nil)

// NewExec builds the notifier; logger nil means slog.Default().
func NewExec(cfg ExecConfig, logger *slog.Logger) (*Exec, error) {
	// Kept although config refuses it too: the zero value has no argv[0].
	if len(cfg.Command) == 0 || cfg.Command[0] == "" {
		return nil, errors.New("reload: exec.command must name a program")
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Exec{argv: append([]string(nil), cfg.Command...), timeout: cfg.Timeout, logger: logger}, nil
}

func (e *Exec) target() string { return e.argv[0] }

// Check reports a program that cannot be found.
func (e *Exec) Check() error {
	if _, err := exec.LookPath(e.argv[0]); err != nil {
		return fmt.Errorf("exec: %q: %w", e.argv[0], err)
	}
	return nil
}

// Notify runs the command once and waits for it.
func (e *Exec) Notify(ctx context.Context, b Batch) error {
	if e.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, e.argv[0], e.argv[1:]...)
	cmd.Env = append(ChildEnv(os.Environ()), ChangedEnv+"="+strings.Join(b.Secrets, ","))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A grandchild that outlives the group kill must not hold Wait forever.
	cmd.WaitDelay = time.Second
	out := &capped{max: MaxOutput}
	cmd.Stdout, cmd.Stderr = out, out

	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	pid := 0
	if cmd.Process != nil {
		pid = cmd.Process.Pid
	}
	// The output is the app's business and may hold anything, so it is
	// logged at debug level only.
	if err != nil {
		e.logger.Warn("reload command failed (its output is logged at --log-level debug)", "path", e.argv[0], "pid", pid,
			"duration_seconds", d.Seconds())
	}
	e.logger.Debug("reload command finished", "path", e.argv[0], "pid", pid,
		"duration_seconds", d.Seconds(), "output", out.String())

	switch {
	case err == nil:
		return nil
	case ctx.Err() == context.DeadlineExceeded:
		return fmt.Errorf("exec: %q: killed after the %s timeout: %w", e.argv[0], e.timeout, context.DeadlineExceeded)
	default:
		var xerr *exec.ExitError
		if errors.As(err, &xerr) {
			return fmt.Errorf("exec: %q: %s", e.argv[0], describeExit(xerr.ProcessState))
		}
		return fmt.Errorf("exec: %q: %w", e.argv[0], err)
	}
}

// credentialEnv are the sidecar's own credentials, which the app and reload
// commands do not get.
var credentialEnv = []string{
	"VAULT_TOKEN",
	"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
	"AWS_CONTAINER_AUTHORIZATION_TOKEN", // ECS / EKS Pod Identity
}

// ChildEnv returns env without the sidecar's credentials.
func ChildEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(credentialEnv, name) {
			out = append(out, kv)
		}
	}
	return out
}

// describeExit says "exited with status N" or "killed by signal S".
func describeExit(ps *os.ProcessState) string {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "killed by signal " + ws.Signal().String()
	}
	return "exited with status " + strconv.Itoa(ps.ExitCode())
}

// capped keeps the first max bytes written to it and counts the rest. It
// never fails a write, so the command does not see a broken pipe.
type capped struct {
	mu    sync.Mutex
	max   int
	buf   []byte
	total int
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total += len(p)
	if room := c.max - len(c.buf); room > 0 {
		c.buf = append(c.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (c *capped) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := strings.TrimRight(strings.ToValidUTF8(string(c.buf), "?"), "\n")
	if c.total > len(c.buf) {
		s += fmt.Sprintf("…(truncated, %d bytes in all)", c.total)
	}
	return s
}
