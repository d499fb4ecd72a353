package file

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

const (
	// defaultSettle is how long Write, Chmod, Remove and Rename events wait
	// before they wake: an in-place write is then usually finished and a
	// delete usually followed by its re-create, and a burst costs one fetch.
	defaultSettle = 20 * time.Millisecond
	// retryMin and retryMax bound the backoff for directories that cannot
	// be watched yet (missing, or the inotify limit reached).
	retryMin = 20 * time.Millisecond
	retryMax = 2 * time.Second
	// maxHops bounds how many symlinks of a ref's final component are
	// followed to find directories worth watching.
	maxHops = 8
	// maxSettle bounds how long a burst of events that never pauses
	// holds back its wake.
	maxSettle = time.Second
)

// Watch calls wake(ref) when a file ref may have changed, until ctx ends; it
// returns nil then, after its watcher is closed. Refs of other kinds are
// ignored. wake is called from Watch's goroutine and should not block.
//
// Watches are set on directories, never on the files: the parent of every
// ref, the directory of a directory ref, the ..data generation it points at,
// and the directories a ref's symlinks lead through. An editor's rename-over
// and kubelet's ..data swap replace the files, which would kill a watch on
// them. A create (which includes a rename onto the name) wakes at once, since
// renames are how files are replaced atomically; writes, mode changes, removes
// and renames away wake after a short settling window, coalesced. Directories
// that do not exist yet, or that vanish, are retried with backoff and their
// refs woken once watched again. Bind-mounted files changed from outside the
// mount namespace raise no events; the engine's periodic re-check covers them.
func (s *Source) Watch(ctx context.Context, refs []sources.Ref, wake func(sources.Ref)) error {
	var files []sources.Ref
	for _, r := range refs {
		if r.Kind == sources.File {
			files = append(files, r)
		}
	}
	if len(files) == 0 {
		if s.onWatched != nil {
			s.onWatched()
		}
		<-ctx.Done()
		return nil
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("file: start watcher: %w", err)
	}
	settle := s.settle
	if settle <= 0 {
		settle = defaultSettle
	}
	ws := &watchSet{
		w:       w,
		logger:  s.logger,
		refs:    files,
		dirsOf:  make([][]string, len(files)),
		dirs:    map[string]*dirWatch{},
		missing: map[int]bool{},
		later:   map[int]time.Time{},
		first:   map[int]time.Time{},
		settle:  settle,
	}
	err = ws.run(ctx, wake, s.onWatched)
	if cerr := w.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("file: close watcher: %w", cerr)
	}
	return err
}

// match says which names in a watched directory concern a ref.
type match struct {
	ref  int
	name string // one entry; "" means every visible entry (a directory ref)
}

// dirWatch is one watched directory and the refs it serves.
type dirWatch struct {
	matches []match
	active  bool        // the fsnotify watch is in place
	fi      os.FileInfo // what was watched, to notice a replaced directory
	warned  bool        // a non-ENOENT add error has been logged
}

type watchSet struct {
	w       *fsnotify.Watcher
	logger  *slog.Logger
	refs    []sources.Ref
	dirsOf  [][]string // per ref, the directories it has matches in
	dirs    map[string]*dirWatch
	missing map[int]bool      // refs with a wanted directory not watched
	later   map[int]time.Time // settling wakes, per ref
	first   map[int]time.Time // when the burst behind a settling wake began
	settle  time.Duration

	retryAt    time.Time
	retryDelay time.Duration
}

func (ws *watchSet) run(ctx context.Context, wake func(sources.Ref), onWatched func()) error {
	all := make([]int, len(ws.refs))
	for i := range all {
		all[i] = i
	}
	ws.reconcile(all, true)
	if onWatched != nil {
		onWatched()
	}

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	now := map[int]bool{}
	recheck := map[int]bool{}
	for {
		ws.arm(timer)
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-ws.w.Events:
			if !ok {
				return nil
			}
			ws.event(ev, now, recheck)
			// Take what else is queued, so a burst is one round.
		drain:
			for range 256 {
				select {
				case ev, ok := <-ws.w.Events:
					if !ok {
						break drain
					}
					ws.event(ev, now, recheck)
				default:
					break drain
				}
			}
		case err, ok := <-ws.w.Errors:
			if !ok {
				return nil
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// Events were lost: assume everything changed.
				ws.logger.Warn("file watch queue overflowed, re-checking every file ref", "err", err)
				for i := range ws.refs {
					now[i] = true
					recheck[i] = true
				}
			} else {
				ws.logger.Warn("file watch error", "err", err)
			}
		case <-timer.C:
			t := time.Now()
			for i, due := range ws.later {
				if !due.After(t) {
					now[i] = true
					delete(ws.later, i)
					delete(ws.first, i)
				}
			}
			if !ws.retryAt.IsZero() && !ws.retryAt.After(t) {
				ws.retryAt = time.Time{}
				for i := range ws.missing {
					recheck[i] = true
				}
			}
		}

		if len(recheck) > 0 {
			for _, i := range ws.reconcile(sortedKeys(recheck), false) {
				now[i] = true
			}
			clear(recheck)
		}
		// Ref order, so a batch wakes deterministically.
		for _, i := range sortedKeys(now) {
			if ctx.Err() != nil {
				return nil
			}
			wake(ws.refs[i])
		}
		clear(now)
	}
}

// arm sets timer to the next settling wake or retry.
func (ws *watchSet) arm(timer *time.Timer) {
	var next time.Time
	for _, due := range ws.later {
		if next.IsZero() || due.Before(next) {
			next = due
		}
	}
	if !ws.retryAt.IsZero() && (next.IsZero() || ws.retryAt.Before(next)) {
		next = ws.retryAt
	}
	if next.IsZero() {
		timer.Stop()
		return
	}
	timer.Reset(max(time.Until(next), 0))
}

// event maps one fsnotify event to the refs it concerns: now for wakes at
// once, ws.later for settling ones, recheck for refs whose watched
// directories may have changed.
func (ws *watchSet) event(ev fsnotify.Event, now, recheck map[int]bool) {
	structural := ev.Has(fsnotify.Create) || ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename)

	// The watched directory itself went away or was moved: its watch is
	// gone (or now watches the wrong place).
	if d, ok := ws.dirs[ev.Name]; ok && (ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename)) {
		ws.drop(ev.Name, d)
		for _, m := range d.matches {
			recheck[m.ref] = true
			ws.settleWake(m.ref)
		}
	}

	dir, name := filepath.Dir(ev.Name), filepath.Base(ev.Name)
	d, ok := ws.dirs[dir]
	if !ok {
		return
	}
	ws.logger.Debug("file event "+ev.Op.String(), "path", ev.Name)
	for _, m := range d.matches {
		if !m.concerns(name) {
			continue
		}
		if structural {
			recheck[m.ref] = true
		}
		if ev.Has(fsnotify.Create) {
			now[m.ref] = true
		} else {
			ws.settleWake(m.ref)
		}
	}
}

func (m match) concerns(name string) bool {
	if name == dataDir {
		return true
	}
	if m.name == "" {
		return !strings.HasPrefix(name, ".")
	}
	return name == m.name
}

// settleWake schedules a wake for ref i one settling window after the last
// event of a burst, so a write still in progress is not read half done; a
// burst that never pauses still wakes after maxSettle.
func (ws *watchSet) settleWake(i int) {
	t := time.Now()
	if ws.first == nil {
		ws.first = map[int]time.Time{}
	}
	start, ok := ws.first[i]
	if !ok {
		start = t
		ws.first[i] = t
	}
	due := t.Add(ws.settle)
	if capAt := start.Add(maxSettle); capAt.Before(due) {
		due = capAt
	}
	ws.later[i] = due
}

// drop forgets the fsnotify watch of dir, which is gone or stale.
func (ws *watchSet) drop(dir string, d *dirWatch) {
	if d.active {
		// Usually already removed by fsnotify when the directory went.
		_ = ws.w.Remove(dir)
	}
	d.active = false
	d.fi = nil
}

// reconcile recomputes the directories refs idx want, adds and removes
// watches to match, and returns the refs to wake because a directory of
// theirs is watched again (events in between were missed). The initial
// round wakes nothing: the engine fetches everything at start anyway.
func (ws *watchSet) reconcile(idx []int, initial bool) []int {
	touched := map[string]bool{}
	for _, i := range idx {
		want := ws.desired(i)
		for _, dir := range ws.dirsOf[i] {
			touched[dir] = true
			if d := ws.dirs[dir]; d != nil {
				d.matches = slices.DeleteFunc(d.matches, func(m match) bool { return m.ref == i })
			}
		}
		ws.dirsOf[i] = ws.dirsOf[i][:0]
		for _, wm := range want {
			d := ws.dirs[wm.dir]
			if d == nil {
				d = &dirWatch{}
				ws.dirs[wm.dir] = d
			}
			d.matches = append(d.matches, match{ref: i, name: wm.name})
			if !slices.Contains(ws.dirsOf[i], wm.dir) {
				ws.dirsOf[i] = append(ws.dirsOf[i], wm.dir)
			}
			touched[wm.dir] = true
		}
	}

	woken := map[int]bool{}
	for _, dir := range sortedKeys(touched) {
		d := ws.dirs[dir]
		if len(d.matches) == 0 {
			ws.drop(dir, d)
			delete(ws.dirs, dir)
			continue
		}
		if ws.ensure(dir, d) && !initial {
			for _, m := range d.matches {
				woken[m.ref] = true
			}
		}
	}

	for _, i := range idx {
		ok := true
		for _, dir := range ws.dirsOf[i] {
			if !ws.dirs[dir].active {
				ok = false
				break
			}
		}
		switch {
		case ok:
			delete(ws.missing, i)
		case !ws.missing[i]:
			ws.missing[i] = true
			if ws.retryAt.IsZero() {
				// A directory newly lost: start the backoff afresh.
				ws.retryDelay = 0
			}
		}
	}
	if len(ws.missing) == 0 {
		ws.retryAt, ws.retryDelay = time.Time{}, 0
	} else if ws.retryAt.IsZero() {
		ws.retryDelay = min(max(2*ws.retryDelay, retryMin), retryMax)
		ws.retryAt = time.Now().Add(ws.retryDelay)
	}
	return sortedKeys(woken)
}

// ensure makes d's watch match the directory now at dir; it reports whether
// a watch was newly added.
func (ws *watchSet) ensure(dir string, d *dirWatch) bool {
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() {
		ws.drop(dir, d)
		return false
	}
	if d.active {
		if os.SameFile(fi, d.fi) {
			return false
		}
		ws.drop(dir, d) // replaced by another directory of the same name
	}
	if err := ws.w.Add(dir); err != nil {
		if !errors.Is(err, fs.ErrNotExist) && !d.warned {
			d.warned = true
			ws.logger.Warn("cannot watch directory (inotify limits: fs.inotify.max_user_watches); retrying with backoff, periodic re-checks continue", "path", dir, "err", err)
		}
		return false
	}
	d.active, d.fi, d.warned = true, fi, false
	return true
}

type wantDir struct {
	dir  string // as watched: symlinks resolved
	name string
}

// desired lists the directories ref i wants watched: the parent of its path
// and of every symlink hop from it, the directory itself when it is one, and
// the ..data generation inside that.
func (ws *watchSet) desired(i int) []wantDir {
	p := filepath.Clean(ws.refs[i].Path)
	var out []wantDir
	add := func(dir, name string) {
		w := wantDir{dir: resolve(dir), name: name}
		if !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	parent := func(path string) { add(filepath.Dir(path), filepath.Base(path)) }

	// A symlinked directory on the way (current -> releases/7) is watched
	// from its parent, so swapping it wakes the ref.
	linkedDirs := func(path string) {
		for a := filepath.Dir(path); a != filepath.Dir(a); a = filepath.Dir(a) {
			if fi, err := os.Lstat(a); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
				parent(a)
			}
		}
	}
	parent(p)
	linkedDirs(p)
	q := p
	for range maxHops {
		target, err := os.Readlink(q)
		if err != nil {
			break
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(q), target)
		}
		q = filepath.Clean(target)
		parent(q)
		linkedDirs(q)
	}
	if fi, err := os.Stat(p); err == nil && fi.IsDir() {
		add(p, "")
		if gen, ok, _ := generation(resolve(p)); ok {
			add(gen, "")
		}
	}
	return out
}

// resolve returns dir with symlinks resolved, or dir itself when that fails
// (it does not exist yet); fsnotify reports events under the watched name.
func resolve(dir string) string {
	if r, err := filepath.EvalSymlinks(dir); err == nil {
		return r
	}
	return dir
}

func sortedKeys[K interface{ ~int | ~string }, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
