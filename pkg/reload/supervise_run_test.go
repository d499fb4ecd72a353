package reload

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runSupervisor runs s.Run(ctx, ready) and returns its result channel.
func runSupervisor(ctx context.Context, s *Supervisor, ready <-chan struct{}) <-chan error {
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, ready) }()
	return done
}

func runResult(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run did not return within a minute")
	}
}

// TestSuperviseRun: Run starts the app once ready is closed and returns
// when it has exited for good; when the sidecar's context ends first the
// app is stopped with the stop signal, or, not started yet, never starts.
func TestSuperviseRun(t *testing.T) {
	app := counterApp(t)
	tests := []struct {
		name  string
		argv  []string
		ready bool // close ready
		// then wait for this line (if any) and end the sidecar's context
		stopAfter string
		lines     []string // what the app says after that
		want      int
		log       string
	}{
		{name: "ends with the app", argv: []string{"sh", "-c", "echo started; exit 3"}, ready: true, lines: []string{"started"}, want: 3},
		{name: "the sidecar fails", argv: []string{app, "-exit-code", "5"}, ready: true, stopAfter: "ready", lines: []string{"term terminated"}, want: 5},
		{name: "stopped before the first sync", argv: []string{app}, stopAfter: "-", want: 128 + int(syscall.SIGTERM)},
		{name: "cannot start", argv: []string{"/nonexistent/app"}, ready: true, want: 127, log: `msg="cannot start the app" component=supervise path=/nonexistent/app err="supervise: start \"/nonexistent/app\":`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logger, logs := newLogger()
			sup, lines := supervised(t, tt.argv, SupervisorOptions{Logger: logger})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ready := make(chan struct{})
			done := runSupervisor(ctx, sup, ready)
			if pid := sup.PID(); pid != 0 {
				t.Fatalf("app %d runs before the first sync", pid)
			}
			if tt.ready {
				close(ready)
			}
			if tt.stopAfter != "" {
				if tt.stopAfter != "-" {
					expectLine(t, lines, tt.stopAfter)
				}
				cancel()
			}
			for _, l := range tt.lines {
				expectLine(t, lines, l)
			}
			runResult(t, done)
			if code := sup.Wait(); code != tt.want {
				t.Errorf("exit code %d, want %d", code, tt.want)
			}
			if tt.stopAfter == "" && ctx.Err() != nil {
				t.Error("the sidecar's context ended")
			}
			if !tt.ready {
				if err := sup.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "stopped before") {
					t.Errorf("Start after Run = %v", err)
				}
			}
			if !strings.Contains(logs.String(), tt.log) {
				t.Errorf("log lacks %q:\n%s", tt.log, logs.String())
			}
		})
	}
}

// TestSuperviseForwardSignals: the sidecar's SIGHUP and SIGTERM reach the
// app instead of ending the sidecar, whose context ends with the app.
func TestSuperviseForwardSignals(t *testing.T) {
	sup, lines := supervised(t, []string{counterApp(t), "-exit-code", "6"}, SupervisorOptions{})
	ctx, stop := sup.ForwardSignals(context.Background())
	defer stop()
	done := runSupervisor(ctx, sup, closed())
	expectLine(t, lines, "ready")
	for _, step := range []struct {
		sig  syscall.Signal
		line string
	}{{syscall.SIGHUP, "hup 1"}, {syscall.SIGTERM, "term terminated"}} {
		if err := syscall.Kill(os.Getpid(), step.sig); err != nil {
			t.Fatal(err)
		}
		expectLine(t, lines, step.line)
	}
	select {
	case <-ctx.Done():
	case <-time.After(time.Minute):
		t.Fatal("the context did not end with the app")
	}
	runResult(t, done)
	if code := sup.Wait(); code != 6 {
		t.Fatalf("exit code %d, want 6", code)
	}
}

// TestSuperviseForwardSignalsStop: stop ends the context and the
// forwarding even when the app never ran.
func TestSuperviseForwardSignalsStop(t *testing.T) {
	sup, _ := supervised(t, []string{"sh", "-c", "exit 0"}, SupervisorOptions{})
	ctx, stop := sup.ForwardSignals(context.Background())
	stop()
	if ctx.Err() == nil {
		t.Fatal("the context outlives stop")
	}
	if sup.PID() != 0 {
		t.Fatal("the app runs")
	}
}

func closed() <-chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// TestSuperviseRunStoppedWhenReady: a sidecar whose context has ended
// never starts the app, also when the first sync completed as it ended
// (ready and ctx both done: Run must not pick ready by chance).
func TestSuperviseRunStoppedWhenReady(t *testing.T) {
	for i := range 20 {
		logger, logs := newLogger()
		sup, _ := supervised(t, []string{"sh", "-c", "sleep 60"}, SupervisorOptions{Logger: logger})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		runResult(t, runSupervisor(ctx, sup, closed()))
		if code := sup.Wait(); code != 128+int(syscall.SIGTERM) {
			t.Errorf("run %d: exit code %d, want %d", i, code, 128+int(syscall.SIGTERM))
		}
		if strings.Contains(logs.String(), "app started") {
			t.Fatalf("run %d: the app was started after the sidecar's context ended:\n%s", i, logs.String())
		}
	}
}
