package file

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// patience bounds every wait for a wake; generous, since CI machines are
// slow. Nothing is asserted about how fast a wake arrives (see the
// benchmarks for that).
const patience = 10 * time.Second

// watching runs s.Watch on refs until the test ends and returns the channel
// the wakes arrive on, once the initial watches are in place.
func watching(t testing.TB, s *Source, refs ...sources.Ref) <-chan sources.Ref {
	t.Helper()
	wakes := make(chan sources.Ref, 4096)
	ready := make(chan struct{})
	s.onWatched = func() { close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(ctx, refs, func(r sources.Ref) {
			select {
			case wakes <- r:
			default: // a full channel already means "fetch"
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watch returned %v, want nil", err)
			}
		case <-time.After(patience):
			t.Errorf("Watch did not return after cancel")
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Watch returned early: %v", err)
	case <-time.After(patience):
		t.Fatalf("Watch did not set up its watches")
	}
	return wakes
}

// awaitFetch waits for wakes of ref until a Fetch after one of them
// satisfies ok; it fails the test when none does within patience.
func awaitFetch(t testing.TB, s *Source, wakes <-chan sources.Ref, ref sources.Ref, what string, ok func(sources.Object, error) bool) {
	t.Helper()
	deadline := time.After(patience)
	var last error
	for {
		select {
		case r := <-wakes:
			if r.Path != ref.Path {
				continue
			}
			o, err := s.Fetch(context.Background(), ref)
			if ok(o, err) {
				return
			}
			last = err
		case <-deadline:
			t.Fatalf("no wake of %s after which Fetch shows %s (last error: %v)", ref.Path, what, last)
		}
	}
}

func hasValue(want string) func(sources.Object, error) bool {
	return func(o sources.Object, err error) bool { return err == nil && string(o.Value.Reveal()) == want }
}

func hasField(name, want string) func(sources.Object, error) bool {
	return func(o sources.Object, err error) bool {
		if err != nil {
			return false
		}
		v, ok := o.Fields[name]
		return ok && string(v.Reveal()) == want
	}
}

func isNotFound(o sources.Object, err error) bool { return errors.Is(err, sources.ErrNotFound) }

// TestWatch reproduces each way files change on disk, step by step, and
// checks that a wake arrives after which Fetch returns the new content.
func TestWatch(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(t *testing.T, dir string) (ref string)
		change func(t *testing.T, dir string)
		want   func(sources.Object, error) bool
		// between, when set, is a state seen after a first change and
		// before the second (a removed parent, say).
		between func(t *testing.T, dir string)
		mid     func(sources.Object, error) bool
	}{
		{
			name: "kubelet ..data swap, file ref",
			setup: func(t *testing.T, dir string) string {
				kubeletWrite(t, dir, map[string]string{"password": "old", "user": "u"})
				return dir + "/password"
			},
			change: func(t *testing.T, dir string) {
				kubeletWrite(t, dir, map[string]string{"password": "new", "user": "u"})
			},
			want: hasValue("new"),
		},
		{
			name: "kubelet ..data swap, directory ref",
			setup: func(t *testing.T, dir string) string {
				kubeletWrite(t, dir, map[string]string{"password": "old", "user": "u"})
				return dir
			},
			change: func(t *testing.T, dir string) {
				kubeletWrite(t, dir, map[string]string{"password": "new", "user": "u", "token": "t"})
			},
			want: hasField("token", "t"),
		},
		{
			name:  "rename-over (editor, atomic writer)",
			setup: func(t *testing.T, dir string) string { write(t, dir+"/pw", "old"); return dir + "/pw" },
			change: func(t *testing.T, dir string) {
				write(t, dir+"/.pw.tmp", "new")
				if err := os.Rename(dir+"/.pw.tmp", dir+"/pw"); err != nil {
					t.Fatal(err)
				}
			},
			want: hasValue("new"),
		},
		{
			name:   "in-place write",
			setup:  func(t *testing.T, dir string) string { write(t, dir+"/pw", "old"); return dir + "/pw" },
			change: func(t *testing.T, dir string) { write(t, dir+"/pw", "new") },
			want:   hasValue("new"),
		},
		{
			name:  "delete and recreate",
			setup: func(t *testing.T, dir string) string { write(t, dir+"/pw", "old"); return dir + "/pw" },
			change: func(t *testing.T, dir string) {
				if err := os.Remove(dir + "/pw"); err != nil {
					t.Fatal(err)
				}
				write(t, dir+"/pw", "new")
			},
			want: hasValue("new"),
		},
		{
			name:  "in-place write in a directory ref",
			setup: func(t *testing.T, dir string) string { write(t, dir+"/d/a", "old"); return dir + "/d" },
			change: func(t *testing.T, dir string) {
				write(t, dir+"/d/a", "new")
			},
			want: hasField("a", "new"),
		},
		{
			name:  "parent directory removed and recreated",
			setup: func(t *testing.T, dir string) string { write(t, dir+"/run/pw", "old"); return dir + "/run/pw" },
			between: func(t *testing.T, dir string) {
				if err := os.RemoveAll(dir + "/run"); err != nil {
					t.Fatal(err)
				}
			},
			mid:    isNotFound,
			change: func(t *testing.T, dir string) { write(t, dir+"/run/pw", "new") },
			want:   hasValue("new"),
		},
		{
			name:  "directory ref removed and recreated",
			setup: func(t *testing.T, dir string) string { write(t, dir+"/d/a", "old"); return dir + "/d" },
			between: func(t *testing.T, dir string) {
				if err := os.RemoveAll(dir + "/d"); err != nil {
					t.Fatal(err)
				}
			},
			mid:    isNotFound,
			change: func(t *testing.T, dir string) { write(t, dir+"/d/a", "new") },
			want:   hasField("a", "new"),
		},
		{
			name:   "directory that does not exist yet",
			setup:  func(t *testing.T, dir string) string { return dir + "/later/deeper/pw" },
			change: func(t *testing.T, dir string) { write(t, dir+"/later/deeper/pw", "new") },
			want:   hasValue("new"),
		},
		{
			name: "symlink to a file elsewhere, changed in place",
			setup: func(t *testing.T, dir string) string {
				write(t, dir+"/store/pw", "old")
				os.Mkdir(dir+"/app", 0o755)
				symlink(t, "../store/pw", dir+"/app/pw")
				return dir + "/app/pw"
			},
			change: func(t *testing.T, dir string) { write(t, dir+"/store/pw", "new") },
			want:   hasValue("new"),
		},
		{
			name: "symlink into a kubelet volume, swapped",
			setup: func(t *testing.T, dir string) string {
				os.Mkdir(dir+"/vol", 0o755)
				kubeletWrite(t, dir+"/vol", map[string]string{"pw": "old"})
				os.Mkdir(dir+"/app", 0o755)
				symlink(t, "../vol/pw", dir+"/app/pw")
				return dir + "/app/pw"
			},
			change: func(t *testing.T, dir string) { kubeletWrite(t, dir+"/vol", map[string]string{"pw": "new"}) },
			want:   hasValue("new"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			ref := fileRef(tt.setup(t, dir))
			s := New(Options{})
			wakes := watching(t, s, ref)
			if tt.between != nil {
				tt.between(t, dir)
				awaitFetch(t, s, wakes, ref, "the intermediate state", tt.mid)
			}
			tt.change(t, dir)
			awaitFetch(t, s, wakes, ref, "the new content", tt.want)
		})
	}
}

// One watcher serves many refs; a change wakes the ref it concerns.
func TestWatchManyRefs(t *testing.T) {
	dir := t.TempDir()
	var refs []sources.Ref
	for _, name := range []string{"a", "b", "c"} {
		write(t, filepath.Join(dir, name), "old")
		refs = append(refs, fileRef(filepath.Join(dir, name)))
	}
	kubeletWrite(t, dir+"/vol", map[string]string{"x": "old"})
	refs = append(refs, fileRef(dir+"/vol"), fileRef(dir+"/vol/x"))
	s := New(Options{})
	wakes := watching(t, s, refs...)

	write(t, dir+"/b", "new")
	awaitFetch(t, s, wakes, refs[1], "b's new content", hasValue("new"))
	kubeletWrite(t, dir+"/vol", map[string]string{"x": "new"})
	awaitFetch(t, s, wakes, refs[3], "the new generation", hasField("x", "new"))
	awaitFetch(t, s, wakes, refs[4], "the new generation", hasValue("new"))
}

// The mapping of events to refs, checked without a filesystem.
func TestWatchEventMapping(t *testing.T) {
	const (
		fileRefIdx = 0 // /v/pw
		dirRefIdx  = 1 // /d
	)
	newSet := func() *watchSet {
		return &watchSet{
			refs:    []sources.Ref{fileRef("/v/pw"), fileRef("/d")},
			dirs:    map[string]*dirWatch{"/v": {matches: []match{{fileRefIdx, "pw"}}}, "/d": {matches: []match{{dirRefIdx, ""}}}, "/": {matches: []match{{dirRefIdx, "d"}}}},
			later:   map[int]time.Time{},
			missing: map[int]bool{},
			settle:  defaultSettle,
			logger:  New(Options{}).logger,
		}
	}
	tests := []struct {
		name         string
		ev           fsnotify.Event
		now, settled []int
		recheck      bool
	}{
		{"create of the file wakes at once", fsnotify.Event{Name: "/v/pw", Op: fsnotify.Create}, []int{fileRefIdx}, nil, true},
		{"write settles", fsnotify.Event{Name: "/v/pw", Op: fsnotify.Write}, nil, []int{fileRefIdx}, false},
		{"chmod settles", fsnotify.Event{Name: "/v/pw", Op: fsnotify.Chmod}, nil, []int{fileRefIdx}, false},
		{"remove settles", fsnotify.Event{Name: "/v/pw", Op: fsnotify.Remove}, nil, []int{fileRefIdx}, true},
		{"..data swap wakes the file at once", fsnotify.Event{Name: "/v/..data", Op: fsnotify.Create}, []int{fileRefIdx}, nil, true},
		{"a sibling file is ignored", fsnotify.Event{Name: "/v/other", Op: fsnotify.Create}, nil, nil, false},
		{"kubelet's new generation is ignored", fsnotify.Event{Name: "/v/..2024_01_01_00_00_00.1", Op: fsnotify.Create}, nil, nil, false},
		{"..data_tmp is ignored", fsnotify.Event{Name: "/d/..data_tmp", Op: fsnotify.Create}, nil, nil, false},
		{"any visible file wakes a directory ref", fsnotify.Event{Name: "/d/new", Op: fsnotify.Create}, []int{dirRefIdx}, nil, true},
		{"hidden files do not", fsnotify.Event{Name: "/d/.swp", Op: fsnotify.Write}, nil, nil, false},
		{"..data swap wakes a directory ref", fsnotify.Event{Name: "/d/..data", Op: fsnotify.Create}, []int{dirRefIdx}, nil, true},
		{"the directory itself removed", fsnotify.Event{Name: "/d", Op: fsnotify.Remove}, nil, []int{dirRefIdx}, true},
		{"an unwatched directory", fsnotify.Event{Name: "/x/pw", Op: fsnotify.Create}, nil, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws := newSet()
			now, recheck := map[int]bool{}, map[int]bool{}
			ws.event(tt.ev, now, recheck)
			if got := sortedKeys(now); !equalInts(got, tt.now) {
				t.Errorf("woken now = %v, want %v", got, tt.now)
			}
			if got := sortedKeys(ws.later); !equalInts(got, tt.settled) {
				t.Errorf("settling = %v, want %v", got, tt.settled)
			}
			if got := len(recheck) > 0; got != tt.recheck {
				t.Errorf("recheck = %v, want %v", got, tt.recheck)
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A burst of writes within the settling window is one wake.
func TestWatchCoalescesBursts(t *testing.T) {
	dir := t.TempDir()
	write(t, dir+"/pw", "v0")
	ref := fileRef(dir + "/pw")
	s := New(Options{})
	s.settle = time.Hour // nothing settles during the test by itself
	wakes := watching(t, s, ref)
	for i := range 50 {
		write(t, dir+"/pw", "v"+string(rune('a'+i%26)))
	}
	// A create afterwards wakes at once, while the writes are still
	// settling: exactly one wake must be queued by then.
	write(t, dir+"/.tmp", "final")
	if err := os.Rename(dir+"/.tmp", dir+"/pw"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-wakes:
	case <-time.After(patience):
		t.Fatal("no wake")
	}
	select {
	case r := <-wakes:
		t.Fatalf("a second wake (%s) before the settling window ended", r.Path)
	default:
	}
}

// Watch returns nil on cancel and leaves no goroutine behind.
func TestWatchStopsCleanly(t *testing.T) {
	dir := t.TempDir()
	write(t, dir+"/pw", "x")
	before := runtime.NumGoroutine()
	for _, refs := range [][]sources.Ref{
		{fileRef(dir + "/pw"), fileRef(dir + "/missing/pw"), fileRef(dir)},
		{{Kind: sources.Vault, Path: "secret/x"}}, // nothing to watch
	} {
		s := New(Options{})
		ready := make(chan struct{})
		s.onWatched = func() { close(ready) }
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Watch(ctx, refs, func(sources.Ref) {}) }()
		<-ready
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Watch = %v, want nil", err)
			}
		case <-time.After(patience):
			t.Fatal("Watch did not return after cancel")
		}
	}
	// Goroutines that have returned may take a moment to be reaped.
	deadline := time.Now().Add(patience)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after Watch returned, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched()
	}
}
