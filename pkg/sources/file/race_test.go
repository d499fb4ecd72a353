package file

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// Single-file ref dir/key -> ..data/key while ..data swaps.
func TestRaceSingleFileUnderKubeletSwap(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vol")
	kubeletWrite(t, dir, map[string]string{"key": "AAAA"})
	s := New(Options{})
	stop := churn(t, func(i int) error {
		return kubeletSwap(dir, map[string]string{"key": []string{"BBBB", "AAAA"}[i%2]})
	})
	var notFound, bad, ok int
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		o, err := s.Fetch(context.Background(), fileRef(filepath.Join(dir, "key")))
		switch {
		case errors.Is(err, sources.ErrNotFound):
			notFound++
		case err != nil:
			t.Errorf("Fetch: %v", err)
		default:
			v := string(o.Value.Reveal())
			if v != "AAAA" && v != "BBBB" {
				bad++
			} else {
				ok++
			}
		}
	}
	stop()
	t.Logf("ok=%d notFound=%d bad=%d", ok, notFound, bad)
	if bad > 0 {
		t.Errorf("%d fetches returned a value never written", bad)
	}
	if notFound > 0 {
		t.Errorf("%d fetches of a file that always exists returned not-found", notFound)
	}
}

// A file rewritten in place (O_TRUNC then write, as os.WriteFile and `echo >` do).
func TestRaceInPlaceRewrite(t *testing.T) {
	// Opt-in: an in-place write is not atomic, and a reader can narrow the
	// window but not close it (a rewrite of the same size within one
	// timestamp tick, a writer pausing longer than the settling window).
	// The fixes it drove (re-stat after a read, wake after the last event
	// of a burst) hold in tens of loaded runs, but not always.
	if os.Getenv("PHASE_STRESS") == "" {
		t.Skip("set PHASE_STRESS=1 to run this stress test")
	}
	p := filepath.Join(t.TempDir(), "pw")
	a, b := strings.Repeat("a", 3000), strings.Repeat("b", 3000)
	write(t, p, a)
	s := New(Options{})
	stop := churn(t, func(i int) error {
		_ = os.WriteFile(p, []byte([]string{b, a}[i%2]), 0o644) // may race the reader's open: fine
		return nil
	})
	var bad, ok int
	seen := map[int]int{}
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		o, err := s.Fetch(context.Background(), fileRef(p))
		if err != nil {
			continue
		}
		v := string(o.Value.Reveal())
		if v != a && v != b {
			bad++
			seen[len(v)]++
		} else {
			ok++
		}
	}
	stop()
	t.Logf("ok=%d bad=%d lengths=%v", ok, bad, seen)
	if bad > 0 {
		t.Errorf("%d fetches returned success with an empty or partial value", bad)
	}
}

func inotifyWatches(t *testing.T) int {
	ents, _ := os.ReadDir("/proc/self/fdinfo")
	n := 0
	for _, e := range ents {
		b, err := os.ReadFile("/proc/self/fdinfo/" + e.Name())
		if err != nil {
			continue
		}
		n += strings.Count(string(b), "inotify wd:")
	}
	return n
}

// ..data swaps many times: the watch must follow, wake, and not leak.
func TestRaceWatchManySwaps(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vol")
	kubeletWrite(t, dir, map[string]string{"key": "v0", "other": "x"})
	s := New(Options{})
	s.settle = 5 * time.Millisecond
	base := inotifyWatches(t)
	dirRef, keyRef := fileRef(dir), fileRef(filepath.Join(dir, "key"))
	var wakes atomic.Int64
	wch := make(chan sources.Ref, 1<<16)
	ready := make(chan struct{})
	s.onWatched = func() { close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(ctx, []sources.Ref{dirRef, keyRef}, func(r sources.Ref) {
			wakes.Add(1)
			select {
			case wch <- r:
			default:
			}
		})
	}()
	<-ready
	start := inotifyWatches(t)
	for i := 1; i <= 500; i++ {
		kubeletWrite(t, dir, map[string]string{"key": fmt.Sprint("v", i), "other": "x"})
	}
	time.Sleep(300 * time.Millisecond)
	afterBurst := inotifyWatches(t)
	// Drain and then check one more swap still wakes both refs.
	for len(wch) > 0 {
		<-wch
	}
	w0 := wakes.Load()
	kubeletWrite(t, dir, map[string]string{"key": "final", "other": "x"})
	time.Sleep(300 * time.Millisecond)
	got := map[string]bool{}
	for len(wch) > 0 {
		got[(<-wch).Path] = true
	}
	// And it goes quiet.
	w1 := wakes.Load()
	time.Sleep(300 * time.Millisecond)
	w2 := wakes.Load()
	cancel()
	<-done
	t.Logf("watches base=%d start=%d afterBurst=%d; wakes=%d, final-swap wakes=%d, idle wakes=%d", base, start, afterBurst, w0, w1-w0, w2-w1)
	if afterBurst > start {
		t.Errorf("inotify watches grew from %d to %d after 500 swaps", start, afterBurst)
	}
	if !got[dirRef.Path] || !got[keyRef.Path] {
		t.Errorf("after many swaps, a final swap woke %v, want both refs", got)
	}
	if w2 != w1 {
		t.Errorf("watcher keeps waking while idle: %d wakes", w2-w1)
	}
	if o, err := s.Fetch(context.Background(), keyRef); err != nil || string(o.Value.Reveal()) != "final" {
		t.Errorf("final fetch: %v", err)
	}
}

// A ref's parent directory removed and recreated repeatedly: the watch must come back.
func TestRaceWatchDirRecreated(t *testing.T) {
	root := t.TempDir()
	sub := filepath.Join(root, "sub")
	p := filepath.Join(sub, "pw")
	write(t, p, "v0")
	s := New(Options{})
	s.settle = 5 * time.Millisecond
	wakes := watching(t, s, fileRef(p))
	for i := 1; i <= 30; i++ {
		os.RemoveAll(sub)
		if i%3 == 0 {
			time.Sleep(time.Duration(i%7) * time.Millisecond)
		}
		write(t, p, fmt.Sprint("v", i))
	}
	awaitFetch(t, s, wakes, fileRef(p), "v30 after recreations", hasValue("v30"))
	// Now a plain in-place change must still wake.
	time.Sleep(2500 * time.Millisecond) // let any backoff settle
	for len(wakes) > 0 {
		<-wakes
	}
	write(t, p, "final")
	awaitFetch(t, s, wakes, fileRef(p), "final", hasValue("final"))
}
