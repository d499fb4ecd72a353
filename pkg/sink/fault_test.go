package sink

import (
	"github.com/phase-sidecar/phase-sidecar/pkg/secret"

	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

const (
	helperEnv = "PHASE_SINK_PERMISSION_HELPER"
	nobody    = 65534
)

// TestPermissionDenied checks the errors for an output directory the sidecar
// may not write. Root bypasses permission bits, so as root the checks run in
// a copy of this test binary started as uid 65534.
func TestPermissionDenied(t *testing.T) {
	base := shmDir(t)
	if os.Geteuid() != 0 {
		permissionScenarios(t, base)
		return
	}
	if err := os.Chown(base, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	exe := copyTestBinary(t)
	cmd := exec.Command(exe, "-test.run=^TestPermissionHelper$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+base)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: TestPermissionHelper")) {
		t.Fatalf("permission checks as uid %d: %v\n%s", nobody, err, out)
	}
	t.Logf("as uid %d:\n%s", nobody, out)
}

// TestPermissionHelper is TestPermissionDenied's body when it runs as a
// non-root uid in a child process.
func TestPermissionHelper(t *testing.T) {
	base := os.Getenv(helperEnv)
	if base == "" {
		t.Skip("runs only as TestPermissionDenied's child process")
	}
	permissionScenarios(t, base)
}

// copyTestBinary copies this test binary where another uid can run it: the
// go build cache and t.TempDir are private to the current user.
func copyTestBinary(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "phase-sink-exe-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	exe := filepath.Join(dir, "sink.test")
	dst, err := os.OpenFile(exe, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return exe
}

// permissionScenarios runs as a non-root uid that owns base.
func permissionScenarios(t *testing.T, base string) {
	if os.Geteuid() == 0 {
		t.Fatal("permission scenarios must run as a non-root uid")
	}
	mkdir := func(t *testing.T, name string, mode fs.FileMode) string {
		dir := filepath.Join(base, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		chmod(t, dir, mode)
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
		return dir
	}
	assertDenied := func(t *testing.T, err error, wants ...string) {
		t.Helper()
		if err == nil {
			t.Fatal("no error")
		}
		if !errors.Is(err, fs.ErrPermission) {
			t.Errorf("error %v is not fs.ErrPermission", err)
		}
		for _, want := range append(wants, "permission denied", "writable by the sidecar") {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
	}

	t.Run("directory not searchable", func(t *testing.T) {
		dir := mkdir(t, "locked", 0)
		_, err := Open(Options{Dir: dir})
		assertDenied(t, err, dir)
	})
	t.Run("directory read-only", func(t *testing.T) {
		dir := mkdir(t, "readonly", 0o555)
		_, err := Open(Options{Dir: dir})
		assertDenied(t, err, dir)
	})
	t.Run("directory turns read-only", func(t *testing.T) {
		dir := mkdir(t, "later", 0o755)
		d := openDir(t, Options{Dir: dir})
		mustWrite(t, d, file("alpha", "old"))
		mustBundle(t, d, "tls", pair(1))
		before := listDir(t, dir)
		chmod(t, dir, 0o555)

		_, err := d.Write(file("alpha", "new"))
		assertDenied(t, err, `"alpha"`)
		_, err = d.WriteBundle("tls", pair(2))
		assertDenied(t, err, `"tls"`)

		assertContent(t, d.Path("alpha"), "old")
		assertContent(t, d.Path("tls/tls.crt"), string(pair(1)[0].Data.Reveal()))
		if got := listDir(t, dir); !slices.Equal(got, before) {
			t.Fatalf("directory holds %q, want %q", got, before)
		}
	})
}

func chmod(t *testing.T, path string, mode fs.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// TestNoSpace fills a 64 KiB tmpfs: the write fails with ENOSPC and a clear
// error, the old target stays intact, no temporary file is left, and a
// retry that fits succeeds.
func TestNoSpace(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size=64k,mode=0755"); err != nil {
		if errors.Is(err, syscall.EPERM) {
			testenv.Missing(t, "mounting a small tmpfs needs root (CAP_SYS_ADMIN): %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	d := openDir(t, Options{Dir: dir})

	const canary = "CANARY-7f3a-secret-value "
	big := bytes.Repeat([]byte(canary), 200<<10/len(canary))
	mustWrite(t, d, file("alpha", "old"))
	mustBundle(t, d, "tls", pair(1))
	before := listDir(t, dir)

	assertNoSpace := func(t *testing.T, err error, name string) {
		t.Helper()
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("err = %v, want ENOSPC", err)
		}
		for _, want := range []string{`"` + name + `"`, "no space left on the tmpfs", "sizeLimit"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
		if strings.Contains(err.Error(), "CANARY") {
			t.Errorf("error %q contains the data", err)
		}
	}
	_, err := d.Write(File{Name: "alpha", Data: secret.New(big), Mode: 0o440, UID: -1, GID: -1})
	assertNoSpace(t, err, "alpha")
	_, err = d.WriteBundle("tls", []File{pair(2)[0], {Name: "tls.key", Data: secret.New(big), Mode: 0o440, UID: -1, GID: -1}})
	assertNoSpace(t, err, "tls")

	assertContent(t, d.Path("alpha"), "old")
	for _, f := range pair(1) {
		assertContent(t, d.Path("tls/"+f.Name), string(f.Data.Reveal()))
	}
	if got := listDir(t, dir); !slices.Equal(got, before) {
		t.Fatalf("directory holds %q, want %q", got, before)
	}
	// The engine retries; once the value fits, it lands.
	if !mustWrite(t, d, file("alpha", "new")) || !mustBundle(t, d, "tls", pair(2)) {
		t.Fatal("retry reported unchanged")
	}
	assertContent(t, d.Path("alpha"), "new")
}
