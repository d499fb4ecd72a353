package reload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// DefaultStopTimeout is how long a supervised child has to exit after the
// stop signal before it is killed.
const DefaultStopTimeout = 10 * time.Second

// SupervisorOptions shape a Supervisor.
type SupervisorOptions struct {
	Logger *slog.Logger
	// Signal is sent to the child on change (default SIGHUP), unless
	// Restart is set: then the child is stopped and started again.
	Signal  string
	Restart bool
	// StopSignal stops the child on restart and on shutdown (default
	// SIGTERM); after StopTimeout (default 10s) it is killed.
	StopSignal  string
	StopTimeout time.Duration
	// Env is the child's environment (default os.Environ() without the
	// sidecar's credentials, see ChildEnv); Stdin, Stdout
	// and Stderr default to the sidecar's own.
	Env            []string
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// Supervisor runs the app as the sidecar's child (phase-sidecar run
// --config F -- app args…): started only after the first full sync, so its
// _FILE secrets exist; signalled or restarted on change; stopped with the
// sidecar. The child gets its own process group, so a terminal's ^C reaches
// it once, through Forward, and not twice.
type Supervisor struct {
	argv        []string
	env         []string
	sig         syscall.Signal
	restart     bool
	stopSig     syscall.Signal
	stopTimeout time.Duration
	stdin       io.Reader
	stdout      io.Writer
	stderr      io.Writer
	logger      *slog.Logger

	reaps sync.WaitGroup
	done  chan struct{}

	mu         sync.Mutex
	started    bool
	cmd        *exec.Cmd     // the running child; nil before Start and after the end
	exited     chan struct{} // closed when cmd has been reaped
	lastCode   int           // exit code of the last reaped child
	restarting bool          // the next exit is a restart's, not the end
	stopping   bool          // a stop was requested: the next exit is the end
	killTimer  *time.Timer
	stopAfter  func() bool // unregisters the ctx hook
	code       int
}

var _ Notifier = (*Supervisor)(nil)

// NewSupervisor checks argv and the options; nothing runs before Start.
func NewSupervisor(argv []string, o SupervisorOptions) (*Supervisor, error) {
	if len(argv) == 0 || argv[0] == "" {
		return nil, errors.New("supervise: no command given after --")
	}
	sig, err := ParseSignal(o.Signal)
	if err != nil {
		return nil, err
	}
	stopSig, err := ParseSignal(o.StopSignal)
	if err != nil {
		return nil, err
	}
	if o.StopSignal == "" {
		stopSig = syscall.SIGTERM
	}
	s := &Supervisor{
		argv: append([]string(nil), argv...), env: o.Env,
		sig: sig, restart: o.Restart, stopSig: stopSig, stopTimeout: o.StopTimeout,
		stdin: o.Stdin, stdout: o.Stdout, stderr: o.Stderr,
		logger: o.Logger, done: make(chan struct{}),
	}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	s.logger = s.logger.With("component", "supervise")
	if s.stopTimeout <= 0 {
		s.stopTimeout = DefaultStopTimeout
	}
	if s.env == nil {
		s.env = ChildEnv(os.Environ())
	}
	if s.stdin == nil {
		s.stdin = os.Stdin
	}
	if s.stdout == nil {
		s.stdout = os.Stdout
	}
	if s.stderr == nil {
		s.stderr = os.Stderr
	}
	return s, nil
}

// Start starts the child; call it once, after the first full sync. When
// ctx is done the child is stopped (stop signal, then SIGKILL).
func (s *Supervisor) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("supervise: already started")
	}
	s.started = true
	if s.stopping {
		return errors.New("supervise: stopped before the app was started")
	}
	if err := s.spawn(); err != nil {
		s.finish(127)
		return err
	}
	s.stopAfter = context.AfterFunc(ctx, s.stop)
	return nil
}

// forwarded are the sidecar's signals that ForwardSignals passes on.
// SIGHUP and SIGQUIT too: the child has its own process group, so a signal
// that would end the sidecar must not leave it orphaned.
var forwarded = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT}

// ForwardSignals passes the sidecar's SIGTERM, SIGINT, SIGHUP and SIGQUIT
// to the child (see Forward) instead of letting them end the sidecar, from
// now until stop, and returns a copy of parent that is done when the child
// has exited for good: the sidecar runs under it and ends with its app.
// Call it before anything that may take a while (loading sources), so a
// signal is never the sidecar's alone.
func (s *Supervisor) ForwardSignals(parent context.Context) (ctx context.Context, stop context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	sigc := make(chan os.Signal, 4)
	signal.Notify(sigc, forwarded...)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case sig := <-sigc:
				if err := s.Forward(sig); err != nil {
					s.logger.Warn("forwarding a signal to the app failed", "signal", sig.String(), "err", err)
				}
			case <-s.done:
				cancel()
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return ctx, func() {
		signal.Stop(sigc)
		cancel()
		wg.Wait()
	}
}

// Run is the supervised app's part of the sidecar: it starts the child
// once ready is closed (the first full sync: its _FILE secrets exist) and
// returns when the child has exited for good. When ctx ends first (the
// sidecar failed, or it was told to stop before the app started) the child
// is stopped, never left behind: the stop signal, then SIGKILL after the
// stop timeout; one not started yet never starts. Run returns nil: the
// app's end, a failed start included (127), is its exit code, from Wait.
func (s *Supervisor) Run(ctx context.Context, ready <-chan struct{}) error {
	select {
	case <-ready:
	case <-ctx.Done():
	}
	// select picks at random when both are done: a sidecar that is
	// stopping does not start the app because its first sync completed.
	if ctx.Err() == nil {
		if err := s.Start(ctx); err != nil {
			s.logger.Error("cannot start the app", "path", s.argv[0], "err", err)
		}
	}
	select {
	case <-s.done:
	case <-ctx.Done():
		s.stop()
	}
	s.Wait()
	return nil
}

// stop ends supervision from the sidecar's side: the first stop sends the
// stop signal to a running child, or ends a child never started; the ones
// after (Run and Start's ctx hook both stop) send nothing more.
func (s *Supervisor) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.done:
		return // the child has ended already
	default:
	}
	if !s.stopping {
		_ = s.forward(s.stopSig)
	}
}

// spawn needs s.mu.
func (s *Supervisor) spawn() error {
	cmd := exec.Command(s.argv[0], s.argv[1:]...)
	cmd.Env = s.env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s.stdin, s.stdout, s.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("supervise: start %q: %w", s.argv[0], err)
	}
	exited := make(chan struct{})
	s.cmd, s.exited = cmd, exited
	s.logger.Info("app started", "path", s.argv[0], "pid", cmd.Process.Pid)
	s.reaps.Add(1)
	go s.reap(cmd, exited)
	return nil
}

func (s *Supervisor) reap(cmd *exec.Cmd, exited chan struct{}) {
	defer s.reaps.Done()
	_ = cmd.Wait()
	code := exitCode(cmd.ProcessState)
	s.logger.Info("app exited", "pid", cmd.Process.Pid, "err", describeExit(cmd.ProcessState))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastCode = code
	close(exited)
	if s.cmd == cmd {
		s.cmd = nil
		if !s.restarting {
			s.finish(code)
		}
	}
}

// finish needs s.mu.
func (s *Supervisor) finish(code int) {
	select {
	case <-s.done:
		return
	default:
	}
	s.code = code
	if s.killTimer != nil {
		s.killTimer.Stop()
	}
	if s.stopAfter != nil {
		s.stopAfter()
	}
	close(s.done)
}

// Notify signals the child, or restarts it. Before Start, and while
// stopping, there is nobody to tell: the child reads fresh files when it
// starts.
func (s *Supervisor) Notify(ctx context.Context, _ Batch) error {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	if cmd == nil || s.stopping {
		s.mu.Unlock()
		return nil
	}
	if !s.restart {
		s.mu.Unlock()
		if err := cmd.Process.Signal(s.sig); err != nil {
			return fmt.Errorf("supervise: signal pid %d: %w", cmd.Process.Pid, err)
		}
		s.logger.Info("signal sent", "signal", signalName(s.sig), "pid", cmd.Process.Pid)
		return nil
	}
	s.restarting = true
	s.mu.Unlock()

	s.logger.Info("restarting app", "signal", signalName(s.stopSig), "pid", cmd.Process.Pid)
	_ = cmd.Process.Signal(s.stopSig)
	t := time.NewTimer(s.stopTimeout)
	select {
	case <-exited:
		t.Stop()
	case <-t.C:
		_ = cmd.Process.Kill()
		<-exited
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.restarting = false
	if s.stopping || ctx.Err() != nil {
		s.finish(s.lastCode)
		return nil
	}
	if err := s.spawn(); err != nil {
		s.finish(127)
		return err
	}
	return nil
}

// Forward passes sig to the child (the sidecar's SIGTERM, SIGINT, …). A
// terminating signal makes the child's next exit the end: Wait returns its
// code, and if it has not exited after the stop timeout it is killed.
func (s *Supervisor) Forward(sig os.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.forward(sig)
}

// forward needs s.mu.
func (s *Supervisor) forward(sig os.Signal) error {
	if sig == syscall.SIGTERM {
		sig = s.stopSig // the app's own way to stop, like a restart uses
	}
	terminating := sig == syscall.SIGTERM || sig == syscall.SIGINT || sig == syscall.SIGQUIT || sig == s.stopSig
	if terminating && !s.stopping {
		s.stopping = true
		if !s.started {
			if ss, ok := sig.(syscall.Signal); ok {
				s.finish(128 + int(ss))
			} else {
				s.finish(1)
			}
			return nil
		}
		s.killTimer = time.AfterFunc(s.stopTimeout, s.kill)
	}
	if s.cmd == nil {
		return nil
	}
	if err := s.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("supervise: forward %s to pid %d: %w", sig, s.cmd.Process.Pid, err)
	}
	return nil
}

func (s *Supervisor) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.logger.Warn("app did not stop in time, killing it", "pid", s.cmd.Process.Pid)
		_ = s.cmd.Process.Kill()
	}
}

// PID is the running child's pid, or 0.
func (s *Supervisor) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Done is closed when the child has exited for good (not for a restart).
func (s *Supervisor) Done() <-chan struct{} { return s.done }

// Wait blocks until the child has exited for good and returns its exit
// code (128+N when killed by signal N), for the sidecar to exit with.
func (s *Supervisor) Wait() int {
	<-s.done
	s.reaps.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.code
}

func exitCode(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}
