package file

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// pairOf is a certificate and key of generation n.
func pairOf(n int) map[string]string {
	return map[string]string{"tls.crt": fmt.Sprint("crt-", n), "tls.key": fmt.Sprint("key-", n)}
}

// generations lists the generation every value of rs carries, a directory
// object's fields included; -1 for a value pairOf did not write.
func generations(rs []sources.Result) []int {
	var gens []int
	of := func(v string) int {
		n, err := strconv.Atoi(v[strings.IndexByte(v, '-')+1:])
		if err != nil {
			return -1
		}
		return n
	}
	for _, r := range rs {
		if r.Object.Fields != nil {
			for _, v := range fields(r.Object) {
				gens = append(gens, of(v))
			}
			continue
		}
		gens = append(gens, of(string(r.Object.Value.Reveal())))
	}
	return gens
}

// rotations is how many swaps a bundle stress test lasts: 20 000 by default
// (seconds on tmpfs), 2 000 with -short, PHASE_STRESS_ROTATIONS to run longer.
func rotations(t *testing.T) int64 {
	if v := os.Getenv("PHASE_STRESS_ROTATIONS"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("PHASE_STRESS_ROTATIONS=%q: %v", v, err)
		}
		return n
	}
	if testing.Short() {
		return 2_000
	}
	return 20_000
}

// A bundle read while its volume rotates without pause: a group read always
// gives every member from one generation. Every other round reads the refs
// one by one, as the engine did before FetchGroup, to show the layout does
// produce mixes to catch.
func TestRaceGroupNeverMixes(t *testing.T) {
	tests := []struct {
		name string
		// share divides rotations(t) for this layout: the case
		// and the cheap back-and-forth swap run them all, the others a
		// quarter, to keep the default run in seconds.
		share int64
		// setup lays out generation 0 under root and returns the bundle's
		// refs and a rotation that publishes generation i+1.
		setup func(t *testing.T, root string) ([]string, func(i int) error)
	}{
		{
			name:  "kubelet volume",
			share: 1,
			setup: func(t *testing.T, root string) ([]string, func(int) error) {
				vol := filepath.Join(root, "vol")
				kubeletWrite(t, vol, pairOf(0))
				return []string{vol + "/tls.crt", vol + "/tls.key"},
					func(i int) error { return kubeletSwap(vol, pairOf(i+1)) }
			},
		},
		{
			name:  "kubelet volume with the directory as a member",
			share: 4,
			setup: func(t *testing.T, root string) ([]string, func(int) error) {
				vol := filepath.Join(root, "vol")
				kubeletWrite(t, vol, pairOf(0))
				return []string{vol + "/tls.crt", vol, vol + "/tls.key"},
					func(i int) error { return kubeletSwap(vol, pairOf(i+1)) }
			},
		},
		{
			// current -> releases/N, N+1 written whole, then swapped in
			// and the old one removed.
			name:  "swapped directory symlink",
			share: 4,
			setup: func(t *testing.T, root string) ([]string, func(int) error) {
				cur := filepath.Join(root, "current")
				if err := release(root, 0); err != nil {
					t.Fatal(err)
				}
				return []string{cur + "/tls.crt", cur + "/tls.key"},
					func(i int) error { return release(root, i+1) }
			},
		},
		{
			// current -> releases/0, 1, 0, …: a generation comes back, so
			// a check of the name after the reads cannot tell a read that
			// was overlapped; only reading below the one resolved
			// directory can.
			name:  "directory symlink swapped back and forth",
			share: 1,
			setup: func(t *testing.T, root string) ([]string, func(int) error) {
				for n := range 2 {
					if err := writeRelease(root, n); err != nil {
						t.Fatal(err)
					}
				}
				if err := pointAt(root, 0); err != nil {
					t.Fatal(err)
				}
				cur := filepath.Join(root, "current")
				return []string{cur + "/tls.crt", cur + "/tls.key"},
					func(i int) error { return pointAt(root, (i+1)%2) }
			},
		},
		{
			// app/tls.crt -> ../current/tls.crt is refused (".."), so
			// the links sit next to current: root/tls.crt -> current/tls.crt.
			name:  "file symlinks into a swapped directory symlink",
			share: 4,
			setup: func(t *testing.T, root string) ([]string, func(int) error) {
				if err := release(root, 0); err != nil {
					t.Fatal(err)
				}
				for _, n := range []string{"tls.crt", "tls.key"} {
					symlink(t, "current/"+n, filepath.Join(root, n))
				}
				return []string{root + "/tls.crt", root + "/tls.key"},
					func(i int) error { return release(root, i+1) }
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			paths, rotate := tt.setup(t, benchDir(t)) // tmpfs, as kubelet's secret volumes
			refs := make([]sources.Ref, len(paths))
			for i, p := range paths {
				refs[i] = fileRef(p)
			}
			want := rotations(t) / tt.share
			var swaps atomic.Int64
			stop := churn(t, func(i int) error {
				defer swaps.Add(1)
				return rotate(i)
			})

			s := New(Options{})
			ctx := context.Background()
			var ok, mixed, lost, aloneOK, aloneMixed int
			start := time.Now()
			for round := 0; swaps.Load() < want; round++ {
				group := round%2 == 0
				var rs []sources.Result
				if group {
					rs = s.FetchGroup(ctx, refs)
				} else {
					rs = make([]sources.Result, len(refs))
					for i, r := range refs {
						rs[i].Object, rs[i].Err = s.Fetch(ctx, r)
					}
				}
				var errs []error
				for _, r := range rs {
					errs = append(errs, r.Err)
				}
				if err := errors.Join(errs...); err != nil {
					if !errors.Is(err, sources.ErrNotFound) {
						stop()
						t.Fatalf("read during rotations: %v", err)
					}
					// Every retry lost its generation to a swapper that
					// never pauses (kubelet does): the engine keeps the
					// last good files and tries again.
					lost++
					continue
				}
				gens := generations(rs)
				same := !slices.Contains(gens, -1) && !slices.ContainsFunc(gens, func(g int) bool { return g != gens[0] })
				switch {
				case group && same:
					ok++
				case group:
					mixed++
					if mixed <= 3 {
						t.Logf("mixed group read: generations %v", gens)
					}
				case same:
					aloneOK++
				default:
					aloneMixed++
				}
			}
			stop()
			t.Logf("%d rotations in %v: group reads ok=%d mixed=%d lost=%d; one-by-one reads ok=%d mixed=%d",
				swaps.Load(), time.Since(start).Round(time.Millisecond), ok, mixed, lost, aloneOK, aloneMixed)
			if mixed > 0 {
				t.Errorf("%d group reads gave members of two generations", mixed)
			}
			if ok == 0 {
				t.Error("no group read succeeded during the rotations")
			}
		})
	}
}

// release publishes generation n as root/releases/N and points root/current
// at it (ln -sfn, then the old release removed), the Capistrano/Helm way.
func release(root string, n int) error {
	if err := writeRelease(root, n); err != nil {
		return err
	}
	if err := pointAt(root, n); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	return os.RemoveAll(filepath.Join(root, "releases", strconv.Itoa(n-1)))
}

func writeRelease(root string, n int) error {
	dir := filepath.Join(root, "releases", strconv.Itoa(n))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, content := range pairOf(n) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// pointAt swaps root/current to releases/N atomically.
func pointAt(root string, n int) error {
	cur := filepath.Join(root, "current")
	if err := os.Symlink(filepath.Join("releases", strconv.Itoa(n)), cur+".tmp"); err != nil {
		return err
	}
	return os.Rename(cur+".tmp", cur)
}
