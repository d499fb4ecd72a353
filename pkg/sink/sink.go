// Package sink writes secret files atomically into the output directory
// (normally a tmpfs): every write goes through an os.Root opened on that
// directory, so no name, symlink or ".." can escape it, and readers never see
// an empty, partial or mixed file. Files that must change together are
// published as a bundle by one directory-symlink swap.
package sink

import (
	"github.com/phase-sidecar/phase-sidecar/pkg/secret"

	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// tmpPrefix starts the name of every temporary file and symlink the sink
// creates. Target names cannot start with "." so it never clashes with one,
// and Open removes whatever a crash left behind under it.
const tmpPrefix = ".phase-sidecar-tmp-"

// MaxName is the longest file name most Linux filesystems accept.
const MaxName = 255

// Options configures Open.
type Options struct {
	Dir       string // output.dir, absolute
	AllowDisk bool   // when false, Open refuses a Dir that is not on tmpfs or ramfs
	Logger    *slog.Logger
}

// File is one target to write.
type File struct {
	Name     string       // target name relative to the directory, or a bundle member name
	Data     secret.Value // written byte for byte; plaintext only here, at the write
	Mode     fs.FileMode  // permission bits, e.g. 0440
	UID, GID int          // -1 leaves the owner as the sidecar's
}

// Dir is an open output directory. It is safe for concurrent use as long as
// no two calls write the same name at the same time.
type Dir struct {
	dir    string
	root   *os.Root
	self   *os.File    // the directory itself, kept open to fsync it
	selfFI fs.FileInfo // its identity at Open, to notice a replacement
	logger *slog.Logger

	// atOpen holds the names the directory had when Open listed it, and
	// written the names written since: a name in neither cannot match, so
	// its first write skips the comparison (an Lstat that costs as much as
	// the rename on a first sync of thousands of files).
	atOpen  map[string]struct{}
	written sync.Map
}

// Open opens the output directory, checks that it is memory-backed (unless
// o.AllowDisk), checks that it is writable, and removes the temporary files
// and unreferenced bundle versions a crash left behind.
func Open(o Options) (*Dir, error) {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "sink")
	if !filepath.IsAbs(o.Dir) {
		return nil, fmt.Errorf("sink: output directory %q is not an absolute path: set output.dir to an absolute path such as /run/secrets", o.Dir)
	}
	dir := filepath.Clean(o.Dir)
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, openError(dir, err)
	}
	d := &Dir{dir: dir, root: root, logger: logger}
	if d.self, err = root.Open("."); err != nil {
		root.Close()
		return nil, openError(dir, err)
	}
	if d.selfFI, err = d.self.Stat(); err != nil {
		d.Close()
		return nil, openError(dir, err)
	}
	if err := d.start(o.AllowDisk); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// ErrMoved: output.dir no longer leads to the directory the sidecar opened
// (moved, removed, or replaced by another directory or a symlink). Files
// written into the old one would reach nobody.
var ErrMoved = errors.New("output directory replaced")

// Check reports, wrapping ErrMoved, when the configured path no longer
// names the directory that was opened. It costs one lstat.
func (d *Dir) Check() error {
	fi, err := os.Lstat(d.dir)
	switch {
	case err != nil:
		return fmt.Errorf("sink: output directory %q: %v: %w; the app no longer sees the files: restart the sidecar once the directory is back", d.dir, errors.Unwrap(err), ErrMoved)
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("sink: output directory %q is now a symlink: %w; restart the sidecar", d.dir, ErrMoved)
	case !os.SameFile(fi, d.selfFI):
		return fmt.Errorf("sink: output directory %q is another directory than the one opened: %w; restart the sidecar", d.dir, ErrMoved)
	}
	return nil
}

// ErrDisk: the output directory is not memory-backed and output.allow_disk
// is false. A configuration problem: the caller exits as for a bad config.
var ErrDisk = errors.New("output directory on disk")

func diskError(dir, fsName string) error {
	return fmt.Errorf("sink: output directory %q is on %s, not tmpfs or ramfs, so secrets would reach the disk: "+
		"mount a tmpfs there (Kubernetes: an emptyDir with medium: Memory; Docker: --tmpfs) or set output.allow_disk: true: %w", dir, fsName, ErrDisk)
}

// CheckDisk looks at dir without touching it, for validate: an error
// wrapping ErrDisk when dir exists on a disk-backed file system; nil when
// it is memory-backed or does not exist yet.
func CheckDisk(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return nil // made (or refused) at run time
	}
	defer f.Close()
	name, memory, err := fsType(f)
	if err != nil || memory {
		return nil
	}
	return diskError(dir, name)
}

func (d *Dir) start(allowDisk bool) error {
	fsName, memory, err := fsType(d.self)
	if err != nil {
		return fmt.Errorf("sink: statfs output directory %q: %w", d.dir, err)
	}
	if !memory {
		if !allowDisk {
			return diskError(d.dir, fsName)
		}
		d.logger.Warn("output directory is not tmpfs or ramfs: secrets are written to disk ("+fsName+") because output.allow_disk is true", "path", d.dir)
	}
	if err := d.probe(); err != nil {
		return err
	}
	return d.cleanup()
}

// probe fails early, with the fix in the message, when the directory is not
// writable, rather than at the first secret.
func (d *Dir) probe() error {
	name, f, err := createTemp(d.root, 0o600)
	if err != nil {
		return openError(d.dir, err)
	}
	f.Close()
	if err := d.root.Remove(name); err != nil {
		return openError(d.dir, err)
	}
	return nil
}

// cleanup removes temporary files and symlinks, and bundle versions that no
// symlink in the directory points to: what a crash mid-write leaves.
func (d *Dir) cleanup() error {
	f, err := d.root.Open(".")
	if err != nil {
		return openError(d.dir, err)
	}
	entries, err := f.ReadDir(-1)
	f.Close()
	if err != nil {
		return openError(d.dir, err)
	}
	d.atOpen = make(map[string]struct{}, len(entries))
	linked := make(map[string]bool)
	for _, e := range entries {
		d.atOpen[e.Name()] = struct{}{}
		if e.Type()&fs.ModeSymlink != 0 && !strings.HasPrefix(e.Name(), tmpPrefix) {
			if target, err := d.root.Readlink(e.Name()); err == nil {
				linked[target] = true
			}
		}
	}
	for _, e := range entries {
		name := e.Name()
		var err error
		switch {
		case strings.HasPrefix(name, tmpPrefix):
			err = d.root.RemoveAll(name)
		case e.IsDir() && isVersionDir(name) && !linked[name]:
			err = d.root.RemoveAll(name)
		default:
			continue
		}
		if err != nil {
			return fmt.Errorf("sink: remove leftover %q from an earlier run: %w", d.Path(name), err)
		}
		d.logger.Info("removed leftover from an earlier run", "path", d.Path(name))
	}
	return nil
}

// Exists reports whether name (a target, or "bundle/member") is present,
// without following a symlink at the target itself.
func (d *Dir) Exists(name string) bool {
	_, err := d.root.Lstat(name)
	return err == nil
}

// Path returns the absolute path of a target name; a bundle member is
// "bundle/member".
func (d *Dir) Path(name string) string { return filepath.Join(d.dir, name) }

// Close releases the directory.
func (d *Dir) Close() error {
	var errs []error
	if d.self != nil {
		errs = append(errs, d.self.Close())
	}
	errs = append(errs, d.root.Close())
	return errors.Join(errs...)
}

// Write replaces the target f.Name with f atomically: a reader sees the old
// file or the new one, never a mix. When the target already is a regular
// file with the same bytes, mode and owner, nothing is written and changed
// is false. On error the old target is left intact, the temporary file is
// removed, and the error names the target, says what to do, and wraps the OS
// error (errors.Is(err, syscall.ENOSPC) works); it never holds the data.
// Once the rename has happened the write counts as done: a failure to fsync
// the directory afterwards is only logged.
func (d *Dir) Write(f File) (changed bool, err error) {
	if err := checkName(f.Name); err != nil {
		return false, fmt.Errorf("sink: write %q: %w", f.Name, err)
	}
	if err := d.Check(); err != nil {
		return false, err
	}
	var old fs.FileInfo
	if d.mayExist(f.Name) {
		var same bool
		if old, same = matches(d.root, f.Name, f); same {
			return false, nil
		}
	}
	// A target that used to be a bundle leaves its version directory behind.
	var oldVersion string
	if old != nil && old.Mode()&fs.ModeSymlink != 0 {
		oldVersion = d.currentVersion(f.Name)
	}
	if err := d.replace(f); err != nil {
		return false, writeError("write", f.Name, err)
	}
	d.written.Store(f.Name, struct{}{})
	if oldVersion != "" {
		d.dropVersion(oldVersion)
	}
	return true, nil
}

// mayExist is false for a name that was not in the directory at Open and has
// not been written since. Another process creating it meanwhile changes
// nothing: the rename replaces whatever is there.
func (d *Dir) mayExist(name string) bool {
	if _, ok := d.atOpen[name]; ok {
		return true
	}
	_, ok := d.written.Load(name)
	return ok
}

// replace writes f to a temporary file and renames it over the target.
func (d *Dir) replace(f File) error {
	tmp, file, err := createTemp(d.root, 0o600)
	if err != nil {
		return err
	}
	if err := fill(file, f); err != nil {
		d.root.Remove(tmp)
		return err
	}
	if err := d.root.Rename(tmp, f.Name); err != nil {
		d.root.Remove(tmp)
		return err
	}
	d.syncDir(f.Name)
	return nil
}

// fill writes f's data, mode and owner into file, syncs and closes it.
func fill(file *os.File, f File) error {
	err := func() error {
		if _, err := file.Write(f.Data.Reveal()); err != nil {
			return err
		}
		if err := file.Chmod(f.Mode.Perm()); err != nil {
			return err
		}
		if f.UID >= 0 || f.GID >= 0 {
			if err := file.Chown(f.UID, f.GID); err != nil {
				return fmt.Errorf("set owner to %d:%d: %w", f.UID, f.GID, err)
			}
		}
		return file.Sync()
	}()
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	return err
}

// matches reports whether name in r is a regular file (not a symlink) with
// f's bytes, mode and owner. It also returns what Lstat found, if anything.
func matches(r *os.Root, name string, f File) (fs.FileInfo, bool) {
	info, err := r.Lstat(name)
	if err != nil {
		return nil, false
	}
	if !info.Mode().IsRegular() || info.Size() != int64(f.Data.Len()) || info.Mode().Perm() != f.Mode.Perm() {
		return info, false
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		if (f.UID >= 0 && int(st.Uid) != f.UID) || (f.GID >= 0 && int(st.Gid) != f.GID) {
			return info, false
		}
	}
	// O_NONBLOCK: a FIFO swapped in after the Lstat must not hang us.
	file, err := r.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return info, false
	}
	defer file.Close()
	// Root follows a symlink swapped in after the Lstat; make sure we read
	// the file we inspected.
	if opened, err := file.Stat(); err != nil || !os.SameFile(info, opened) {
		return info, false
	}
	buf := make([]byte, f.Data.Len()+1)
	defer clear(buf)
	n, err := io.ReadFull(file, buf)
	if n != f.Data.Len() || (err != io.ErrUnexpectedEOF && err != io.EOF) {
		return info, false
	}
	return info, bytes.Equal(buf[:n], f.Data.Reveal())
}

// createTemp creates a new temporary file in r, never following or reusing
// an existing entry.
func createTemp(r *os.Root, perm fs.FileMode) (string, *os.File, error) {
	for range 10 {
		name := tmpPrefix + strconv.FormatUint(rand.Uint64(), 36)
		f, err := r.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return name, f, err
	}
	return "", nil, fmt.Errorf("create a temporary file: %w", fs.ErrExist)
}

// Remove removes the target or bundle name; a missing one is not an error.
func (d *Dir) Remove(name string) error {
	if err := checkName(name); err != nil {
		return fmt.Errorf("sink: remove %q: %w", name, err)
	}
	info, err := d.root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return writeError("remove", name, err)
	}
	var version string
	if info.Mode()&fs.ModeSymlink != 0 {
		version = d.currentVersion(name)
	}
	if err := d.root.Remove(name); err != nil {
		return writeError("remove", name, err)
	}
	d.syncDir(name)
	if version != "" {
		d.dropVersion(version)
	}
	return nil
}

// CheckName is the one rule for target and bundle names, used by config
// to refuse them and here as defence in depth: a name that could leave the
// directory, collide with the sink's own hidden entries (".…"), break
// env's output, or not fit a file name. The error says what is wrong and
// what is wanted.
func CheckName(name string) error { return checkName(name) }

func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("is empty; want a plain file name such as db_password")
	case strings.ContainsRune(name, 0):
		return errors.New("contains a NUL byte; want a plain file name")
	case strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return errors.New("contains a control character (below 0x20, or 0x7f), which would break env --format k8s and compose output; want a plain file name")
	case strings.Contains(name, "/") || strings.Contains(name, `\`):
		return errors.New("contains a slash; want a plain file name, without directories (use bundle: for a directory)")
	case strings.Contains(name, ".."):
		return errors.New(`contains ".."; want a plain file name`)
	case strings.HasPrefix(name, "."):
		return errors.New(`starts with "."; names starting with a dot are reserved for the sidecar's own files`)
	case len(name) > MaxName:
		return fmt.Errorf("is longer than %d bytes, the longest file name Linux file systems accept", MaxName)
	}
	return nil
}

// CheckBundleName is CheckName for a bundle directory, which must leave
// room for its versioned directory's name.
func CheckBundleName(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if len(name) > MaxBundle {
		return fmt.Errorf("is longer than %d bytes: its versioned directory ..NAME_<unix nanoseconds> must fit in the %d bytes of a file name", MaxBundle, MaxName)
	}
	return nil
}
