package file

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// swapLink points link at target atomically (ln -sfn via rename).
func swapLink(t testing.TB, target, link string) {
	tmp := link + ".tmp"
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		t.Error(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Error(err)
	}
}

// A directory ref reached through a symlink that is swapped between
// complete generations (/etc/app/current -> releases/N, Helm/Capistrano style).
func TestRaceDirRefThroughSwappedSymlink(t *testing.T) {
	root := t.TempDir()
	mk := func(i int) string {
		g := filepath.Join(root, fmt.Sprint("gen", i))
		for _, n := range []string{"a", "b", "c", "d"} {
			write(t, filepath.Join(g, n), fmt.Sprint(i))
		}
		return g
	}
	mk(0)
	mk(1)
	cur := filepath.Join(root, "current")
	swapLink(t, "gen0", cur)
	stop := churn(t, func(i int) error { swapLink(t, fmt.Sprint("gen", (i+1)%2), cur); return nil })
	s := New(Options{})
	var mixed, ok, errs int
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		o, err := s.Fetch(context.Background(), fileRef(cur))
		if err != nil {
			errs++
			continue
		}
		f := fields(o)
		if len(f) != 4 || f["a"] != f["b"] || f["b"] != f["c"] || f["c"] != f["d"] {
			mixed++
		} else {
			ok++
		}
	}
	stop()
	t.Logf("ok=%d mixed=%d errs=%d", ok, mixed, errs)
	if mixed > 0 {
		t.Errorf("%d directory objects mixed two generations", mixed)
	}
}

// The same layout, watched: swapping the symlinked directory must wake the ref.
func TestRaceWatchSwappedDirSymlink(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "gen0", "pw"), "v0")
	write(t, filepath.Join(root, "gen1", "pw"), "v1")
	cur := filepath.Join(root, "current")
	swapLink(t, "gen0", cur)
	s := New(Options{})
	s.settle = 5 * time.Millisecond
	fileRefPw, dirRef := fileRef(filepath.Join(cur, "pw")), fileRef(cur)
	wakes := watching(t, s, fileRefPw, dirRef)
	swapLink(t, "gen1", cur)
	got := map[string]bool{}
	timeout := time.After(2 * time.Second)
loop:
	for {
		select {
		case r := <-wakes:
			got[r.Path] = true
		case <-timeout:
			break loop
		}
	}
	if !got[fileRefPw.Path] {
		t.Errorf("file ref %s under a swapped directory symlink was not woken", fileRefPw.Path)
	}
	if !got[dirRef.Path] {
		t.Errorf("dir ref %s (a swapped symlink) was not woken", dirRef.Path)
	}
}
