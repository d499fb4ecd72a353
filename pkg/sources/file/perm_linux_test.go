package file

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// nobody is the unprivileged identity permission tests run as under root.
const nobody = 65534

// asNonRoot runs fn with the file permissions of an unprivileged user. Under
// root (CI containers) it drops the credentials of one locked OS thread only:
// raw setresuid/setresgid affect just the calling thread, unlike
// syscall.Setuid, and the goroutine ends without unlocking, so the runtime
// discards the thread instead of reusing it.
func asNonRoot(t *testing.T, fn func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		fn()
		return
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		for _, c := range []struct {
			trap    uintptr
			a, b, c uintptr
		}{
			{syscall.SYS_SETGROUPS, 0, 0, 0},
			{syscall.SYS_SETRESGID, nobody, nobody, nobody},
			{syscall.SYS_SETRESUID, nobody, nobody, nobody},
		} {
			if _, _, errno := syscall.RawSyscall(c.trap, c.a, c.b, c.c); errno != 0 {
				done <- errno
				return
			}
		}
		fn()
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatalf("dropping root on a thread: %v", err)
	}
}

func TestFetchPermissionDenied(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) string
		where string // the path the error must name
	}{
		{
			name: "file mode 000",
			setup: func(t *testing.T, dir string) string {
				write(t, dir+"/pw", canary)
				chmod(t, dir+"/pw", 0)
				return dir + "/pw"
			},
			where: "/pw",
		},
		{
			name: "parent directory mode 000",
			setup: func(t *testing.T, dir string) string {
				write(t, dir+"/locked/pw", canary)
				chmod(t, dir+"/locked", 0)
				return dir + "/locked/pw"
			},
			where: "/locked/pw",
		},
		{
			name: "one unreadable file fails the directory",
			setup: func(t *testing.T, dir string) string {
				write(t, dir+"/d/ok", "fine")
				write(t, dir+"/d/pw", canary)
				chmod(t, dir+"/d/pw", 0)
				return dir + "/d"
			},
			where: "/d/pw",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			// The unprivileged user must reach dir itself, so only the
			// mode under test denies it.
			chmod(t, filepath.Dir(dir), 0o755)
			chmod(t, dir, 0o755)
			path := tt.setup(t, dir)
			t.Cleanup(func() {
				_ = filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error { return os.Chmod(p, 0o755) })
			})

			var err error
			asNonRoot(t, func() { _, err = New(Options{}).Fetch(context.Background(), fileRef(path)) })
			if err == nil {
				t.Fatalf("Fetch(%s) succeeded, want permission denied", path)
			}
			if !errors.Is(err, sources.ErrPermission) {
				t.Errorf("error %q does not wrap sources.ErrPermission", err)
			}
			if got := sources.Reason(err); got != "permission_denied" {
				t.Errorf("Reason = %q, want permission_denied", got)
			}
			if !strings.Contains(err.Error(), tt.where) {
				t.Errorf("error %q does not name %s", err, tt.where)
			}
			if strings.Contains(err.Error(), canary) {
				t.Errorf("error leaks content: %q", err)
			}
		})
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}
