package e2e

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A bundle of tls.crt and tls.key from one kubelet volume, rotated 20 000
// times 0.5 ms apart while an app holds the published bundle directory and
// reads the pair over and over: every pair it reads is of one generation
// (issue 10 measured 7 mixed generations in 20 000 rotations before the file
// source read bundles from one generation).
func TestBundleFromKubeletVolumeNeverMixes(t *testing.T) {
	rotations := 20_000
	if testing.Short() {
		rotations = 2_000
	}
	if v := os.Getenv("PHASE_STRESS_ROTATIONS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("PHASE_STRESS_ROTATIONS=%q: %v", v, err)
		}
		rotations = n
	}
	pair := func(n int) map[string]string {
		return map[string]string{"tls.crt": value(fmt.Sprint("crt-", n)), "tls.key": value(fmt.Sprint("key-", n))}
	}
	src, out := shm(t), shm(t) // tmpfs, as kubelet's secret volumes
	vol := newKubeletVolume(t, filepath.Join(src, "tls"), pair(0))
	cfg, addr := writeConfig(t, out, fmt.Sprintf(`refresh: 1h
secrets:
  - name: TLS_CERT
    ref: file://%[1]s/tls.crt
    bundle: tls
    file: tls.crt
  - name: TLS_KEY
    ref: file://%[1]s/tls.key
    bundle: tls
    file: tls.key
`, vol.dir))
	s := start(t, cfg, addr)
	s.waitReady()
	bundle := filepath.Join(out, "tls")
	waitFile(t, filepath.Join(bundle, "tls.crt"), value("crt-0"))

	var (
		stop                atomic.Bool
		reads, lost, mixed  int
		published, mixedGen = map[int]bool{}, map[string]bool{}
		wg                  sync.WaitGroup
	)
	wg.Go(func() {
		for !stop.Load() {
			crt, key, err := readBundle(bundle)
			if errors.Is(err, fs.ErrNotExist) {
				lost++ // the version it held was replaced: reopen, as an app must
				continue
			}
			if err != nil {
				t.Errorf("read the bundle: %v", err)
				return
			}
			reads++
			published[crt] = true
			if crt != key {
				mixed++
				mixedGen[fmt.Sprint(crt, "/", key)] = true
			}
		}
	})
	began := time.Now()
	for i := 1; i <= rotations; i++ {
		vol.update(pair(i))
		time.Sleep(500 * time.Microsecond)
	}
	rotated := time.Since(began)
	waitFile(t, filepath.Join(bundle, "tls.key"), value(fmt.Sprint("key-", rotations)))
	stop.Store(true)
	wg.Wait()

	t.Logf("%d rotations in %v; the app read %d pairs (%d reopened after a swap) of %d published generations: %d mixed reads, %d mixed generations",
		rotations, rotated.Round(time.Millisecond), reads, lost, len(published), mixed, len(mixedGen))
	if mixed > 0 {
		t.Errorf("%d reads of the bundle paired a certificate and a key of different generations (%d pairs)", mixed, len(mixedGen))
	}
	if len(published) < 2 {
		t.Errorf("the app saw %d generations of the bundle; the sidecar did not follow the rotations", len(published))
	}
}

// readBundle reads both members through one open of the bundle directory,
// as an app that opens it once would, and returns the generation each
// carries.
func readBundle(bundle string) (crt, key int, err error) {
	root, err := os.OpenRoot(bundle)
	if err != nil {
		return 0, 0, err
	}
	defer root.Close()
	gen := func(name string) (int, error) {
		b, err := root.ReadFile(name)
		if err != nil {
			return 0, err
		}
		v := string(b)
		n, err := strconv.Atoi(v[strings.LastIndexByte(v, '-')+1:])
		if err != nil {
			return 0, fmt.Errorf("%s: a value never written", name) // never the value itself
		}
		return n, nil
	}
	if crt, err = gen("tls.crt"); err != nil {
		return 0, 0, err
	}
	key, err = gen("tls.key")
	return crt, key, err
}
