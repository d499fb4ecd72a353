package file

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// member is one ref of a group, placed under the group's anchor.
type member struct {
	i    int    // index in the refs given to FetchGroup
	path string // the ref's clean path, for errors
	rel  string // the path below the anchor; "." for the anchor itself
}

// FetchGroup reads every ref as Fetch would, except that refs anchored in
// one swapped directory are read from one generation of it (see readGroup).
// Refs outside such a layout, and an anchor only one ref leads to, are read
// with Fetch.
func (s *Source) FetchGroup(ctx context.Context, refs []sources.Ref) []sources.Result {
	groups := map[string][]member{}
	var anchors []string
	for i, ref := range refs {
		if ref.Kind != sources.File || !filepath.IsAbs(ref.Path) {
			continue // Fetch says why
		}
		path := filepath.Clean(ref.Path)
		a, rel, ok := anchor(path)
		if !ok {
			continue
		}
		if groups[a] == nil {
			anchors = append(anchors, a)
		}
		groups[a] = append(groups[a], member{i: i, path: path, rel: rel})
	}

	results := make([]sources.Result, len(refs))
	done := make([]bool, len(refs))
	for _, a := range anchors {
		ms := groups[a]
		if len(ms) < 2 {
			continue // one open of one ref is consistent already
		}
		for j, r := range s.readGroup(ctx, a, ms) {
			results[ms[j].i], done[ms[j].i] = r, true
		}
	}
	for i, ref := range refs {
		if !done[i] {
			o, err := s.Fetch(ctx, ref)
			results[i] = sources.Result{Object: o, Err: err}
		}
	}
	return results
}

// anchor finds the directory whose swap decides which generation path is
// read from, and the path below it: the deepest symlinked directory on the
// way, after following the entry's own symlinks (tls.crt -> ..data/tls.crt,
// app.pem -> current/app.pem). A directory holding ..data anchors there, as
// its files do. ok is false when no directory on the way is a symlink:
// nothing there is replaced whole, and Fetch reads it alone.
//
// A symlink is followed here only if its target has no ".." (joined
// lexically, one with ".." can name another place than the kernel reaches);
// the rest of such a chain is left to the open, below the anchor.
//
// A file ref is anchored by its links alone (Lstat, Readlink), never by
// opening its target: during a swap the target a path resolved to a moment
// ago may be gone already (kubelet removes the old generation right after
// the swap), and a member that failed to anchor would be read on its own,
// from whichever generation its open found.
func anchor(path string) (dir, rel string, ok bool) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		if _, err := os.Lstat(filepath.Join(path, dataDir)); err == nil {
			return filepath.Join(path, dataDir), ".", true
		}
		d, ok := symlinked(path)
		if !ok {
			return "", "", false
		}
		rel, _ = filepath.Rel(d, path)
		return d, rel, true
	}
	for e, hop := path, 0; ; hop++ {
		// The last anchor met wins (/var/run -> /run holds a volume whose
		// ..data is the swap); the path below it is taken from the first
		// entry under it (tls.crt -> tls.crt.v1 inside a release is the
		// release's own choice).
		if d, found := symlinked(filepath.Dir(e)); found && d != dir {
			dir = d
			rel, _ = filepath.Rel(d, e)
		}
		li, err := os.Lstat(e)
		if err != nil || li.Mode()&fs.ModeSymlink == 0 || hop == 8 {
			break
		}
		target, err := os.Readlink(e)
		if err != nil || slices.Contains(strings.Split(filepath.ToSlash(target), "/"), "..") {
			break
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(e), target)
		}
		e = target
	}
	return dir, rel, dir != ""
}

// symlinked returns the deepest of dir and its parents that is a symlink.
func symlinked(dir string) (string, bool) {
	for d := dir; ; d = filepath.Dir(d) {
		if fi, err := os.Lstat(d); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return d, true
		}
		if d == filepath.Dir(d) {
			return "", false
		}
	}
}

// readGroup reads the members anchored at dir from one generation: dir is
// resolved once and every member opened below the directory it resolved to.
// Kubelet removes the old generation file by file right after the swap, and
// a symlinked directory may be swapped mid-read, so the read counts only if
// dir still resolves there afterwards; an overlapped read is retried on the
// new generation, as fetchDir retries.
func (s *Source) readGroup(ctx context.Context, dir string, ms []member) []sources.Result {
	const attempts = 5
	results := make([]sources.Result, len(ms))
	var err error
	for range attempts {
		gen, rerr := filepath.EvalSymlinks(dir)
		if rerr != nil {
			// No generation to read now: each member fails as its own
			// open would (the same error Fetch gives), unless a later
			// attempt finds one.
			for j, m := range ms {
				op, at := "open", m.path
				if m.rel == "." && filepath.Base(dir) == dataDir {
					op, at = "resolve", dir // a volume directory, as fetchDir says
				}
				results[j] = sources.Result{Err: fail(op, at, rerr)}
			}
			err = nil
			continue
		}
		for j, m := range ms {
			if err := ctx.Err(); err != nil {
				return fill(results, sources.Result{Err: err})
			}
			o, err := s.readMember(ctx, filepath.Join(gen, m.rel), m.path)
			results[j] = sources.Result{Object: o, Err: err}
		}
		if s.onGroupRead != nil {
			s.onGroupRead()
		}
		if now, nerr := filepath.EvalSymlinks(dir); nerr == nil && now == gen {
			return results
		}
		err = fmt.Errorf("file: read %q: %w: the directory was replaced during the read", dir, sources.ErrNotFound)
		s.logger.Debug("generation replaced during read, retrying", "path", dir)
	}
	if err == nil {
		return results // the last attempt found no generation
	}
	return fill(results, sources.Result{Err: err})
}

// readMember reads the file or directory at p, one generation's copy of the
// ref path, whose name errors give (a directory's files go by their own).
func (s *Source) readMember(ctx context.Context, p, path string) (sources.Object, error) {
	f, err := open(p)
	if err != nil {
		return sources.Object{}, fail("open", path, err)
	}
	o, isDir, err := s.readFile(f, path)
	if isDir {
		return s.readDir(ctx, p)
	}
	return o, err
}

func fill(results []sources.Result, r sources.Result) []sources.Result {
	for i := range results {
		results[i] = r
	}
	return results
}
