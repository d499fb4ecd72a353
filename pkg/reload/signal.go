package reload

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/phase-sidecar/phase-sidecar/internal/textdist"
)

// plainName is a process given as an executable name rather than a
// cmdline pattern.
var plainName = regexp.MustCompile(`^[A-Za-z0-9_+-][A-Za-z0-9._+-]*$`)

// Signal sends a signal to the process whose pid is in a pid file (re-read
// on every notification, so a restarted app is found) or to the processes
// matching a name or cmdline pattern, found by scanning /proc. A name
// matches comm, the executable's base name, or the first word of argv[0]
// ("nginx: master process" matches nginx); anything else is a regular
// expression matched against the space-joined cmdline. When a match's
// parent matches too, only the parent is signalled: the master of a
// master/worker app (gunicorn, nginx) does the reloading.
type Signal struct {
	sig     syscall.Signal
	pidFile string
	name    string         // plain executable name, or
	pattern *regexp.Regexp // a cmdline pattern
	process string         // as configured, for messages
	procDir string
	self    int
	logger  *slog.Logger
}

var (
	_ Notifier = (*Signal)(nil)
	_ prober   = (*Signal)(nil)
)

// NewSignal builds the notifier; logger nil means slog.Default().
func NewSignal(cfg SignalConfig, logger *slog.Logger) (*Signal, error) {
	sig, err := ParseSignal(cfg.Name)
	if err != nil {
		return nil, err
	}
	// Kept although config refuses it too: with neither, the empty pattern
	// would match, and signal, every visible process.
	if (cfg.PIDFile == "") == (cfg.Process == "") {
		return nil, errors.New("reload: signal needs exactly one of pid_file and process")
	}
	if logger == nil {
		logger = slog.Default()
	}
	s := &Signal{sig: sig, pidFile: cfg.PIDFile, process: cfg.Process, procDir: "/proc", self: os.Getpid(), logger: logger}
	if cfg.Process != "" {
		if s.name, s.pattern, err = parseProcess(cfg.Process); err != nil {
			return nil, fmt.Errorf("reload: signal.process %w", err)
		}
	}
	return s, nil
}

// parseProcess reads signal.process: a plain executable name, or else a
// pattern (Go regexp syntax) matched against the command line.
func parseProcess(p string) (name string, pattern *regexp.Regexp, err error) {
	if plainName.MatchString(p) {
		return p, nil, nil
	}
	if pattern, err = regexp.Compile(p); err != nil {
		return "", nil, fmt.Errorf("%q is neither an executable name nor a valid pattern: %w", p, err)
	}
	// Like the empty pattern, one that matches "" ("gunicorn|", ".*")
	// matches every command line: the signal would reach every process at
	// the top of the tree (a pod's pause, the sidecar's own init).
	if pattern.MatchString("") {
		return "", nil, fmt.Errorf("%q matches every command line (it matches the empty string), so every visible process would be signalled; give the app's executable name, such as gunicorn, or a pattern its command line holds, such as \"manage.py rqworker\"", p)
	}
	return "", pattern, nil
}

// CheckProcess says why p cannot be a signal.process, or nil: the rule
// Signal applies, for validation ahead of a run.
func CheckProcess(p string) error {
	_, _, err := parseProcess(p)
	return err
}

func (s *Signal) target() string {
	if s.pidFile != "" {
		return "pid_file " + s.pidFile
	}
	return "process " + s.process
}

// Notify sends the signal to every target.
func (s *Signal) Notify(ctx context.Context, _ Batch) error {
	pids, err := s.targets()
	if err != nil {
		return err
	}
	var errs []error
	for _, pid := range pids {
		if err := s.send(pid, s.sig); err != nil {
			errs = append(errs, err)
			continue
		}
		s.logger.Info("signal sent", "signal", signalName(s.sig), "pid", pid)
	}
	return errors.Join(errs...)
}

// Check finds the targets and probes them with signal 0.
func (s *Signal) Check() error {
	pids, err := s.targets()
	if err != nil {
		return err
	}
	var errs []error
	for _, pid := range pids {
		errs = append(errs, s.send(pid, 0))
	}
	return errors.Join(errs...)
}

// send delivers sig (0 probes) and explains the two ways it fails.
func (s *Signal) send(pid int, sig syscall.Signal) error {
	err := syscall.Kill(pid, sig)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.ESRCH):
		if s.pidFile != "" {
			if procs, scanErr := scanProc(s.procDir); scanErr == nil && len(s.others(procs)) == 0 {
				return fmt.Errorf("signal: pid %d from pid file %q: no such process, and no process but the sidecar's own is visible: the app runs in another PID namespace; %s: %w", pid, s.pidFile, shareHint, err)
			}
			return fmt.Errorf("signal: pid %d from pid file %q: no such process: the pid file is stale (the app exited, or restarted without rewriting it), or the app runs in another PID namespace (%s): %w", pid, s.pidFile, shareHint, err)
		}
		return fmt.Errorf("signal: pid %d exited before it could be signalled: %w", pid, err)
	case errors.Is(err, syscall.EPERM):
		owner := "another uid"
		if fi, statErr := os.Stat(filepath.Join(s.procDir, strconv.Itoa(pid))); statErr == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				owner = "uid " + strconv.Itoa(int(st.Uid))
			}
		}
		return fmt.Errorf("signal: pid %d: permission denied: the sidecar runs as uid %d and the app as %s; run the sidecar as the app's uid (or grant it CAP_KILL): %w", pid, os.Geteuid(), owner, err)
	default:
		return fmt.Errorf("signal: pid %d: %w", pid, err)
	}
}

// targets re-reads the pid file or re-scans /proc.
func (s *Signal) targets() ([]int, error) {
	if s.pidFile != "" {
		pid, err := readPIDFile(s.pidFile)
		if err != nil {
			return nil, err
		}
		return []int{pid}, nil
	}
	procs, err := scanProc(s.procDir)
	if err != nil {
		return nil, err
	}
	pids := s.match(procs)
	if len(pids) == 0 {
		return nil, s.noMatch(procs)
	}
	return pids, nil
}

// shareHint says how each platform shares a PID namespace.
const shareHint = `share it (Kubernetes: shareProcessNamespace: true; Compose: pid: "service:SIDECAR" on the app's service; Nomad: pid_mode = "host" on both tasks) or use http, exec or supervise`

// noMatch explains why no process matched, telling apart the three causes
// a user can act on: nothing but the sidecar is visible (the PID namespace
// is not shared), a process runs the name only as an argument (a plain name
// was given for a script), or other processes run but none matches. It
// names commands, never their arguments, which may hold secrets.
func (s *Signal) noMatch(procs []proc) error {
	others := s.others(procs)
	if len(others) == 0 {
		return fmt.Errorf("signal: no process matches %q: no process but the sidecar's own is visible (%d), so the app runs in another PID namespace; %s", s.process, len(procs), shareHint)
	}
	if s.name != "" {
		for _, p := range others {
			if i := argIndex(p.argv, s.name); i > 0 {
				return fmt.Errorf("signal: no process matches %q: process %q (pid %d) has %q among its arguments, but a plain name matches only the executable (comm or argv[0]); match the command line with a pattern instead (any value with a space or a regular-expression character), such as %q", s.process, commandName(p), p.pid, s.name, examplePattern(p.argv, i))
			}
		}
	}
	return fmt.Errorf("signal: no process matches %q among the %d visible processes; nearest command names: %s (is the app running, and is the pattern right?)", s.process, len(others), strings.Join(nearest(s.process, others, 5), ", "))
}

// others are the visible processes that are not the sidecar, its
// ancestors (a shell or an init that started it) or its children.
func (s *Signal) others(procs []proc) []proc {
	parent := make(map[int]int, len(procs))
	for _, p := range procs {
		parent[p.pid] = p.ppid
	}
	own := map[int]bool{s.self: true}
	for pid, hops := parent[s.self], 0; pid > 0 && hops < len(procs); pid, hops = parent[pid], hops+1 {
		own[pid] = true
	}
	var out []proc
	for _, p := range procs {
		if own[p.pid] || descends(p.pid, s.self, parent) {
			continue
		}
		out = append(out, p)
	}
	return out
}

func descends(pid, ancestor int, parent map[int]int) bool {
	for hops := 0; pid > 0 && hops < len(parent); hops++ {
		pid = parent[pid]
		if pid == ancestor {
			return true
		}
	}
	return false
}

// argIndex is the index of the first argument after argv[0] that is name
// or a path ending in name, or -1.
func argIndex(argv []string, name string) int {
	for i := 1; i < len(argv); i++ {
		if argv[i] == name || filepath.Base(argv[i]) == name {
			return i
		}
	}
	return -1
}

// scriptArg is an argument that names a script: safe to quote back, and
// what makes a pattern specific.
var scriptArg = regexp.MustCompile(`^[A-Za-z0-9_.-]+\.(py|js|mjs|cjs|rb|pl|php|sh)$`)

// examplePattern suggests a cmdline pattern for the argument at i: with
// the script before it when there is one ("manage.py rqworker"), else the
// argument after a space.
func examplePattern(argv []string, i int) string {
	name := filepath.Base(argv[i])
	if i > 1 {
		if prev := filepath.Base(argv[i-1]); scriptArg.MatchString(prev) {
			return prev + " " + name
		}
	}
	return " " + name
}

// commandName is what ps shows as a process's command: the first word of
// argv[0] (a rewritten title such as "nginx: master process" gives
// "nginx"), else comm.
func commandName(p proc) string {
	if len(p.argv) > 0 {
		first, _, _ := strings.Cut(p.argv[0], " ")
		if base := filepath.Base(strings.TrimSuffix(first, ":")); base != "" && base != "." && base != "/" {
			return base
		}
	}
	return p.comm
}

// nearest returns up to n distinct command names (comm and argv[0]'s base,
// never arguments), closest to want by edit distance first.
func nearest(want string, procs []proc, n int) []string {
	seen := map[string]bool{}
	var names []string
	for _, p := range procs {
		candidates := []string{commandName(p)}
		if len(p.argv) == 0 || !strings.HasPrefix(p.argv[0], p.comm) { // else comm is argv[0] truncated
			candidates = append(candidates, p.comm)
		}
		for _, name := range candidates {
			if name != "" && !seen[name] {
				seen[name] = true
				names = append(names, name)
			}
		}
	}
	dist := make(map[string]int, len(names))
	for _, name := range names {
		dist[name] = textdist.Levenshtein(want, name)
	}
	slices.SortFunc(names, func(a, b string) int {
		if d := dist[a] - dist[b]; d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	if len(names) > n {
		names = names[:n]
	}
	for i, name := range names {
		names[i] = strconv.Quote(name)
	}
	return names
}

// Running reports whether the app is there to be told: the pid file names
// a live process (one of another uid counts), or a process matches.
func (s *Signal) Running() bool {
	if s.pidFile != "" {
		pid, err := readPIDFile(s.pidFile)
		if err != nil {
			return false
		}
		err = syscall.Kill(pid, 0)
		return err == nil || errors.Is(err, syscall.EPERM)
	}
	procs, err := scanProc(s.procDir)
	return err == nil && len(s.match(procs)) > 0
}

func readPIDFile(path string) (int, error) {
	// A pid file is tiny; never read (or quote) more, in case the path
	// names a secret by mistake.
	b, err := readHead(path, 64)
	if err != nil {
		return 0, fmt.Errorf("signal: read pid file %q: %w (is the app running, and is the file on a volume the sidecar mounts?)", path, err)
	}
	text := strings.TrimSpace(string(b))
	pid, err := strconv.Atoi(text)
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("signal: pid file %q does not hold a pid (%d bytes of something else): point pid_file at the app's pid file", path, len(b))
	}
	return pid, nil
}

// readHead reads at most n bytes of path.
func readHead(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, n))
}

// proc is what the matcher needs from /proc/PID.
type proc struct {
	pid, ppid int
	comm      string
	argv      []string
}

// scanProc lists the processes visible in procDir. Processes that exit
// during the scan are skipped.
func scanProc(procDir string) ([]proc, error) {
	d, err := os.Open(procDir)
	if err != nil {
		return nil, fmt.Errorf("signal: scan %s: %w", procDir, err)
	}
	entries, err := d.ReadDir(-1) // unsorted: cheaper than os.ReadDir
	_ = d.Close()
	if err != nil {
		return nil, fmt.Errorf("signal: scan %s: %w", procDir, err)
	}
	var procs []proc
	buf := make([]byte, 4096)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		dir := procDir + "/" + e.Name()
		// cmdline first: it is empty for kernel threads, which are most of
		// a host's processes, and for zombies.
		if buf, err = readProcFile(dir+"/cmdline", buf); err != nil || len(buf) == 0 {
			continue
		}
		p := proc{pid: pid, argv: strings.Split(strings.TrimRight(string(buf), "\x00"), "\x00")}
		if buf, err = readProcFile(dir+"/stat", buf); err != nil {
			continue
		}
		// stat is "pid (comm) state ppid …"; comm may hold spaces and ')'.
		open, closing := bytes.IndexByte(buf, '('), bytes.LastIndexByte(buf, ')')
		if open < 0 || closing < open {
			continue
		}
		p.comm = string(buf[open+1 : closing])
		if _, rest, ok := bytes.Cut(bytes.TrimLeft(buf[closing+1:], " "), []byte(" ")); ok {
			ppid, _, _ := bytes.Cut(rest, []byte(" "))
			p.ppid, _ = strconv.Atoi(string(ppid))
		}
		procs = append(procs, p)
	}
	return procs, nil
}

// match returns the pids of the matching processes whose parent does not
// match, never the sidecar itself.
func (s *Signal) match(procs []proc) []int {
	matched := make(map[int]bool)
	for _, p := range procs {
		if p.pid != s.self && s.matches(p) {
			matched[p.pid] = true
		}
	}
	var pids []int
	for _, p := range procs {
		if matched[p.pid] && !matched[p.ppid] {
			pids = append(pids, p.pid)
		}
	}
	slices.Sort(pids)
	return pids
}

func (s *Signal) matches(p proc) bool {
	if s.pattern != nil {
		return s.pattern.MatchString(strings.Join(p.argv, " "))
	}
	const commLen = 15 // the kernel truncates comm to 15 bytes
	if p.comm == s.name || (len(s.name) > commLen && p.comm == s.name[:commLen]) {
		return true
	}
	first := p.argv[0]
	if i := strings.IndexAny(first, " \t"); i >= 0 {
		first = first[:i]
	}
	return filepath.Base(strings.TrimSuffix(first, ":")) == s.name
}

// readProcFile reads a small /proc file into buf, growing it when needed:
// cheaper than os.ReadFile, which stats first and allocates per call.
func readProcFile(path string, buf []byte) ([]byte, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return buf[:0], err
	}
	defer syscall.Close(fd)
	buf = buf[:cap(buf)]
	n := 0
	for {
		if n == len(buf) {
			buf = append(buf, make([]byte, len(buf))...)
		}
		m, err := syscall.Read(fd, buf[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return buf[:0], err
		}
		if m == 0 {
			return buf[:n], nil
		}
		n += m
	}
}

func signalName(sig syscall.Signal) string {
	if sig == 0 {
		return "0"
	}
	if name := unix.SignalName(sig); name != "" {
		return name
	}
	return sig.String()
}
