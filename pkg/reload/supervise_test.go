package reload

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// supervised builds a Supervisor for argv whose child's stdout lines arrive
// on the returned channel.
func supervised(t *testing.T, argv []string, o SupervisorOptions) (*Supervisor, chan string) {
	t.Helper()
	rd, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	o.Stdout, o.Stdin = wr, nil
	if o.Logger == nil {
		o.Logger, _ = newLogger()
	}
	s, err := NewSupervisor(argv, o)
	if err != nil {
		t.Fatal(err)
	}
	lines := readLines(rd)
	t.Cleanup(func() {
		_ = s.Forward(syscall.SIGKILL)
		_ = s.Forward(syscall.SIGTERM)
		s.Wait()
		_ = wr.Close()
		_ = rd.Close()
	})
	return s, lines
}

func waitCode(t *testing.T, s *Supervisor) int {
	t.Helper()
	select {
	case <-s.Done():
	case <-time.After(time.Minute):
		t.Fatal("the child did not exit within a minute")
	}
	return s.Wait()
}

// TestSuperviseSignal: the child starts only with Start (after the first
// sync), gets the reload signal on change, gets a forwarded SIGTERM, and
// its exit code is the result.
func TestSuperviseSignal(t *testing.T) {
	app := counterApp(t)
	sup, lines := supervised(t, []string{app, "-exit-code", "7"}, SupervisorOptions{})
	r := newReloader(t, Config{Coalesce: time.Millisecond}, Options{Notifier: sup})
	if r.Method() != MethodSupervise {
		t.Fatalf("method %q", r.Method())
	}
	results := watch(r)
	runReloader(t, r)

	r.Changed([]string{"SECRET_KEY"}, true)
	r.Changed([]string{"SECRET_KEY"}, false) // before Start: nobody to tell
	if st := nextStatus(t, results); st.Result != "success" {
		t.Fatalf("status %+v", st)
	}
	if pid := sup.PID(); pid != 0 {
		t.Fatalf("child %d runs before Start", pid)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := sup.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sup.Start(ctx); err == nil {
		t.Fatal("second Start: no error")
	}
	expectLine(t, lines, "ready")
	r.Changed([]string{"SECRET_KEY", "DATABASE_PASSWORD"}, false)
	expectLine(t, lines, "hup 1")
	if st := nextStatus(t, results); st.Result != "success" || st.Method != "supervise" {
		t.Fatalf("status %+v", st)
	}

	if err := sup.Forward(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	expectLine(t, lines, "term terminated")
	if code := waitCode(t, sup); code != 7 {
		t.Fatalf("exit code %d, want 7", code)
	}
}

// TestSuperviseRestart: on change the child is stopped and started again;
// the end of the sidecar's context stops it for good.
func TestSuperviseRestart(t *testing.T) {
	app := counterApp(t)
	sup, lines := supervised(t, []string{app, "-exit-code", "4"}, SupervisorOptions{Restart: true})
	r := newReloader(t, Config{Coalesce: time.Millisecond}, Options{Notifier: sup})
	results := watch(r)
	runReloader(t, r)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := sup.Start(ctx); err != nil {
		t.Fatal(err)
	}
	first := expectLine(t, lines, "ready")
	firstPID := sup.PID()

	r.Changed([]string{"REDIS_PASSWORD"}, false)
	expectLine(t, lines, "term terminated")
	second := expectLine(t, lines, "ready")
	if st := nextStatus(t, results); st.Result != "success" {
		t.Fatalf("status %+v", st)
	}
	if first == second || sup.PID() == firstPID || sup.PID() == 0 {
		t.Fatalf("not restarted: %q then %q, pid %d", first, second, sup.PID())
	}
	select {
	case <-sup.Done():
		t.Fatal("a restart ended supervision")
	default:
	}

	cancel()
	expectLine(t, lines, "term terminated")
	if code := waitCode(t, sup); code != 4 {
		t.Fatalf("exit code %d, want 4", code)
	}
}

func TestSuperviseExitCodes(t *testing.T) {
	tests := []struct {
		name    string
		argv    []string
		forward bool
		want    int
	}{
		{"exits on its own", []string{"sh", "-c", "exit 3"}, false, 3},
		{"killed by a signal", []string{"sh", "-c", "kill -KILL $$"}, false, 128 + 9},
		// The child ignores SIGTERM: after the stop timeout it is killed.
		{"stop timeout", []string{"sh", "-c", `trap "" TERM; echo ready; exec sleep 1000`}, true, 128 + 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sup, lines := supervised(t, tt.argv, SupervisorOptions{StopTimeout: 50 * time.Millisecond})
			if err := sup.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			if tt.forward {
				expectLine(t, lines, "ready")
				if err := sup.Forward(syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
			}
			if code := waitCode(t, sup); code != tt.want {
				t.Fatalf("exit code %d, want %d", code, tt.want)
			}
		})
	}
}

func TestSuperviseStoppedBeforeStart(t *testing.T) {
	sup, _ := supervised(t, []string{"sh", "-c", "exit 0"}, SupervisorOptions{})
	if err := sup.Forward(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := sup.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "stopped before") {
		t.Fatalf("Start = %v", err)
	}
	if code := waitCode(t, sup); code != 128+15 {
		t.Fatalf("exit code %d", code)
	}
}

func TestSuperviseStartFails(t *testing.T) {
	sup, _ := supervised(t, []string{"/nonexistent/app"}, SupervisorOptions{})
	if err := sup.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "/nonexistent/app") {
		t.Fatalf("Start = %v", err)
	}
	if code := waitCode(t, sup); code != 127 {
		t.Fatalf("exit code %d, want 127", code)
	}
	for _, argv := range [][]string{nil, {""}} {
		if _, err := NewSupervisor(argv, SupervisorOptions{}); err == nil {
			t.Errorf("NewSupervisor(%q): no error", argv)
		}
	}
	if _, err := NewSupervisor([]string{"x"}, SupervisorOptions{Signal: "SIGKILL"}); err == nil {
		t.Error("SIGKILL accepted")
	}
}

// TestSuperviseStopSignal: the sidecar's SIGTERM reaches the app as its
// configured stop signal, the same one a restart uses.
func TestSuperviseStopSignal(t *testing.T) {
	sup, lines := supervised(t, []string{counterApp(t), "-exit-code", "5"}, SupervisorOptions{StopSignal: "SIGINT"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := sup.Start(ctx); err != nil {
		t.Fatal(err)
	}
	expectLine(t, lines, "ready")
	if err := sup.Forward(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	expectLine(t, lines, "hup 1")
	if err := sup.Forward(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	expectLine(t, lines, "term interrupt")
	if code := waitCode(t, sup); code != 5 {
		t.Fatalf("exit code %d, want 5", code)
	}
}
