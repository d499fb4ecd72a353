package sink

import (
	"github.com/phase-sidecar/phase-sidecar/pkg/secret"

	"bytes"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

// shmDir returns a fresh directory on the /dev/shm tmpfs.
func shmDir(t testing.TB) string {
	t.Helper()
	if _, mem := fsTypeOf(t, "/dev/shm"); !mem {
		testenv.Missing(t, "/dev/shm is not a tmpfs")
	}
	dir, err := os.MkdirTemp("/dev/shm", "phase-sink-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// diskDir returns a fresh directory on a disk-backed file system.
func diskDir(t testing.TB) string {
	t.Helper()
	if dir := t.TempDir(); !isMem(t, dir) {
		return dir
	}
	dir, err := os.MkdirTemp("/var/tmp", "phase-sink-test-")
	if err != nil {
		testenv.Missing(t, "no disk-backed directory: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if isMem(t, dir) {
		testenv.Missing(t, "neither the test temp dir nor /var/tmp is disk-backed")
	}
	return dir
}

func isMem(t testing.TB, path string) bool {
	_, mem := fsTypeOf(t, path)
	return mem
}

func fsTypeOf(t testing.TB, path string) (string, bool) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		testenv.Missing(t, "%v", err)
	}
	defer f.Close()
	name, mem, err := fsType(f)
	if err != nil {
		t.Fatal(err)
	}
	return name, mem
}

func openDir(t testing.TB, o Options) *Dir {
	t.Helper()
	d, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func newLogger(b *testenv.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func file(name, data string) File {
	return File{Name: name, Data: secret.FromString(data), Mode: 0o440, UID: -1, GID: -1}
}

func mustWrite(t testing.TB, d *Dir, f File) bool {
	t.Helper()
	changed, err := d.Write(f)
	if err != nil {
		t.Fatal(err)
	}
	return changed
}

func listDir(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func stat(t testing.TB, path string) *syscall.Stat_t {
	t.Helper()
	info, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Sys().(*syscall.Stat_t)
}

func assertContent(t testing.TB, path, want string) {
	t.Helper()
	info, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Mode().IsRegular() {
		t.Fatalf("%s is %v, want a regular file", path, info.Mode().Type())
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("%s holds %d bytes %q, want %q", path, len(got), got, want)
	}
}

// TestWriteAtomic is the required atomicity test: a reader looping on the
// target during 10 000 rewrites with two values of different lengths only
// ever sees one of the two values, whole.
func TestWriteAtomic(t *testing.T) {
	d := openDir(t, Options{Dir: shmDir(t)})
	values := [][]byte{bytes.Repeat([]byte("a"), 37), bytes.Repeat([]byte("b"), 5000)}
	mustWrite(t, d, File{Name: "alpha", Data: secret.New(values[0]), Mode: 0o440, UID: -1, GID: -1})

	var (
		stop, done = make(chan struct{}), make(chan struct{})
		started    = make(chan struct{})
		once       sync.Once
		reads, bad int
		readErr    error
	)
	go func() {
		defer close(done)
		defer once.Do(func() { close(started) })
		for {
			b, err := os.ReadFile(d.Path("alpha"))
			switch {
			case err != nil:
				readErr = err
				return
			case !bytes.Equal(b, values[0]) && !bytes.Equal(b, values[1]):
				bad++
			}
			reads++
			once.Do(func() { close(started) })
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	<-started
	const rewrites = 10000
	for i := range rewrites {
		changed, err := d.Write(File{Name: "alpha", Data: secret.New(values[(i+1)%2]), Mode: 0o440, UID: -1, GID: -1})
		if err != nil || !changed {
			close(stop)
			<-done
			t.Fatalf("rewrite %d: changed=%v err=%v", i, changed, err)
		}
	}
	close(stop)
	<-done
	if readErr != nil {
		t.Fatalf("reader failed (the target must always exist): %v", readErr)
	}
	if bad > 0 {
		t.Fatalf("reader saw %d empty, partial or mixed files in %d reads", bad, reads)
	}
	if reads < 2 {
		t.Fatalf("reader ran only %d times during %d rewrites", reads, rewrites)
	}
	t.Logf("%d rewrites, %d reads, all whole", rewrites, reads)
	if left := listDir(t, d.dir); !slices.Equal(left, []string{"alpha"}) {
		t.Fatalf("directory holds %q, want only alpha", left)
	}
}

func TestWriteSkipsUnchanged(t *testing.T) {
	d := openDir(t, Options{Dir: shmDir(t)})
	f := file("alpha", "s3cr3t\n")
	if !mustWrite(t, d, f) {
		t.Fatal("first write reported unchanged")
	}
	before := stat(t, d.Path("alpha"))
	for range 3 {
		if mustWrite(t, d, f) {
			t.Fatal("identical write reported changed")
		}
	}
	after := stat(t, d.Path("alpha"))
	if before.Ino != after.Ino || before.Mtim != after.Mtim || before.Ctim != after.Ctim {
		t.Fatalf("identical write touched the file: inode %d→%d mtime %v→%v", before.Ino, after.Ino, before.Mtim, after.Mtim)
	}
	assertContent(t, d.Path("alpha"), "s3cr3t\n")
}

// A sidecar restarted next to its files finds them at Open and leaves the
// identical ones alone; a name that was absent at Open is written without a
// comparison, whatever appeared there since.
func TestWriteAcrossRestart(t *testing.T) {
	dir := shmDir(t)
	first := openDir(t, Options{Dir: dir})
	mustWrite(t, first, file("alpha", "value"))
	before := stat(t, first.Path("alpha"))

	second := openDir(t, Options{Dir: dir})
	if mustWrite(t, second, file("alpha", "value")) {
		t.Fatal("identical file from an earlier run reported changed")
	}
	if after := stat(t, second.Path("alpha")); after.Ino != before.Ino {
		t.Fatal("identical file from an earlier run was rewritten")
	}
	if err := os.WriteFile(second.Path("beta"), []byte("planted"), 0o644); err != nil {
		t.Fatal(err)
	}
	if !mustWrite(t, second, file("beta", "value")) {
		t.Fatal("first write of a name absent at Open reported unchanged")
	}
	assertContent(t, second.Path("beta"), "value")
	if mustWrite(t, second, file("beta", "value")) {
		t.Fatal("second identical write reported changed")
	}
}

func TestWriteDetectsChange(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, d *Dir) // runs after "alpha" holds "value" mode 0440
		next    File
		changed bool
	}{
		{name: "same", next: file("alpha", "value"), changed: false},
		{name: "same length other bytes", next: file("alpha", "VALUE"), changed: true},
		{name: "longer", next: file("alpha", "value\n"), changed: true},
		{name: "shorter", next: file("alpha", "valu"), changed: true},
		{name: "empty", next: file("alpha", ""), changed: true},
		{name: "mode", next: File{Name: "alpha", Data: secret.FromString("value"), Mode: 0o400, UID: -1, GID: -1}, changed: true},
		{
			name: "replaced by a symlink to an identical file",
			prepare: func(t *testing.T, d *Dir) {
				mustWrite(t, d, file("twin", "value"))
				os.Remove(d.Path("alpha"))
				if err := os.Symlink("twin", d.Path("alpha")); err != nil {
					t.Fatal(err)
				}
			},
			next: file("alpha", "value"), changed: true,
		},
		{
			name: "replaced by a fifo",
			prepare: func(t *testing.T, d *Dir) {
				os.Remove(d.Path("alpha"))
				if err := syscall.Mkfifo(d.Path("alpha"), 0o440); err != nil {
					t.Fatal(err)
				}
			},
			next: file("alpha", "value"), changed: true,
		},
		{
			name: "changed behind our back",
			prepare: func(t *testing.T, d *Dir) {
				// In place, keeping inode and mode: only the bytes differ.
				chmod(t, d.Path("alpha"), 0o640)
				if err := os.WriteFile(d.Path("alpha"), []byte("VALUE"), 0o640); err != nil {
					t.Fatal(err)
				}
				chmod(t, d.Path("alpha"), 0o440)
			},
			next: file("alpha", "value"), changed: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := openDir(t, Options{Dir: shmDir(t)})
			mustWrite(t, d, file("alpha", "value"))
			if tt.prepare != nil {
				tt.prepare(t, d)
			}
			if got := mustWrite(t, d, tt.next); got != tt.changed {
				t.Fatalf("changed = %v, want %v", got, tt.changed)
			}
			assertContent(t, d.Path("alpha"), string(tt.next.Data.Reveal()))
			if info, _ := os.Stat(d.Path("alpha")); info.Mode().Perm() != tt.next.Mode {
				t.Fatalf("mode %v, want %v", info.Mode().Perm(), tt.next.Mode)
			}
		})
	}
}

func TestWriteModeOwner(t *testing.T) {
	d := openDir(t, Options{Dir: shmDir(t)})
	// The mode is exact whatever the umask.
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	mustWrite(t, d, File{Name: "alpha", Data: secret.FromString("v"), Mode: 0o444, UID: -1, GID: -1})
	st := stat(t, d.Path("alpha"))
	if fs.FileMode(st.Mode).Perm() != 0o444 {
		t.Fatalf("mode %o, want 444", st.Mode&0o777)
	}
	if int(st.Uid) != os.Geteuid() {
		t.Fatalf("uid %d, want the sidecar's %d when UID is -1", st.Uid, os.Geteuid())
	}

	if os.Geteuid() != 0 {
		t.Skip("changing a file's owner to another uid needs root")
	}
	owned := File{Name: "alpha", Data: secret.FromString("v"), Mode: 0o440, UID: 12345, GID: 23456}
	if !mustWrite(t, d, owned) {
		t.Fatal("owner change reported unchanged")
	}
	st = stat(t, d.Path("alpha"))
	if st.Uid != 12345 || st.Gid != 23456 || st.Mode&0o777 != 0o440 {
		t.Fatalf("got %d:%d %o, want 12345:23456 440", st.Uid, st.Gid, st.Mode&0o777)
	}
	if mustWrite(t, d, owned) {
		t.Fatal("same owner reported changed")
	}
	// -1 leaves the owner alone and does not count as a difference.
	if mustWrite(t, d, File{Name: "alpha", Data: secret.FromString("v"), Mode: 0o440, UID: -1, GID: -1}) {
		t.Fatal("UID/GID -1 reported changed")
	}
	owned.GID = 23457
	if !mustWrite(t, d, owned) {
		t.Fatal("group change reported unchanged")
	}
	if st = stat(t, d.Path("alpha")); st.Gid != 23457 {
		t.Fatalf("gid %d, want 23457", st.Gid)
	}
}

// TestPlantedSymlink: a symlink planted at a target is replaced, never
// followed, and what it points to is left untouched.
func TestPlantedSymlink(t *testing.T) {
	outsideDir := t.TempDir()
	outside := filepath.Join(outsideDir, "victim")
	tests := []struct {
		name   string
		target func(dir string) string
	}{
		{"absolute outside", func(string) string { return outside }},
		{"relative outside", func(dir string) string {
			rel, err := filepath.Rel(dir, outside)
			if err != nil {
				t.Fatal(err)
			}
			return rel
		}},
		{"dangling", func(string) string { return filepath.Join(outsideDir, "missing") }},
		{"inside", func(string) string { return "twin" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(outside, []byte("new"), 0o644); err != nil {
				t.Fatal(err)
			}
			d := openDir(t, Options{Dir: shmDir(t)})
			mustWrite(t, d, File{Name: "twin", Data: secret.FromString("new"), Mode: 0o644, UID: -1, GID: -1})
			if err := os.Symlink(tt.target(d.dir), d.Path("alpha")); err != nil {
				t.Fatal(err)
			}
			// Same bytes and mode as what the link points to: still a change.
			if !mustWrite(t, d, File{Name: "alpha", Data: secret.FromString("new"), Mode: 0o644, UID: -1, GID: -1}) {
				t.Fatal("a symlink counted as unchanged")
			}
			assertContent(t, d.Path("alpha"), "new")
			mustWrite(t, d, file("alpha", "newer"))
			assertContent(t, d.Path("alpha"), "newer")
			assertContent(t, outside, "new")
			assertContent(t, d.Path("twin"), "new")
			if _, err := os.Lstat(filepath.Join(outsideDir, "missing")); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("dangling link target was created: %v", err)
			}
		})
	}
}

func TestBadNames(t *testing.T) {
	names := []string{"", ".", "..", "../escape", "a/b", "/abs", "a\x00b", ".hidden", "a..b", tmpPrefix + "x", "..tls_1", strings.Repeat("x", 256)}
	outside := filepath.Join(t.TempDir(), "escape")
	for _, name := range names {
		t.Run(strings.ReplaceAll(name[:min(len(name), 24)], "\x00", "NUL"), func(t *testing.T) {
			d := openDir(t, Options{Dir: shmDir(t)})
			if _, err := d.Write(file(name, "v")); err == nil || !strings.Contains(err.Error(), "sink: write") {
				t.Fatalf("Write(%q) err = %v, want a refusal", name, err)
			}
			if _, err := d.WriteBundle(name, []File{file("tls.crt", "v")}); err == nil {
				t.Fatalf("WriteBundle(%q) succeeded", name)
			}
			if _, err := d.WriteBundle("tls", []File{file(name, "v")}); err == nil {
				t.Fatalf("WriteBundle member %q succeeded", name)
			}
			if err := d.Remove(name); err == nil {
				t.Fatalf("Remove(%q) succeeded", name)
			}
			if left := listDir(t, d.dir); len(left) != 0 {
				t.Fatalf("directory holds %q after refusals", left)
			}
			if _, err := os.Lstat(outside); err == nil {
				t.Fatal("a file escaped the directory")
			}
		})
	}
}

func TestOpenDiskBacked(t *testing.T) {
	dir := diskDir(t)
	fsName, _ := fsTypeOf(t, dir)
	_, err := Open(Options{Dir: dir})
	if err == nil {
		t.Fatal("Open accepted a disk-backed directory without AllowDisk")
	}
	for _, want := range []string{dir, fsName, "not tmpfs or ramfs", "medium: Memory", "output.allow_disk: true"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}

	var logs testenv.Buffer
	d := openDir(t, Options{Dir: dir, AllowDisk: true, Logger: newLogger(&logs)})
	if out := logs.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "path="+dir) || !strings.Contains(out, "component=sink") {
		t.Fatalf("no warning about the disk-backed directory, logs:\n%s", out)
	}
	mustWrite(t, d, file("alpha", "v"))
	assertContent(t, d.Path("alpha"), "v")
}

func TestOpenErrors(t *testing.T) {
	base := shmDir(t)
	regular := filepath.Join(base, "regular")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		dir  string
		want []string
		is   error
	}{
		{"relative", "run/secrets", []string{`"run/secrets"`, "absolute"}, nil},
		{"missing", filepath.Join(base, "missing"), []string{filepath.Join(base, "missing"), "does not exist", "medium: Memory"}, fs.ErrNotExist},
		{"not a directory", regular, []string{regular, "not a directory"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(Options{Dir: tt.dir})
			if err == nil {
				t.Fatal("Open succeeded")
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
		})
	}
}

// TestOpenRemovesLeftovers: what a crash mid-write leaves is removed at
// Open; everything else stays.
func TestOpenRemovesLeftovers(t *testing.T) {
	dir := shmDir(t)
	mk := func(name string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	mkdir := func(name string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		mk(filepath.Join(name, "tls.crt"))
	}
	link := func(target, name string) {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	mk(tmpPrefix + "abc")          // temp file of an interrupted Write
	link("..tls_1", tmpPrefix+"l") // temp symlink of an interrupted swap
	mkdir("..tls_1")               // version never swapped in
	mkdir("..tls_2")               // live version
	link("..tls_2", "tls")
	mkdir("..ca_7") // version of a bundle that no longer exists
	mk("alpha")
	mk(".hidden")      // not ours
	mkdir("..other")   // not ours: no version suffix
	mkdir("..data")    // kubelet's, not ours
	mkdir("..x_1_abc") // not a version

	var logs testenv.Buffer
	openDir(t, Options{Dir: dir, Logger: newLogger(&logs)})
	want := []string{"..data", "..other", "..tls_2", "..x_1_abc", ".hidden", "alpha", "tls"}
	if got := listDir(t, dir); !slices.Equal(got, want) {
		t.Fatalf("after Open: %q, want %q", got, want)
	}
	for _, gone := range []string{tmpPrefix + "abc", tmpPrefix + "l", "..tls_1", "..ca_7"} {
		if !strings.Contains(logs.String(), "path="+filepath.Join(dir, gone)) {
			t.Errorf("removal of %s not logged:\n%s", gone, logs.String())
		}
	}
	assertContent(t, filepath.Join(dir, "tls", "tls.crt"), "x")
}

func TestWriteDirectoryInTheWay(t *testing.T) {
	d := openDir(t, Options{Dir: shmDir(t)})
	if err := os.MkdirAll(d.Path("alpha/sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := d.Write(file("alpha", "v"))
	if err == nil || !strings.Contains(err.Error(), `"alpha"`) || !strings.Contains(err.Error(), "directory is in the way") {
		t.Fatalf("err = %v, want a clear refusal", err)
	}
	if got := listDir(t, d.dir); !slices.Equal(got, []string{"alpha"}) {
		t.Fatalf("directory holds %q, want the temp file removed", got)
	}
}

func TestRemove(t *testing.T) {
	d := openDir(t, Options{Dir: shmDir(t)})
	mustWrite(t, d, file("alpha", "v"))
	if _, err := d.WriteBundle("tls", []File{file("tls.crt", "c")}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alpha", "tls", "missing"} {
		if err := d.Remove(name); err != nil {
			t.Fatalf("Remove(%q): %v", name, err)
		}
	}
	if left := listDir(t, d.dir); len(left) != 0 {
		t.Fatalf("directory holds %q after removing everything", left)
	}
}

// TestOutputDirReplaced: once output.dir is moved, removed or replaced by
// a symlink, writes fail with ErrMoved instead of going where the app no
// longer looks.
func TestOutputDirReplaced(t *testing.T) {
	for _, how := range []string{"moved", "symlink", "other directory"} {
		t.Run(how, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "out")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			d := openDir(t, Options{Dir: dir, AllowDisk: true})
			mustWrite(t, d, file("alpha", "one"))
			if err := d.Check(); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(dir, filepath.Join(parent, "old")); err != nil {
				t.Fatal(err)
			}
			switch how {
			case "symlink":
				if err := os.Symlink(filepath.Join(parent, "old"), dir); err != nil {
					t.Fatal(err)
				}
			case "other directory":
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := d.Write(file("alpha", "two")); !errors.Is(err, ErrMoved) {
				t.Errorf("Write after the directory was %s: %v, want ErrMoved", how, err)
			}
			if _, err := d.WriteBundle("tls", pair(1)); !errors.Is(err, ErrMoved) {
				t.Errorf("WriteBundle: %v, want ErrMoved", err)
			}
			if b, _ := os.ReadFile(filepath.Join(parent, "old", "alpha")); string(b) != "one" {
				t.Errorf("the old directory was written to: %q", b)
			}
		})
	}
}
