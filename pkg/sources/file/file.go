// Package file is the mounted-file source: it reads secrets from files and
// directories on local disk (Kubernetes secret and configmap volumes,
// Docker/Compose secrets under /run/secrets, plain files) and watches them
// with fsnotify so the engine hears about a change at once.
//
// A ref names a file or a directory:
//
//   - A regular file, or a symlink that resolves to one, is one object whose
//     Value is the file's bytes, unchanged. Its Version is the short SHA-256 of
//     the content.
//   - A directory is one object with a field per regular file directly inside
//     it; the field name is the file name, byte for byte. Symlinks to regular
//     files count (kubelet's volumes look like password -> ..data/password).
//     Names that start with "." are skipped (kubelet's ..data and ..2024_…
//     generation directories, editors' swap and temp files), and so are
//     subdirectories, dangling symlinks and anything that is not a regular
//     file. Its Version hashes the sorted names and contents. The engine maps
//     field NAME of a directory secret REDIS to the target redis_<name>; this
//     package only supplies the names.
//
// Where a directory holds kubelet's ..data symlink, every field is read from
// the one generation ..data points at, and the read counts only if ..data
// still points there afterwards (kubelet removes a generation file by file
// once ..data has moved on), so a directory object never mixes two
// generations or misses files; an overlapped read is retried on the new one.
//
// FetchGroup reads the members of a bundle the same way when they share a
// swapped directory: the files of one kubelet volume (tls.crt ->
// ..data/tls.crt), the files under a directory symlink replaced whole
// (current -> releases/N, app.pem -> current/app.pem), and such a directory
// itself as a directory ref. Each group resolves that directory once, opens
// every member under the one generation it resolved to, and counts only if
// the directory still resolves there afterwards, so a bundle never pairs a
// certificate of one generation with a key of the next. Refs outside such a
// layout are read one by one, as Fetch reads them.
//
// Files larger than Options.MaxSize are refused; at most MaxSize+1 bytes are
// ever read. Errors name the path, never content, and wrap sources.ErrNotFound,
// sources.ErrPermission or sources.ErrTooLarge so the engine can classify them.
package file

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/phase-sidecar/phase-sidecar/pkg/secret"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// DefaultMaxSize applies when Options.MaxSize is zero or negative.
const DefaultMaxSize = 1 << 20

// dataDir is the symlink kubelet's AtomicWriter swaps to publish a generation.
const dataDir = "..data"

// Options configures the source.
type Options struct {
	// MaxSize is the largest file accepted, in bytes (config key
	// max_file_size). Zero means DefaultMaxSize.
	MaxSize int64
	// Logger is used as given: the caller adds component and source.
	Logger *slog.Logger
	// Recheck bounds every file's refresh interval (config key
	// sources.file.recheck): the hash re-check that catches changes a
	// watch missed. Zero means no bound.
	Recheck time.Duration
}

// Source reads and watches mounted files. It is safe for concurrent use.
type Source struct {
	maxSize int64
	logger  *slog.Logger
	recheck time.Duration

	// Test hooks, nil in production.
	settle      time.Duration // coalescing window of Watch; zero means defaultSettle
	onWatched   func()        // called once Watch has set up its initial watches
	onGroupRead func()        // called after a group's members are read, before the check
}

var (
	_ sources.Source  = (*Source)(nil)
	_ sources.Watcher = (*Source)(nil)
	_ sources.Grouper = (*Source)(nil)
)

// New returns a file source.
func New(o Options) *Source {
	if o.MaxSize <= 0 {
		o.MaxSize = DefaultMaxSize
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Source{maxSize: o.MaxSize, logger: o.Logger, recheck: max(o.Recheck, 0)}
}

var _ sources.Rechecker = (*Source)(nil)

// Recheck is Options.Recheck: see sources.Rechecker.
func (s *Source) Recheck() time.Duration { return s.recheck }

// Fetch reads the file or directory ref.Path names.
func (s *Source) Fetch(ctx context.Context, ref sources.Ref) (sources.Object, error) {
	if err := ctx.Err(); err != nil {
		return sources.Object{}, err
	}
	if ref.Kind != sources.File {
		return sources.Object{}, fmt.Errorf("file: ref %s is not a file ref", ref)
	}
	path := filepath.Clean(ref.Path)
	if !filepath.IsAbs(path) {
		return sources.Object{}, fmt.Errorf("file: %q is not an absolute path", ref.Path)
	}

	f, err := open(path)
	// A symlink chain through kubelet's ..data resolves to the old
	// generation while kubelet removes it: not-found, though the name
	// leads to the new generation a moment later. Retry while it is there.
	for i := 0; err != nil && errors.Is(err, fs.ErrNotExist) && i < 3; i++ {
		if _, lerr := os.Lstat(path); lerr != nil {
			break
		}
		f, err = open(path)
	}
	if err != nil {
		return sources.Object{}, fail("open", path, err)
	}
	o, isDir, err := s.readFile(f, path)
	if isDir {
		return s.fetchDir(ctx, path)
	}
	return o, err
}

// readFile reads f, opened at path, as one object and closes it. isDir
// reports a directory, which the caller reads its own way.
func (s *Source) readFile(f *os.File, path string) (o sources.Object, isDir bool, err error) {
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return sources.Object{}, false, fail("stat", path, err)
	}
	switch {
	case fi.Mode().IsRegular():
		b, err := s.readStable(f, fi, path)
		if err != nil {
			return sources.Object{}, false, err
		}
		o := sources.Object{Value: secret.New(b), Version: sources.ShortHash(sha256.Sum256(b))}
		clear(b) // secret.New copied it; leave no stray plaintext for the GC
		return o, false, nil
	case fi.IsDir():
		return sources.Object{}, true, nil
	default:
		return sources.Object{}, false, fmt.Errorf("file: read %q: not a regular file or directory (%s)", path, fi.Mode().Type())
	}
}

// fetchDir reads a directory object, from the generation ..data points at
// when there is one. Kubelet removes the old generation right after the swap,
// so a read that loses a file to that removal starts again on the new one.
func (s *Source) fetchDir(ctx context.Context, dir string) (sources.Object, error) {
	const attempts = 5
	var err error
	for range attempts {
		var gen string
		gen, err = readFrom(dir)
		if err != nil {
			// A ..data that leads nowhere: reading the dir itself would
			// only find dangling symlinks, an empty object.
			continue
		}
		var o sources.Object
		o, err = s.readDir(ctx, gen)
		if gen == dir {
			return o, err
		}
		if err == nil {
			// Kubelet removes a generation only after ..data has moved
			// away from it, file by file: a read that listed the directory
			// mid-removal finds fewer files and no error; and a symlinked
			// directory swapped mid-read was read partly from each side.
			// If the path still leads here, neither happened.
			if now, nerr := readFrom(dir); nerr == nil && now == gen {
				return o, nil
			}
			err = fmt.Errorf("file: read %q: %w: the directory was replaced during the read", gen, sources.ErrNotFound)
		} else if !errors.Is(err, sources.ErrNotFound) {
			return o, err
		}
		s.logger.Debug("generation replaced during read, retrying", "path", dir)
	}
	return sources.Object{}, err
}

// readFrom resolves every symlink on the way to dir, then the ..data
// generation inside it, if any: the one real directory to read.
func readFrom(dir string) (string, error) {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fail("resolve", dir, err)
	}
	gen, ok, err := generation(real)
	if err != nil {
		return "", err
	}
	if ok {
		return gen, nil
	}
	return real, nil
}

// generation resolves dir/..data to the directory it points at; ok is false
// when there is no ..data.
func generation(dir string) (gen string, ok bool, err error) {
	link := filepath.Join(dir, dataDir)
	if _, err := os.Lstat(link); err != nil {
		return "", false, nil
	}
	gen, err = filepath.EvalSymlinks(link)
	if err != nil {
		return "", false, fail("resolve", link, err)
	}
	fi, err := os.Stat(gen)
	if err != nil {
		return "", false, fail("stat", gen, err)
	}
	if !fi.IsDir() {
		return "", false, fmt.Errorf("file: resolve %q: not a directory: %w", link, sources.ErrNotFound)
	}
	return gen, true, nil
}

func (s *Source) readDir(ctx context.Context, dir string) (sources.Object, error) {
	d, err := os.Open(dir)
	if err != nil {
		return sources.Object{}, fail("open", dir, err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return sources.Object{}, fail("list", dir, err)
	}
	slices.Sort(names)

	fields := make(map[string]secret.Value, len(names))
	h := sha256.New()
	var n [8]byte
	for _, name := range names {
		if strings.HasPrefix(name, ".") {
			continue
		}
		if err := ctx.Err(); err != nil {
			return sources.Object{}, err
		}
		p := filepath.Join(dir, name)
		b, ok, err := s.readEntry(p)
		if err != nil {
			return sources.Object{}, err
		}
		if !ok {
			continue
		}
		// Length-prefixed so no two different directories hash alike.
		binary.BigEndian.PutUint64(n[:], uint64(len(name)))
		h.Write(n[:])
		h.Write([]byte(name))
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
		fields[name] = secret.New(b)
		clear(b)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sources.Object{Fields: fields, Version: sources.ShortHash(sum)}, nil
}

// readEntry reads one directory entry; ok is false for entries that are not
// fields (subdirectories, dangling symlinks, devices, fifos, sockets).
func (s *Source) readEntry(path string) (b []byte, ok bool, err error) {
	f, err := open(path)
	if err != nil {
		if isDangling(path, err) {
			s.logger.Debug("skipping dangling symlink", "path", path)
			return nil, false, nil
		}
		return nil, false, fail("open", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, false, fail("stat", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, false, nil
	}
	b, err = s.readStable(f, fi, path)
	return b, err == nil, err
}

// readStable reads f whole and checks that it did not change during the
// read: a file rewritten in place (truncate, then write) can otherwise be
// read empty, cut short or mixed. It re-reads a few times, then gives up.
func (s *Source) readStable(f *os.File, fi fs.FileInfo, path string) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		b, err := s.read(f, fi, path)
		if err != nil {
			return nil, err
		}
		after, err := f.Stat()
		if err != nil {
			clear(b)
			return nil, fail("stat", path, err)
		}
		if same := sameStat(fi, after); same && (s.settled(f, fi, b) || attempt == 4 && len(b) == 0) {
			// An empty file still empty after the waits is simply empty.
			return b, nil
		}
		clear(b)
		if attempt == 4 {
			return nil, fmt.Errorf("file: read %q: the file kept changing during the read", path)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, fail("seek", path, err)
		}
		time.Sleep(2 * time.Millisecond << attempt) // 30 ms in all, past the settling window
		fi = after
	}
}

// settled reports whether b, read from f whose stat is fi, is the whole,
// settled content: its length matches the size (a file that reports size
// zero with content, like procfs, must read the same twice), and an empty
// file was not just truncated by a writer that has yet to write.
func (s *Source) settled(f *os.File, fi fs.FileInfo, b []byte) bool {
	switch {
	case int64(len(b)) == fi.Size() && len(b) > 0:
		return true
	case len(b) == 0:
		st, ok := fi.Sys().(*syscall.Stat_t)
		return !ok || time.Since(time.Unix(st.Ctim.Unix())) > defaultSettle
	case fi.Size() == 0:
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return false
		}
		again, err := s.read(f, fi, "")
		defer clear(again)
		return err == nil && bytes.Equal(again, b)
	}
	return false
}

// sameStat reports whether two stats of one open file show no change.
func sameStat(a, b fs.FileInfo) bool {
	if a.Size() != b.Size() || !a.ModTime().Equal(b.ModTime()) {
		return false
	}
	sa, ok1 := a.Sys().(*syscall.Stat_t)
	sb, ok2 := b.Sys().(*syscall.Stat_t)
	return !ok1 || !ok2 || sa.Ctim == sb.Ctim
}

// isDangling reports whether path failed to open because it is a symlink
// whose target is missing (rather than a file that vanished).
func isDangling(path string, err error) bool {
	if !errors.Is(err, fs.ErrNotExist) {
		return false
	}
	fi, lerr := os.Lstat(path)
	return lerr == nil && fi.Mode()&fs.ModeSymlink != 0
}

// read reads f whole, refusing more than s.maxSize bytes; it never reads
// more than maxSize+1.
func (s *Source) read(f *os.File, fi fs.FileInfo, path string) ([]byte, error) {
	if fi.Size() > s.maxSize {
		return nil, tooLarge(path, fi.Size(), s.maxSize)
	}
	// One byte past the stat size, so a file read whole hits EOF without
	// growing the buffer; files that report size 0 (procfs) grow as needed.
	b := make([]byte, 0, fi.Size()+1)
	for {
		if len(b) == cap(b) {
			b = growCapped(b, s.maxSize+1)
		}
		n, err := f.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if int64(len(b)) > s.maxSize {
			clear(b)
			return nil, tooLarge(path, -1, s.maxSize)
		}
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			clear(b)
			return nil, fail("read", path, err)
		}
	}
}

// growCapped returns b with more capacity, never beyond limit.
func growCapped(b []byte, limit int64) []byte {
	want := max(int64(cap(b))*2, 512)
	want = min(want, limit)
	nb := make([]byte, len(b), want)
	copy(nb, b)
	clear(b)
	return nb
}

// tooLarge names the path, the size (negative when only known to exceed the
// limit) and the limit with the config key that sets it.
func tooLarge(path string, size, limit int64) error {
	got := fmt.Sprintf("more than %d bytes", limit)
	if size >= 0 {
		got = fmt.Sprintf("%d bytes", size)
	}
	return fmt.Errorf("file: read %q: %s, over the limit of %d bytes (max_file_size): %w", path, got, limit, sources.ErrTooLarge)
}

// open opens path for reading without blocking on a fifo, which Fetch then
// refuses as not regular.
func open(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}

// fail wraps err in the sentinel the engine classifies on, next to the
// underlying errno. The errno alone is kept, not the *PathError, whose text
// would repeat the path.
func fail(op, path string, err error) error {
	cause := err
	var pe *fs.PathError
	if errors.As(err, &pe) {
		cause = pe.Err
	}
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("file: %s %q: %w: %w", op, path, sources.ErrNotFound, cause)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("file: %s %q: %w: %w", op, path, sources.ErrPermission, cause)
	default:
		return fmt.Errorf("file: %s %q: %w", op, path, cause)
	}
}
