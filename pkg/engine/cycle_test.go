package engine

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"

	"github.com/phase-sidecar/phase-sidecar/pkg/config"
	"github.com/phase-sidecar/phase-sidecar/pkg/sink"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

// nthFailingSink fails write number n (from 1) with ENOSPC, once.
type nthFailingSink struct {
	Sink
	mu     sync.Mutex
	n, got int
}

func (f *nthFailingSink) Write(file sink.File) (bool, error) {
	f.mu.Lock()
	f.got++
	fail := f.got == f.n
	f.mu.Unlock()
	if fail {
		return false, fmt.Errorf("sink: write %q: %w", file.Name, syscall.ENOSPC)
	}
	return f.Sink.Write(file)
}

// TestPartlyWrittenExpansionBeforeReadyIsInitial: an expanding secret whose
// first write stops half-way, before the sidecar is ready, into a directory
// that held none of its files, reports what it wrote as initial (the app,
// not started yet, reads the files when it starts), and so does the retry
// that writes the rest: the file the failed attempt wrote does not count as
// one that was there before.
func TestPartlyWrittenExpansionBeforeReadyIsInitial(t *testing.T) {
	f := newFixture(t, config.Secret{Name: "DIR", Ref: testenv.Ref(t, "file:///k8s/dir/"), Required: true})
	src := &fakeSource{fetch: func(ref sources.Ref) (sources.Object, error) {
		return kv(map[string]string{"a": "1", "b": "2"}), nil
	}}
	d, err := sink.Open(sink.Options{Dir: f.dir, AllowDisk: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	e, err := New(Options{Config: f.cfg, Sources: map[string]sources.Source{sources.File: src}, Sink: &nthFailingSink{Sink: d, n: 2},
		Metrics: f.m, OnChange: func(c Change) { f.changes <- c }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := e.Once(ctx); err == nil {
		t.Fatal("Once succeeded though the second file could not be written")
	}
	if c := <-f.changes; !c.Initial {
		t.Errorf("partial first write = %+v, want initial: the app has not started", c)
	}
	if err := e.Once(ctx); err != nil {
		t.Fatal(err)
	}
	if c := <-f.changes; !c.Initial {
		t.Errorf("retry of the first write = %+v, want initial", c)
	}
	if got := f.read(t, "dir_a") + f.read(t, "dir_b"); got != "12" {
		t.Errorf("files = %q", got)
	}
}

// TestPartlyWrittenExpansionAfterReadyIsNot: a half-written change of a
// secret already written is news to the app.
func TestPartlyWrittenExpansionAfterReadyIsNot(t *testing.T) {
	f := newFixture(t, config.Secret{Name: "DIR", Ref: testenv.Ref(t, "file:///k8s/dir/"), Required: true})
	val := "1"
	src := &fakeSource{fetch: func(ref sources.Ref) (sources.Object, error) {
		return kv(map[string]string{"a": val, "b": val}), nil
	}}
	d, err := sink.Open(sink.Options{Dir: f.dir, AllowDisk: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	e, err := New(Options{Config: f.cfg, Sources: map[string]sources.Source{sources.File: src}, Sink: &nthFailingSink{Sink: d, n: 4},
		Metrics: f.m, OnChange: func(c Change) { f.changes <- c }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := e.Once(ctx); err != nil {
		t.Fatal(err)
	}
	if c := <-f.changes; !c.Initial {
		t.Fatalf("first write = %+v, want initial", c)
	}
	val = "2"
	_ = e.Once(ctx) // dir_a written, dir_b not: the last good value stays
	if c := <-f.changes; c.Initial {
		t.Errorf("partial rotation = %+v, want not initial", c)
	}
}
