package reload

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

func TestParseSignal(t *testing.T) {
	tests := []struct {
		in      string
		want    syscall.Signal
		wantErr bool
	}{
		{"", syscall.SIGHUP, false},
		{"SIGHUP", syscall.SIGHUP, false},
		{"hup", syscall.SIGHUP, false},
		{"SIGTERM", syscall.SIGTERM, false},
		{"sigusr2", syscall.SIGUSR2, false},
		{"SIGKILL", 0, true},
		{"9", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSignal(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("ParseSignal(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestSignalTable: config checks names with CanonicalSignal and the
// notifiers send with ParseSignal; every name of the one table maps to a
// number on this platform, and nothing outside it is accepted.
func TestSignalTable(t *testing.T) {
	for _, name := range SignalNames() {
		if canon, ok := CanonicalSignal(name); !ok || canon != name {
			t.Errorf("CanonicalSignal(%q) = %q, %v", name, canon, ok)
		}
		if canon, ok := CanonicalSignal(strings.ToLower(strings.TrimPrefix(name, "SIG"))); !ok || canon != name {
			t.Errorf("CanonicalSignal(short %q) = %q, %v", name, canon, ok)
		}
		if sig, err := ParseSignal(name); err != nil || sig == 0 {
			t.Errorf("ParseSignal(%q) = %v, %v", name, sig, err)
		}
	}
	for _, name := range []string{"SIGKILL", "kill", "SIGSTOP", "", "9", "SIG"} {
		if canon, ok := CanonicalSignal(name); ok {
			t.Errorf("CanonicalSignal(%q) = %q, accepted", name, canon)
		}
	}
	names := SignalNames()
	names[0] = "SIGKILL"
	if _, ok := CanonicalSignal("SIGKILL"); ok {
		t.Error("SignalNames hands out the table itself")
	}
}

// fakeProc writes a /proc-like tree: pid → (ppid, comm, argv).
func fakeProc(t *testing.T, procs []proc) string {
	t.Helper()
	dir := t.TempDir()
	for _, p := range procs {
		d := filepath.Join(dir, strconv.Itoa(p.pid))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		stat := fmt.Sprintf("%d (%s) S %d 1 1 0 -1", p.pid, p.comm, p.ppid)
		if err := os.WriteFile(filepath.Join(d, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
		cmdline := strings.Join(p.argv, "\x00")
		if cmdline != "" {
			cmdline += "\x00"
		}
		if err := os.WriteFile(filepath.Join(d, "cmdline"), []byte(cmdline), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Not a process.
	if err := os.WriteFile(filepath.Join(dir, "uptime"), []byte("1 1"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestSignalMatch(t *testing.T) {
	procs := []proc{
		{pid: 1, ppid: 0, comm: "pause", argv: []string{"/pause"}},
		{pid: 7, ppid: 1, comm: "gunicorn", argv: []string{"/usr/local/bin/python3", "/usr/local/bin/gunicorn", "backend.wsgi:application", "--bind", "0.0.0.0:8000"}},
		{pid: 8, ppid: 7, comm: "gunicorn", argv: []string{"/usr/local/bin/python3", "/usr/local/bin/gunicorn", "backend.wsgi:application", "--bind", "0.0.0.0:8000"}},
		{pid: 9, ppid: 7, comm: "gunicorn", argv: []string{"/usr/local/bin/python3", "/usr/local/bin/gunicorn", "backend.wsgi:application", "--bind", "0.0.0.0:8000"}},
		{pid: 20, ppid: 1, comm: "nginx", argv: []string{"nginx: master process /usr/sbin/nginx -g daemon off;"}},
		{pid: 21, ppid: 20, comm: "nginx", argv: []string{"nginx: worker process"}},
		{pid: 30, ppid: 1, comm: "python3", argv: []string{"python3", "-m", "rq", "worker", "default"}},
		{pid: 40, ppid: 1, comm: "a-very-long-pro", argv: []string{"/opt/a-very-long-program-name"}},
		{pid: 50, ppid: 1, comm: "kworker/0:1", argv: nil}, // kernel thread: no cmdline
		{pid: 60, ppid: 1, comm: "phase-sidecar", argv: []string{"phase-sidecar", "run", "--config", "/etc/gunicorn.yaml"}},
	}
	dir := fakeProc(t, procs)
	tests := []struct {
		process string
		want    []int
	}{
		{"gunicorn", []int{7}},    // the master, not its workers
		{"nginx", []int{20}},      // "nginx: master process" by argv[0]'s first word
		{"python3", []int{7, 30}}, // comm, or argv[0] of the gunicorn master
		{"rq worker", []int{30}},  // a pattern on the cmdline
		{`gunicorn.*wsgi`, []int{7}},
		{"a-very-long-program-name", []int{40}}, // comm truncated to 15 bytes
		{"kworker/0:1", nil},
		{"gunicorn.yaml", nil}, // the sidecar itself is never a target
		{"postgres", nil},
	}
	for _, tt := range tests {
		t.Run(tt.process, func(t *testing.T) {
			s, err := NewSignal(SignalConfig{Process: tt.process}, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			s.procDir, s.self = dir, 60
			got, err := scanProc(dir)
			if err != nil {
				t.Fatal(err)
			}
			if pids := s.match(got); !slices.Equal(pids, tt.want) {
				t.Fatalf("match(%q) = %v, want %v", tt.process, pids, tt.want)
			}
		})
	}
}

func TestSignalErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// A pid that surely does not exist: above the kernel's pid_max.
	stale := write("stale.pid", "4194305\n")
	garbage := write("garbage.pid", "not a pid at all\n")
	lonely := fakeProc(t, []proc{{pid: 1, comm: "sidecar", argv: []string{"sidecar"}}})

	tests := []struct {
		name  string
		cfg   SignalConfig
		proc  string
		wants []string
	}{
		{"missing pid file", SignalConfig{PIDFile: filepath.Join(dir, "nope.pid")}, "", []string{"read pid file", "no such file", "is the app running"}},
		{"garbage pid file", SignalConfig{PIDFile: garbage}, "", []string{"does not hold a pid"}},
		{"stale pid file", SignalConfig{PIDFile: stale}, "", []string{"no such process", "stale", "shareProcessNamespace"}},
		{"no process matched", SignalConfig{Process: "gunicorn"}, lonely, []string{`no process matches "gunicorn"`, "no process but the sidecar's own is visible", "another PID namespace", "shareProcessNamespace: true", `pid: "service:SIDECAR"`, `pid_mode = "host"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSignal(tt.cfg, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			if tt.proc != "" {
				s.procDir, s.self = tt.proc, 1
			}
			for _, err := range []error{s.Check(), s.Notify(context.Background(), Batch{})} {
				if err == nil {
					t.Fatal("no error")
				}
				for _, w := range tt.wants {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
			}
		})
	}

	for _, cfg := range []SignalConfig{{}, {PIDFile: "/x", Process: "y"}, {Name: "SIGKILL", PIDFile: "/x"}, {Process: "a(b"}} {
		if _, err := NewSignal(cfg, slog.New(slog.DiscardHandler)); err == nil {
			t.Errorf("NewSignal(%+v): no error", cfg)
		}
	}
}

// TestSignalNoMatch: the error tells apart a PID namespace that is not
// shared, a plain name given for a script, and a pattern that matches
// none of the processes running; it never quotes an argument.
func TestSignalNoMatch(t *testing.T) {
	const secretArg = "--password=hunter2"
	sidecar := []proc{
		{pid: 1, ppid: 0, comm: "tini", argv: []string{"/tini", "--", "phase-sidecar"}},
		{pid: 7, ppid: 1, comm: "phase-sidecar", argv: []string{"phase-sidecar", "run", "--config", "/etc/rqworker.yaml"}},
		{pid: 8, ppid: 7, comm: "reload-app", argv: []string{"/bin/reload-app", "rqworker"}}, // an exec child
	}
	pod := append(slices.Clone(sidecar),
		proc{pid: 20, ppid: 0, comm: "pause", argv: []string{"/pause"}},
		proc{pid: 30, ppid: 0, comm: "python", argv: []string{"python", "manage.py", "rqworker", "default", secretArg}},
		proc{pid: 40, ppid: 0, comm: "gunicorn", argv: []string{"/env/bin/python", "/env/bin/gunicorn", "backend.wsgi:application", secretArg}},
		proc{pid: 41, ppid: 40, comm: "gunicorn", argv: []string{"/env/bin/python", "/env/bin/gunicorn", "backend.wsgi:application", secretArg}},
		proc{pid: 50, ppid: 0, comm: "next-server (v1", argv: []string{"next-server (v14.2.35)"}},
	)
	tests := []struct {
		name, process string
		procs         []proc
		wants         []string
	}{
		{"not shared", "gunicorn", sidecar, []string{"no process but the sidecar's own is visible (3)", "another PID namespace", "shareProcessNamespace"}},
		{"plain name of a script", "rqworker", pod, []string{`process "python" (pid 30) has "rqworker" among its arguments`, "a plain name matches only the executable", `such as "manage.py rqworker"`}},
		{"nothing matches", "node", pod, []string{"among the 5 visible processes", "nearest command names: ", `"pause"`, `"python"`, `"gunicorn"`, `"next-server"`}},
		{"pattern matches nothing", "manage.py celery", pod, []string{"among the 5 visible processes", "nearest command names:", `"python"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSignal(SignalConfig{Process: tt.process}, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			s.procDir, s.self = fakeProc(t, tt.procs), 7
			err = s.Check()
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			for _, arg := range []string{"hunter2", "default", "backend.wsgi", "/etc/rqworker.yaml"} {
				if strings.Contains(err.Error(), arg) {
					t.Errorf("error %q quotes an argument (%s)", err, arg)
				}
			}
			if s.Running() {
				t.Error("Running() with no match")
			}
		})
	}
}

// TestSignalRunning: a live pid file or a matching process is a running
// app; a stale or missing pid file is not.
func TestSignalRunning(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	procs := fakeProc(t, []proc{{pid: 40, comm: "gunicorn", argv: []string{"/env/bin/python", "/env/bin/gunicorn", "backend.wsgi:application"}}})
	tests := []struct {
		name string
		cfg  SignalConfig
		want bool
	}{
		{"live pid file", SignalConfig{PIDFile: write("self.pid", strconv.Itoa(os.Getpid()))}, true},
		{"pid 1 (another uid's, or init)", SignalConfig{PIDFile: write("one.pid", "1\n")}, true},
		{"stale pid file", SignalConfig{PIDFile: write("stale.pid", "4194305\n")}, false},
		{"missing pid file", SignalConfig{PIDFile: filepath.Join(dir, "nope.pid")}, false},
		{"matching process", SignalConfig{Process: "gunicorn"}, true},
		{"no matching process", SignalConfig{Process: "manage.py rqworker"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSignal(tt.cfg, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			s.procDir = procs
			if got := s.Running(); got != tt.want {
				t.Fatalf("Running() = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestSignalPIDFileFollowsRestart: the pid file is re-read on every
// notification, so a restarted app is found.
func TestSignalPIDFileFollowsRestart(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "app.pid")
	s, err := NewSignal(SignalConfig{PIDFile: pidFile}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		c := startCounter(t, nil, "-pid-file", pidFile)
		if err := s.Check(); err != nil {
			t.Fatal(err)
		}
		if err := s.Notify(context.Background(), Batch{}); err != nil {
			t.Fatal(err)
		}
		c.expect(t, "hup 1")
		_ = c.cmd.Process.Kill()
		_ = c.cmd.Wait()
	}
}

// TestCoalesceFiveSecretsOneSignal: five secrets rotated together reach a
// real app as exactly one SIGHUP, and the initial sync sends none.
func TestCoalesceFiveSecretsOneSignal(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "app.pid")
	c := startCounter(t, nil, "-pid-file", pidFile)
	m := newMetrics()
	r, err := New(Config{
		Signal:   &SignalConfig{PIDFile: pidFile},
		Coalesce: time.Second,
		MaxWait:  time.Minute,
	}, Options{Logger: slog.New(slog.DiscardHandler), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	results := watch(r)
	runReloader(t, r)

	five := []string{"SECRET_KEY", "SERVER_SECRET", "DATABASE_PASSWORD", "REDIS_PASSWORD", "SMTP_PASSWORD"}
	r.Changed(five, true) // the initial sync: no signal
	for _, name := range five {
		r.Changed([]string{name}, false)
	}
	c.expect(t, "hup 1")
	// A later, separate change is the second SIGHUP: had the initial sync
	// or the five produced more, this would read "hup 3" or more.
	if st := nextStatus(t, results); st.Result != "success" || !slices.Equal(st.LastSecrets, sorted(five)) {
		t.Fatalf("first notification %+v, want a success for all five", st)
	}
	r.Changed([]string{"GOOGLE_CLIENT_SECRET"}, false)
	c.expect(t, "hup 2")
	if st := nextStatus(t, results); st.Result != "success" || !slices.Equal(st.LastSecrets, []string{"GOOGLE_CLIENT_SECRET"}) {
		t.Fatalf("second notification %+v", st)
	}
	if got := counterValue(t, m.Reloads.WithLabelValues("signal", "success")); got != 2 {
		t.Fatalf("reloads_total{signal,success} = %v, want 2", got)
	}
}

// TestSignalProcessNameInPIDNamespace runs the signaller (this test binary,
// re-executed) as pid 1 of a fresh PID namespace, like a pod's shared one:
// it starts the app, finds it by name through /proc and signals it.
func TestSignalProcessNameInPIDNamespace(t *testing.T) {
	unshare := testenv.Tool(t, "PHASE_TEST_UNSHARE", "unshare")
	app := counterApp(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(unshare, "--pid", "--fork", "--mount-proc", self)
	cmd.Env = append(os.Environ(), helperEnv+"=pidns", "PHASE_RELOAD_APP="+app)
	out, err := cmd.CombinedOutput()
	if err != nil && strings.Contains(string(out), "unshare failed") {
		testenv.Missing(t, "unshare cannot create a PID namespace here: %s", out)
	}
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	got := string(out)
	// The app's pid in the namespace is small (the helper's threads take
	// a few); the namespace's pids are what the scanner must see.
	appPID := strings.TrimPrefix(strings.TrimSpace(lineWith(got, "app ")), "app ")
	if pid, err := strconv.Atoi(appPID); err != nil || pid > 100 {
		t.Fatalf("app pid %q is not one of a fresh namespace:\n%s", appPID, got)
	}
	for _, want := range []string{
		"self 1\n",                           // pid 1: a new namespace
		"targets [" + appPID + "]\n",         // found by name
		"notify ok\n",                        // signalled
		"app said hup 1\n",                   // and it got exactly that
		"missing signal: no process matches", // a name that matches nothing is explained
	} {
		if !strings.Contains(got, want) {
			t.Errorf("helper output lacks %q:\n%s", want, got)
		}
	}
}

// TestSignalOtherUID: an app running as another uid cannot be signalled,
// and the error says so, by pid file and by name.
func TestSignalOtherUID(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Missing(t, "needs root to run processes as other uids")
	}
	// t.TempDir's parent is closed to other uids.
	dir, err := os.MkdirTemp("", "reload-uid-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(dir, "app.pid")
	const appUID, sidecarUID = 65534, 65533
	// Under a name of its own: the name is looked up host-wide, where other
	// packages' tests run sighup-counter as root at the same time.
	name := fmt.Sprintf("uidapp%d", os.Getpid()%100000)
	app := filepath.Join(dir, name)
	copyFile(t, counterApp(t), app, 0o755)
	c := startCounterAt(t, app, &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: appUID, Gid: appUID}}, "-pid-file", pidFile)

	// The test binary may sit in a directory only root can enter.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	helper := filepath.Join(dir, "helper")
	copyFile(t, self, helper, 0o755)

	for _, env := range []string{"PHASE_RELOAD_PIDFILE=" + pidFile, "PHASE_RELOAD_PROCESS=" + name} {
		t.Run(env[:strings.IndexByte(env, '=')], func(t *testing.T) {
			cmd := exec.Command(helper)
			cmd.Env = append(os.Environ(), helperEnv+"=signal", env)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: sidecarUID, Gid: sidecarUID}}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("helper: %v\n%s", err, out)
			}
			for _, prefix := range []string{"check: ", "notify: "} {
				line := lineWith(string(out), prefix)
				for _, want := range []string{fmt.Sprintf("pid %d", c.pid), "permission denied", "uid 65533", "uid 65534", "run the sidecar as the app's uid"} {
					if !strings.Contains(line, want) {
						t.Errorf("%q does not say %q", line, want)
					}
				}
			}
		})
	}
	// Nothing reached the app.
	select {
	case l := <-c.lines:
		t.Fatalf("app printed %q", l)
	default:
	}
}

func lineWith(out, prefix string) string {
	for l := range strings.Lines(out) {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// runHelper is the test binary re-executed as a helper process.
func runHelper(mode string) int {
	logger := slog.New(slog.DiscardHandler)
	switch mode {
	case "signal":
		s, err := NewSignal(SignalConfig{PIDFile: os.Getenv("PHASE_RELOAD_PIDFILE"), Process: os.Getenv("PHASE_RELOAD_PROCESS")}, logger)
		if err != nil {
			fmt.Println("new:", err)
			return 1
		}
		fmt.Println("check:", errString(s.Check()))
		fmt.Println("notify:", errString(s.Notify(context.Background(), Batch{})))
		return 0
	case "pidns":
		fmt.Println("self", os.Getpid())
		app := exec.Command(os.Getenv("PHASE_RELOAD_APP"))
		app.Stderr = os.Stderr
		out, err := app.StdoutPipe()
		if err == nil {
			err = app.Start()
		}
		if err != nil {
			fmt.Println("start app:", err)
			return 1
		}
		defer func() {
			_ = app.Process.Kill()
			_ = app.Wait()
		}()
		lines := readLines(out)
		next := func() string {
			select {
			case l := <-lines:
				return l
			case <-time.After(time.Minute):
				return "(nothing)"
			}
		}
		if l := next(); !strings.HasPrefix(l, "ready") {
			fmt.Println("app did not get ready:", l)
			return 1
		}
		fmt.Println("app", app.Process.Pid)
		s, err := NewSignal(SignalConfig{Process: "sighup-counter"}, logger)
		if err != nil {
			fmt.Println("new:", err)
			return 1
		}
		procs, err := scanProc("/proc")
		if err != nil {
			fmt.Println("scan:", err)
			return 1
		}
		fmt.Println("targets", s.match(procs))
		fmt.Println("notify", errString(s.Notify(context.Background(), Batch{})))
		fmt.Println("app said", next())
		missing, _ := NewSignal(SignalConfig{Process: "gunicorn"}, logger)
		fmt.Println("missing", errString(missing.Check()))
		return 0
	}
	fmt.Println("unknown helper mode", mode)
	return 2
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestCheckProcessMatchesEverything: a pattern that matches the empty
// string ("gunicorn|", ".*", "(app)?") matches every command line, so the
// signal would go to every process at the top of the tree (a pod's pause,
// the sidecar's own init): refused like the empty process, by run and by
// validate.
func TestCheckProcessMatchesEverything(t *testing.T) {
	for _, p := range []string{"gunicorn|", ".*", "(gunicorn)?", "^", "x*"} {
		err := CheckProcess(p)
		if err == nil || !strings.Contains(err.Error(), "matches every command line") {
			t.Errorf("CheckProcess(%q) = %v, want it refused as matching every command line", p, err)
		}
		if _, err := NewSignal(SignalConfig{Process: p}, slog.New(slog.DiscardHandler)); err == nil {
			t.Errorf("NewSignal(process %q): no error", p)
		}
	}
	for _, p := range []string{"gunicorn", "manage.py rqworker|^rq: ", "gunicorn .*backend.wsgi", "next-server"} {
		if err := CheckProcess(p); err != nil {
			t.Errorf("CheckProcess(%q) = %v", p, err)
		}
	}
}
