package sink

import (
	"github.com/phase-sidecar/phase-sidecar/pkg/secret"

	"bytes"
	"testing"
)

// The benchmarks run on /dev/shm, where the sidecar writes in production.

func BenchmarkWriteChanged(b *testing.B) {
	d := openDir(b, Options{Dir: shmDir(b)})
	values := [][]byte{bytes.Repeat([]byte("a"), 64), bytes.Repeat([]byte("b"), 64)}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := d.Write(File{Name: "alpha", Data: secret.New(values[i%2]), Mode: 0o440, UID: -1, GID: -1}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkWriteUnchanged(b *testing.B) {
	d := openDir(b, Options{Dir: shmDir(b)})
	f := File{Name: "alpha", Data: secret.New(bytes.Repeat([]byte("a"), 64)), Mode: 0o440, UID: -1, GID: -1}
	mustWrite(b, d, f)
	b.ReportAllocs()
	for b.Loop() {
		if changed, err := d.Write(f); err != nil || changed {
			b.Fatalf("changed=%v err=%v", changed, err)
		}
	}
}

func BenchmarkWriteBundle(b *testing.B) {
	d := openDir(b, Options{Dir: shmDir(b)})
	pairs := [][]File{pair(1), pair(2)}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := d.WriteBundle("tls", pairs[i%2]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
