package file

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// An in-place write that takes longer than the settling window (a slow
// writer, `cat big > file` in chunks): what does a watcher-driven fetch see?
func TestRaceSlowInPlaceWrite(t *testing.T) {
	// Opt-in: an in-place write is not atomic, and a reader can narrow the
	// window but not close it (a rewrite of the same size within one
	// timestamp tick, a writer pausing longer than the settling window).
	// The fixes it drove (re-stat after a read, wake after the last event
	// of a burst) hold in tens of loaded runs, but not always.
	if os.Getenv("PHASE_STRESS") == "" {
		t.Skip("set PHASE_STRESS=1 to run this stress test")
	}
	p := filepath.Join(t.TempDir(), "cfg")
	full := func(c string) string { return strings.Repeat(c, 4*1024) }
	write(t, p, full("a"))
	s := New(Options{})
	wakes := watching(t, s, fileRef(p))
	var partial, ok int
	for round := 0; round < 10; round++ {
		c := string(rune('b' + round))
		go func() {
			f, _ := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
			for i := 0; i < 4; i++ {
				f.Write([]byte(strings.Repeat(c, 1024)))
				time.Sleep(10 * time.Millisecond)
			}
			f.Close()
		}()
		deadline := time.After(300 * time.Millisecond)
	loop:
		for {
			select {
			case <-wakes:
				o, err := s.Fetch(context.Background(), fileRef(p))
				if err != nil {
					continue
				}
				if v := string(o.Value.Reveal()); v != full(c) && v != full(string(rune(c[0]-1))) && !(round == 0 && v == full("a")) {
					partial++
					t.Logf("round %d: woken fetch returned %d bytes, success", round, len(v))
				} else {
					ok++
				}
			case <-deadline:
				break loop
			}
		}
	}
	if partial > 0 {
		t.Errorf("%d woken fetches returned a half-written file as success (%d whole)", partial, ok)
	}
}
