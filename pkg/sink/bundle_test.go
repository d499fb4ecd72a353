package sink

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// pair returns a certificate and key of generation i; their lengths vary so
// a mix of generations would also show as a length change.
func pair(i int) []File {
	pad := strings.Repeat("=", i%7*300)
	return []File{
		file("tls.crt", fmt.Sprintf("CERT %d %s", i, pad)),
		file("tls.key", fmt.Sprintf("KEY %d %s", i, pad)),
	}
}

func generation(t testing.TB, b []byte) int {
	var kind string
	var n int
	if _, err := fmt.Sscanf(string(b), "%s %d", &kind, &n); err != nil {
		return -1
	}
	return n
}

func mustBundle(t testing.TB, d *Dir, bundle string, files []File) bool {
	t.Helper()
	changed, err := d.WriteBundle(bundle, files)
	if err != nil {
		t.Fatal(err)
	}
	return changed
}

// TestBundleConsistency: a reader that opens the bundle directory once and
// reads the certificate and the key from it never sees a mismatched pair
// while the bundle is swapped many times. A reader caught on a version being
// removed gets ENOENT and retries, as with kubelet volumes.
func TestBundleConsistency(t *testing.T) {
	d := openDir(t, Options{Dir: shmDir(t)})
	mustBundle(t, d, "tls", pair(0))

	var (
		stop, done                 = make(chan struct{}), make(chan struct{})
		started                    = make(chan struct{})
		once                       sync.Once
		reads, retries, mismatched int
		readErr                    error
	)
	go func() {
		defer close(done)
		defer once.Do(func() { close(started) })
		for {
			select {
			case <-stop:
				return
			default:
			}
			r, err := os.OpenRoot(d.Path("tls"))
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					retries++
					continue
				}
				readErr = err
				return
			}
			cert, err1 := r.ReadFile("tls.crt")
			key, err2 := r.ReadFile("tls.key")
			r.Close()
			if err := errors.Join(err1, err2); err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					retries++
					continue
				}
				readErr = err
				return
			}
			if generation(t, cert) != generation(t, key) || generation(t, cert) < 0 || len(cert)-len("CERT") != len(key)-len("KEY") {
				mismatched++
			}
			reads++
			once.Do(func() { close(started) })
		}
	}()
	<-started
	const swaps = 2000
	for i := 1; i <= swaps; i++ {
		changed, err := d.WriteBundle("tls", pair(i))
		if err != nil || !changed {
			close(stop)
			<-done
			t.Fatalf("swap %d: changed=%v err=%v", i, changed, err)
		}
	}
	close(stop)
	<-done
	if readErr != nil {
		t.Fatalf("reader failed: %v", readErr)
	}
	if mismatched > 0 {
		t.Fatalf("reader saw %d mismatched pairs in %d reads", mismatched, reads)
	}
	if reads == 0 {
		t.Fatalf("reader never read a pair during %d swaps", swaps)
	}
	t.Logf("%d swaps, %d consistent reads, %d retries", swaps, reads, retries)
	// Only the live version is left.
	target, err := os.Readlink(d.Path("tls"))
	if err != nil {
		t.Fatal(err)
	}
	if got := listDir(t, d.dir); !slices.Equal(got, []string{target, "tls"}) {
		t.Fatalf("directory holds %q, want only %s and tls", got, target)
	}
}

func TestBundleSkipsUnchanged(t *testing.T) {
	d := openDir(t, Options{Dir: shmDir(t)})
	if !mustBundle(t, d, "tls", pair(1)) {
		t.Fatal("first write reported unchanged")
	}
	before, _ := os.Readlink(d.Path("tls"))
	crt := stat(t, d.Path("tls/tls.crt"))
	if mustBundle(t, d, "tls", pair(1)) {
		t.Fatal("identical bundle reported changed")
	}
	after, _ := os.Readlink(d.Path("tls"))
	if before != after || crt.Ino != stat(t, d.Path("tls/tls.crt")).Ino {
		t.Fatalf("identical bundle was rewritten: %s → %s", before, after)
	}
	// Member order does not matter.
	if mustBundle(t, d, "tls", []File{pair(1)[1], pair(1)[0]}) {
		t.Fatal("reordered members reported changed")
	}
}

func TestBundleChanges(t *testing.T) {
	ca := file("ca.crt", "CA")
	tests := []struct {
		name string
		next []File
	}{
		{"one member changed", []File{pair(1)[0], pair(2)[1]}},
		{"member added", append(pair(1), ca)},
		{"member removed", pair(1)[:1]},
		{"mode changed", []File{pair(1)[0], {Name: "tls.key", Data: pair(1)[1].Data, Mode: 0o400, UID: -1, GID: -1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := openDir(t, Options{Dir: shmDir(t)})
			mustBundle(t, d, "tls", pair(1))
			old, _ := os.Readlink(d.Path("tls"))
			if !mustBundle(t, d, "tls", tt.next) {
				t.Fatal("reported unchanged")
			}
			var names []string
			for _, f := range tt.next {
				assertContent(t, d.Path("tls/"+f.Name), string(f.Data.Reveal()))
				info, _ := os.Stat(d.Path("tls/" + f.Name))
				if info.Mode().Perm() != f.Mode {
					t.Fatalf("%s mode %v, want %v", f.Name, info.Mode().Perm(), f.Mode)
				}
				names = append(names, f.Name)
			}
			slices.Sort(names)
			if got := listDir(t, d.Path("tls")); !slices.Equal(got, names) {
				t.Fatalf("bundle holds %q, want %q", got, names)
			}
			if _, err := os.Lstat(d.Path(old)); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("old version %s still there: %v", old, err)
			}
		})
	}
}

// TestBundlePlantedSymlink: a symlink planted at the bundle name, pointing at
// a directory outside that holds identical members, is replaced, not
// followed or trusted.
func TestBundlePlantedSymlink(t *testing.T) {
	outside := t.TempDir()
	for _, f := range pair(1) {
		if err := os.WriteFile(filepath.Join(outside, f.Name), f.Data.Reveal(), f.Mode); err != nil {
			t.Fatal(err)
		}
	}
	d := openDir(t, Options{Dir: shmDir(t)})
	if err := os.Symlink(outside, d.Path("tls")); err != nil {
		t.Fatal(err)
	}
	if !mustBundle(t, d, "tls", pair(1)) {
		t.Fatal("planted symlink counted as unchanged")
	}
	mustBundle(t, d, "tls", pair(2))
	target, _ := os.Readlink(d.Path("tls"))
	if b, ok := versionBundle(target); !ok || b != "tls" {
		t.Fatalf("tls points to %q, want a version of tls", target)
	}
	for _, f := range pair(1) {
		assertContent(t, filepath.Join(outside, f.Name), string(f.Data.Reveal()))
	}
	for _, f := range pair(2) {
		assertContent(t, d.Path("tls/"+f.Name), string(f.Data.Reveal()))
	}
}

// TestBundleAndFileSwitch: a name can turn from a file into a bundle and
// back; nothing is left behind.
func TestBundleAndFileSwitch(t *testing.T) {
	d := openDir(t, Options{Dir: shmDir(t)})
	mustWrite(t, d, file("tls", "single"))
	mustBundle(t, d, "tls", pair(1))
	assertContent(t, d.Path("tls/tls.crt"), string(pair(1)[0].Data.Reveal()))
	if !mustWrite(t, d, file("tls", "single")) {
		t.Fatal("file over bundle reported unchanged")
	}
	assertContent(t, d.Path("tls"), "single")
	if got := listDir(t, d.dir); !slices.Equal(got, []string{"tls"}) {
		t.Fatalf("directory holds %q, want only tls", got)
	}
}

func TestBundleRefusesBadInput(t *testing.T) {
	d := openDir(t, Options{Dir: shmDir(t)})
	tests := []struct {
		name   string
		bundle string
		files  []File
	}{
		{"no members", "tls", nil},
		{"duplicate member", "tls", []File{file("a", "1"), file("a", "2")}},
		{"bundle name too long", strings.Repeat("b", MaxBundle+1), pair(1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := d.WriteBundle(tt.bundle, tt.files); err == nil {
				t.Fatal("accepted")
			}
			if got := listDir(t, d.dir); len(got) != 0 {
				t.Fatalf("directory holds %q", got)
			}
		})
	}
}

func TestVersionBundle(t *testing.T) {
	tests := []struct {
		name, bundle string
		ok           bool
	}{
		{"..tls_1700000000000000000", "tls", true},
		{"..my_tls_12", "my_tls", true},
		{"..tls_", "", false},
		{"..tls_12a", "", false},
		{"..data", "", false},
		{".._1", "", false},
		{"tls_1", "", false},
	}
	for _, tt := range tests {
		b, ok := versionBundle(tt.name)
		if ok != tt.ok || b != tt.bundle {
			t.Errorf("versionBundle(%q) = %q, %v; want %q, %v", tt.name, b, ok, tt.bundle, tt.ok)
		}
	}
}
