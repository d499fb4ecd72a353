package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

// kubeletVolume lays out a directory the way kubelet's AtomicWriter does:
// files in a timestamped directory, ..data pointing at it, and a symlink per
// key through ..data.
type kubeletVolume struct {
	t   *testing.T
	dir string
	gen int
}

func newKubeletVolume(t *testing.T, dir string, files map[string]string) *kubeletVolume {
	v := &kubeletVolume{t: t, dir: dir}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	v.update(files)
	for name := range files {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

// update reproduces kubelet's sequence step by step: new timestamped dir,
// write the files, symlink ..data_tmp to it, rename over ..data, remove the
// old dir.
func (v *kubeletVolume) update(files map[string]string) {
	t := v.t
	v.gen++
	old, _ := os.Readlink(filepath.Join(v.dir, "..data"))
	ts := fmt.Sprintf("..2026_11_27_00_00_00.%09d", v.gen)
	if err := os.Mkdir(filepath.Join(v.dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(v.dir, ts, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(v.dir, old)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestKubeletSecretVolume(t *testing.T) {
	src, out := t.TempDir(), shm(t)
	vol := newKubeletVolume(t, filepath.Join(src, "redis"), map[string]string{
		"password": value("p1"), "username": value("u1"),
	})
	cfg, addr := writeConfig(t, out, fmt.Sprintf(`refresh: 1h
secrets:
  - name: REDIS_PASSWORD
    ref: file://%[1]s/redis/password
  - name: VOLUME
    ref: file://%[1]s/redis/
`, src))
	s := start(t, cfg, addr)
	s.waitReady()
	waitFile(t, filepath.Join(out, "redis_password"), value("p1"))
	waitFile(t, filepath.Join(out, "volume_password"), value("p1"))
	waitFile(t, filepath.Join(out, "volume_username"), value("u1"))
	for i := 2; i <= 4; i++ {
		vol.update(map[string]string{"password": value(fmt.Sprint("p", i)), "username": value(fmt.Sprint("u", i))})
		waitFile(t, filepath.Join(out, "redis_password"), value(fmt.Sprint("p", i)))
		waitFile(t, filepath.Join(out, "volume_password"), value(fmt.Sprint("p", i)))
		waitFile(t, filepath.Join(out, "volume_username"), value(fmt.Sprint("u", i)))
	}
	if code := s.stop(); code != 0 {
		t.Fatalf("exit %d after SIGTERM", code)
	}
	// Files stay in place after the sidecar stops.
	waitFile(t, filepath.Join(out, "redis_password"), value("p4"))
}

func TestEditorsAndDeletes(t *testing.T) {
	src, out := t.TempDir(), shm(t)
	a := filepath.Join(src, "a")
	writeFile(t, a, value("1"))
	cfg, addr := writeConfig(t, out, fmt.Sprintf("refresh: 1h\nsecrets:\n  - name: ALPHA\n    ref: file://%s\n", a))
	s := start(t, cfg, addr)
	s.waitReady()
	target := filepath.Join(out, "alpha")
	waitFile(t, target, value("1"))

	t.Log("rename-over, the way editors save")
	writeFile(t, a+".swp", value("2"))
	if err := os.Rename(a+".swp", a); err != nil {
		t.Fatal(err)
	}
	waitFile(t, target, value("2"))

	t.Log("in-place write")
	f, err := os.OpenFile(a, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(value("3"))
	f.Close()
	waitFile(t, target, value("3"))

	t.Log("delete: the last good target stays, the error shows")
	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the status to show the missing source", func() bool {
		_, body := s.get("/v1/status")
		return strings.Contains(body, "not found") || strings.Contains(body, "no such file")
	})
	if b, _ := os.ReadFile(target); string(b) != value("3") {
		t.Fatalf("target changed after the source was deleted")
	}
	_, m := s.get("/metrics")
	if !strings.Contains(m, `phase_sidecar_secret_fetch_errors_total{reason="not_found",secret="ALPHA",source="file"}`) {
		t.Errorf("no not_found fetch error counted:\n%s", grep(m, "fetch_errors"))
	}
	promtoolCheck(t, m) // with the error series in it
	if c, _ := s.get("/readyz"); c != 200 {
		t.Errorf("/readyz = %d after a source error; written once is ready", c)
	}

	t.Log("recreate")
	writeFile(t, a, value("4"))
	waitFile(t, target, value("4"))
}

func TestReadinessFlips(t *testing.T) {
	src, out := t.TempDir(), shm(t)
	a := filepath.Join(src, "later", "a")
	cfg, addr := writeConfig(t, out, fmt.Sprintf(`refresh: 1h
sources:
  file:
    recheck: 1h
secrets:
  - name: LATER
    ref: file://%s
  - name: OPTIONAL
    ref: file://%s/nowhere
    required: false
`, a, src))
	s := start(t, cfg, addr)
	eventually(t, "/healthz", func() bool { c, _ := s.get("/healthz"); return c == 200 })
	code, body := s.get("/readyz")
	if code != 503 || !strings.Contains(body, "LATER") || strings.Contains(body, "OPTIONAL") {
		t.Fatalf("/readyz = %d %q, want 503 naming LATER only", code, body)
	}
	if code, o := runCmd(t, "health", "--config", cfg); code != 1 || !strings.Contains(o, "LATER") {
		t.Fatalf("health before ready = %d %q, want 1 naming LATER", code, o)
	}
	// The directory does not exist yet: the watch on it is retried.
	writeFile(t, a, value("x"))
	s.waitReady()
	if code, o := runCmd(t, "health", "--config", cfg); code != 0 {
		t.Fatalf("health when ready = %d %q", code, o)
	}
	waitFile(t, filepath.Join(out, "later"), value("x"))
}

func TestStatusAndMetrics(t *testing.T) {
	src, out := t.TempDir(), shm(t)
	writeFile(t, filepath.Join(src, "a"), value("a"))
	cfg, addr := writeConfig(t, out, fmt.Sprintf("secrets:\n  - name: ALPHA\n    ref: file://%s/a\n", src))
	s := start(t, cfg, addr)
	s.waitReady()
	_, body := s.get("/v1/status")
	var st struct {
		Ready   bool `json:"ready"`
		Secrets []struct {
			Name, Source, Ref, Path, Version string
			Written                          bool
		} `json:"secrets"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("status is not JSON: %v\n%s", err, body)
	}
	if !st.Ready || len(st.Secrets) != 1 || st.Secrets[0].Path != filepath.Join(out, "alpha") || st.Secrets[0].Version == "" || !st.Secrets[0].Written {
		t.Fatalf("status = %+v", st)
	}
	_, m := s.get("/metrics")
	promtoolCheck(t, m)
	// secret_fetch_errors_total appears with its first error (TestEditorsAndDeletes).
	for _, name := range []string{"secret_info", "secret_last_success_timestamp_seconds", "secret_last_change_timestamp_seconds",
		"secret_stale", "source_requests_total", "source_request_duration_seconds", "source_up",
		"reloads_total", "last_reload_success_timestamp_seconds", "build_info"} {
		if !strings.Contains(m, "\nphase_sidecar_"+name) {
			t.Errorf("metric phase_sidecar_%s missing", name)
		}
	}
	if !strings.Contains(m, "go_goroutines") || !strings.Contains(m, "process_resident_memory_bytes") {
		t.Error("Go or process collector missing")
	}
}

func TestSIGTERMDuringSync(t *testing.T) {
	src, out := t.TempDir(), shm(t)
	var body strings.Builder
	body.WriteString("concurrency: 2\nsecrets:\n")
	for i := range 300 {
		writeFile(t, filepath.Join(src, fmt.Sprint("s", i)), value(fmt.Sprint(i)))
		fmt.Fprintf(&body, "  - name: S%d\n    ref: file://%s/s%d\n", i, src, i)
	}
	cfg, addr := writeConfig(t, out, body.String())
	s := start(t, cfg, addr)
	// Stop as soon as the first file lands, while the rest are syncing.
	eventually(t, "a first file", func() bool {
		entries, _ := os.ReadDir(out)
		return len(entries) > 0
	})
	if code := s.stop(); code != 0 {
		t.Fatalf("exit %d after SIGTERM during sync", code)
	}
	entries, _ := os.ReadDir(out)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left behind %s", e.Name())
			continue
		}
		b, _ := os.ReadFile(filepath.Join(out, e.Name()))
		want := value(strings.TrimPrefix(e.Name(), "s"))
		if string(b) != want {
			t.Errorf("%s is partial after SIGTERM", e.Name())
		}
	}
}

// TestSIGINT: Ctrl-C in a terminal stops run as cleanly as SIGTERM.
func TestSIGINT(t *testing.T) {
	src, out := t.TempDir(), shm(t)
	writeFile(t, filepath.Join(src, "a"), value("a"))
	cfg, addr := writeConfig(t, out, fmt.Sprintf("secrets:\n  - name: ALPHA\n    ref: file://%s/a\n", src))
	s := start(t, cfg, addr)
	s.waitReady()
	target := filepath.Join(out, "alpha")
	waitFile(t, target, value("a"))
	if code := s.stopWith(syscall.SIGINT); code != 0 {
		t.Fatalf("exit %d after SIGINT, want 0", code)
	}
	if b, err := os.ReadFile(target); err != nil || string(b) != value("a") {
		t.Fatalf("the target did not stay after SIGINT (err %v)", err)
	}
}

func TestOnceValidateEnv(t *testing.T) {
	src, out := t.TempDir(), shm(t)
	writeFile(t, filepath.Join(src, "a"), value("a"))
	good, _ := writeConfig(t, out, fmt.Sprintf(`secrets:
  - name: ALPHA
    ref: file://%[1]s/a
  - name: TLS_CERT
    ref: file://%[1]s/a
    bundle: tls
    file: tls.crt
  - name: DIR
    ref: file://%[1]s
    required: false
`, src))
	if code, o := runCmd(t, "validate", "--config", good); code != 0 {
		t.Fatalf("validate = %d: %s", code, o)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Fatalf("validate touched the output directory")
	}
	if code, o := runCmd(t, "once", "--config", good); code != 0 {
		t.Fatalf("once = %d: %s", code, o)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "tls", "tls.crt")); string(b) != value("a") {
		t.Fatalf("bundle member not written")
	}
	for format, want := range map[string]string{
		"shell":   "ALPHA_FILE=" + filepath.Join(out, "alpha") + "\n",
		"k8s":     "  - name: ALPHA_FILE\n    value: \"" + filepath.Join(out, "alpha") + "\"\n",
		"compose": "  ALPHA_FILE: \"" + filepath.Join(out, "alpha") + "\"\n",
	} {
		code, o := runCmd(t, "env", "--config", good, "--format", format)
		if code != 0 || !strings.Contains(o, want) || !strings.Contains(o, "TLS_CERT_FILE") ||
			!strings.Contains(o, "DIR expands") || strings.Contains(o, "DIR_FILE") {
			t.Errorf("env --format %s = %d\n%s\nwant %q", format, code, o, want)
		}
	}

	missing, _ := writeConfig(t, out, fmt.Sprintf("secrets:\n  - name: GONE\n    ref: file://%s/gone\n", src))
	if code, o := runCmd(t, "once", "--config", missing); code != 1 || !strings.Contains(o, "GONE") {
		t.Fatalf("once with a missing required secret = %d: %s", code, o)
	}
	bad, _ := writeConfig(t, out, "bogus: 1\nsecrets:\n  - name: X\n    ref: nope://x\n")
	code, o := runCmd(t, "validate", "--config", bad)
	if code != 2 || !strings.Contains(o, "bogus") || !strings.Contains(o, "nope") {
		t.Fatalf("validate on a bad config = %d: %s", code, o)
	}
	t.Setenv("VAULT_ADDR", "")
	novault, _ := writeConfig(t, out, "secrets:\n  - name: V\n    ref: vault://secret/app#k\n")
	code, o = runCmd(t, "validate", "--config", novault)
	if code != 2 || !strings.Contains(o, "not available in this build/config") || !strings.Contains(o, "VAULT_ADDR") {
		t.Fatalf("validate with a Vault ref and no address = %d: %s", code, o)
	}
	if code, _ := runCmd(t, "run"); code != 2 {
		t.Errorf("run without --config = %d, want 2", code)
	}
	if code, o := runCmd(t, "version"); code != 0 || !strings.Contains(o, "phase-sidecar") {
		t.Errorf("version = %d %q", code, o)
	}
	for _, sub := range []string{"run", "once", "validate", "env", "health"} {
		if code, o := runCmd(t, sub, "--help"); code != 0 || !strings.Contains(o, "--config") {
			t.Errorf("%s --help = %d %q", sub, code, o)
		}
	}
	// version --help describes the command rather than printing the version.
	if code, o := runCmd(t, "version", "--help"); code != 0 || !strings.Contains(strings.ToLower(o), "usage") || !strings.Contains(o, "version") {
		t.Errorf("version --help = %d %q, want usage text", code, o)
	}
}

func TestBadInputs(t *testing.T) {
	src, out := t.TempDir(), shm(t)
	writeFile(t, filepath.Join(src, "big"), value(strings.Repeat("x", 2048)))
	writeFile(t, filepath.Join(src, "ok"), value("ok"))

	t.Run("disk-backed output", func(t *testing.T) {
		disk := filepath.Join(t.TempDir())
		if isTmpfs(disk) {
			disk = "/var/tmp"
		}
		cfg, _ := writeConfig(t, disk, fmt.Sprintf("secrets:\n  - name: OK\n    ref: file://%s/ok\n", src))
		code, o := runCmd(t, "once", "--config", cfg)
		if code == 0 || !strings.Contains(o, "allow_disk") {
			t.Fatalf("once on a disk-backed dir = %d: %s", code, o)
		}
	})
	t.Run("source over the size limit", func(t *testing.T) {
		cfg, _ := writeConfig(t, out, fmt.Sprintf("max_file_size: 1024\nsecrets:\n  - name: BIG\n    ref: file://%s/big\n", src))
		code, o := runCmd(t, "once", "--config", cfg)
		if code != 1 || !strings.Contains(o, "max_file_size") {
			t.Fatalf("once with an oversized source = %d: %s", code, o)
		}
	})
	t.Run("unreadable source", func(t *testing.T) {
		// Root reads everything, so under root the sidecar runs as nobody,
		// and the source, root's, becomes unreadable when its mode drops to 000.
		var attr *syscall.SysProcAttr
		if os.Geteuid() == 0 {
			attr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		}
		src, out, etc := nobodyDir(t, ""), nobodyDir(t, "/dev/shm"), nobodyDir(t, "")
		locked := filepath.Join(src, "locked")
		writeFile(t, locked, value("1"))
		cfg, addr := writeConfig(t, out, fmt.Sprintf("refresh: 1h\nsecrets:\n  - name: LOCKED\n    ref: file://%s\n", locked))
		cfg = copyTo(t, cfg, etc)
		s := startAs(t, attr, cfg, addr)
		s.waitReady()
		target := filepath.Join(out, "locked")
		waitFile(t, target, value("1"))

		if err := os.Chmod(locked, 0); err != nil {
			t.Fatal(err)
		}
		eventually(t, "/v1/status to show LOCKED's error", func() bool {
			_, e, _ := s.secretStatus("LOCKED")
			return e != ""
		})
		if _, e, _ := s.secretStatus("LOCKED"); !strings.Contains(e, "permission denied") || !strings.Contains(e, locked) {
			t.Errorf("LOCKED last_error = %q, want it to say permission denied and name %s", e, locked)
		}
		if b, err := os.ReadFile(target); err != nil || string(b) != value("1") {
			t.Errorf("the target changed after its source became unreadable (err %v)", err)
		}
		series := `phase_sidecar_secret_fetch_errors_total{reason="permission_denied",secret="LOCKED",source="file"}`
		if v := s.metric(series); v < 1 {
			_, m := s.get("/metrics")
			t.Errorf("%s = %v, want >= 1:\n%s", series, v, grep(m, "fetch_errors"))
		}
		_, m := s.get("/metrics")
		promtoolCheck(t, m) // with the error series in it
		eventually(t, "the log to name the unreadable path", func() bool {
			return strings.Contains(s.out.String(), locked) && strings.Contains(s.out.String(), "permission denied")
		})
		if c, _ := s.get("/readyz"); c != 200 {
			t.Errorf("/readyz = %d after a source error; written once is ready", c)
		}

		t.Log("readable again: the error clears, then changes flow")
		if err := os.Chmod(locked, 0o644); err != nil {
			t.Fatal(err)
		}
		eventually(t, "LOCKED's last_error to clear", func() bool {
			_, e, _ := s.secretStatus("LOCKED")
			return e == ""
		})
		writeFile(t, locked, value("2"))
		waitFile(t, target, value("2"))
	})
	t.Run("planted symlink in the output directory", func(t *testing.T) {
		outside := filepath.Join(t.TempDir(), "outside")
		writeFile(t, outside, "untouched")
		if err := os.Symlink(outside, filepath.Join(out, "ok")); err != nil {
			t.Fatal(err)
		}
		cfg, _ := writeConfig(t, out, fmt.Sprintf("secrets:\n  - name: OK\n    ref: file://%s/ok\n", src))
		if code, o := runCmd(t, "once", "--config", cfg); code != 0 {
			t.Fatalf("once = %d: %s", code, o)
		}
		if b, _ := os.ReadFile(outside); string(b) != "untouched" {
			t.Fatal("the sidecar wrote through a planted symlink")
		}
		if fi, _ := os.Lstat(filepath.Join(out, "ok")); fi.Mode()&os.ModeSymlink != 0 {
			t.Fatal("the planted symlink is still there")
		}
	})
}

// nobody is the unprivileged uid (and gid) a sidecar runs as where the test
// needs permissions to bite, which they do not for root.
const nobody = 65534

// nobodyDir returns a fresh directory under base (the default temp dir when
// empty) that nobody may use: t.TempDir's parents are private to root.
func nobodyDir(t *testing.T, base string) string {
	t.Helper()
	d, err := os.MkdirTemp(base, "phase-sidecar-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(d, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// copyTo copies file into dir and returns the copy's path.
func copyTo(t *testing.T, file, dir string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, filepath.Base(file))
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// promtoolCheck runs `promtool check metrics` on an exposition.
func promtoolCheck(t *testing.T, exposition string) {
	t.Helper()
	promtool := testenv.Tool(t, "PHASE_TEST_PROMTOOL", "promtool")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(exposition)
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, o)
	}
}

func isTmpfs(dir string) bool {
	var st syscall.Statfs_t
	return syscall.Statfs(dir, &st) == nil && st.Type == 0x01021994
}

func grep(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
