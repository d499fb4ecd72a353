package file

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// benchDir is a fresh directory on tmpfs where there is one (/dev/shm), as
// Kubernetes secret volumes and /run/secrets are; on a disk, ext4 flushes on
// close after a truncate and the numbers measure the disk.
func benchDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "phase-sidecar-bench-")
	if err != nil {
		return tb.TempDir()
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func BenchmarkFetchFile(b *testing.B) {
	dir := benchDir(b)
	write(b, dir+"/pw", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	s := New(Options{})
	ref := fileRef(dir + "/pw")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Fetch(ctx, ref); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFetchDir100(b *testing.B) {
	for _, layout := range []string{"plain", "kubelet"} {
		b.Run(layout, func(b *testing.B) {
			dir := benchDir(b)
			files := map[string]string{}
			for i := range 100 {
				files[fmt.Sprintf("secret_%03d", i)] = fmt.Sprintf("%064d", i)
			}
			if layout == "kubelet" {
				kubeletWrite(b, dir, files)
			} else {
				for name, content := range files {
					write(b, filepath.Join(dir, name), content)
				}
			}
			s := New(Options{})
			ref := fileRef(dir)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				o, err := s.Fetch(ctx, ref)
				if err != nil || len(o.Fields) != 100 {
					b.Fatalf("Fetch: %d fields, %v", len(o.Fields), err)
				}
			}
		})
	}
}

// BenchmarkFetchBundle reads a certificate and key from a kubelet volume:
// as one group, and one by one as the engine did before FetchGroup.
func BenchmarkFetchBundle(b *testing.B) {
	dir := benchDir(b)
	kubeletWrite(b, dir, map[string]string{"tls.crt": fmt.Sprintf("%01500d", 1), "tls.key": fmt.Sprintf("%0240d", 1)})
	s := New(Options{})
	refs := []sources.Ref{fileRef(dir + "/tls.crt"), fileRef(dir + "/tls.key")}
	ctx := context.Background()
	b.Run("group", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, r := range s.FetchGroup(ctx, refs) {
				if r.Err != nil {
					b.Fatal(r.Err)
				}
			}
		}
	})
	b.Run("one-by-one", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, r := range refs {
				if _, err := s.Fetch(ctx, r); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// BenchmarkWakeLatency measures change on disk → wake, reported as p50 and
// p99 over b.N changes (run with -benchtime=1000x). The clock starts before
// the change and stops inside wake; the Fetch that confirms the new content
// is not counted. "write" shows the settling window that in-place writes
// wait for by design.
func BenchmarkWakeLatency(b *testing.B) {
	cases := []struct {
		name   string
		setup  func(b *testing.B, dir string) string
		change func(b *testing.B, dir, content string)
	}{
		{
			name:  "rename",
			setup: func(b *testing.B, dir string) string { write(b, dir+"/pw", "init"); return dir + "/pw" },
			change: func(b *testing.B, dir, content string) {
				write(b, dir+"/.pw.tmp", content)
				if err := os.Rename(dir+"/.pw.tmp", dir+"/pw"); err != nil {
					b.Fatal(err)
				}
			},
		},
		{
			name: "kubelet",
			setup: func(b *testing.B, dir string) string {
				kubeletWrite(b, dir, map[string]string{"pw": "init"})
				return dir + "/pw"
			},
			change: func(b *testing.B, dir, content string) { kubeletWrite(b, dir, map[string]string{"pw": content}) },
		},
		{
			name:   "write",
			setup:  func(b *testing.B, dir string) string { write(b, dir+"/pw", "init"); return dir + "/pw" },
			change: func(b *testing.B, dir, content string) { write(b, dir+"/pw", content) },
		},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			dir := benchDir(b)
			ref := fileRef(c.setup(b, dir))
			s := New(Options{})
			woken := make(chan time.Time, 1024)
			ready := make(chan struct{})
			s.onWatched = func() { close(ready) }
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				_ = s.Watch(ctx, []sources.Ref{ref}, func(sources.Ref) {
					select {
					case woken <- time.Now():
					default:
					}
				})
			}()
			defer func() { cancel(); <-done }()
			<-ready

			lat := make([]time.Duration, 0, b.N)
			i := 0
			for b.Loop() {
				i++
				want := strconv.Itoa(i)
				// Late wakes of the previous change would pass for this one.
				for len(woken) > 0 {
					<-woken
				}
				start := time.Now()
				c.change(b, dir, want)
				for {
					var at time.Time
					select {
					case at = <-woken:
					case <-time.After(patience):
						b.Fatalf("change %d: no wake", i)
					}
					if at.Before(start) {
						continue
					}
					o, err := s.Fetch(ctx, ref)
					if err == nil && string(o.Value.Reveal()) == want {
						lat = append(lat, at.Sub(start))
						break
					}
				}
			}
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			}
		})
	}
}
