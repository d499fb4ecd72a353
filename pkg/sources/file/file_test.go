package file

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// canary is the content of every file whose bytes must never show up in an
// error.
const canary = "canary-7c1f9e-do-not-print"

func fileRef(path string) sources.Ref { return sources.Ref{Kind: sources.File, Path: path} }

func write(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t testing.TB, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func hashOf(s string) string { return sources.ShortHash(sha256.Sum256([]byte(s))) }

// fields flattens an object's fields to strings for comparison.
func fields(o sources.Object) map[string]string {
	if o.Fields == nil {
		return nil
	}
	m := make(map[string]string, len(o.Fields))
	for k, v := range o.Fields {
		m[k] = string(v.Reveal())
	}
	return m
}

func TestFetch(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string) string // returns the ref path
		maxSize int64
		value   string            // for single values
		fields  map[string]string // for directories
		wantErr error             // sentinel; nil for success
		errHas  []string
	}{
		{
			name:  "file",
			setup: func(t *testing.T, dir string) string { write(t, dir+"/pw", "s3cret\n"); return dir + "/pw" },
			value: "s3cret\n",
		},
		{
			name:  "empty file",
			setup: func(t *testing.T, dir string) string { write(t, dir+"/pw", ""); return dir + "/pw" },
			value: "",
		},
		{
			name: "symlink to file",
			setup: func(t *testing.T, dir string) string {
				write(t, dir+"/real/pw", "linked")
				symlink(t, "real/pw", dir+"/pw")
				return dir + "/pw"
			},
			value: "linked",
		},
		{
			name: "file in a kubelet volume",
			setup: func(t *testing.T, dir string) string {
				kubeletWrite(t, dir, map[string]string{"password": "kube-pw", "user": "kube"})
				return dir + "/password"
			},
			value: "kube-pw",
		},
		{
			name:    "file at the size limit",
			maxSize: 8,
			setup:   func(t *testing.T, dir string) string { write(t, dir+"/pw", "12345678"); return dir + "/pw" },
			value:   "12345678",
		},
		{
			name: "directory skips dotfiles, subdirectories and non-regular files",
			setup: func(t *testing.T, dir string) string {
				d := dir + "/secrets"
				write(t, d+"/a", "A")
				write(t, d+"/b", "B\n")
				write(t, d+"/.hidden", "no")
				write(t, d+"/.a.swp", "no")
				write(t, d+"/sub/c", "no")
				write(t, dir+"/elsewhere", "L")
				symlink(t, "../elsewhere", d+"/link")
				symlink(t, "missing", d+"/dangling")
				symlink(t, "sub", d+"/dirlink")
				if err := syscall.Mkfifo(d+"/fifo", 0o644); err != nil {
					t.Fatal(err)
				}
				return d
			},
			fields: map[string]string{"a": "A", "b": "B\n", "link": "L"},
		},
		{
			name:   "empty directory",
			setup:  func(t *testing.T, dir string) string { os.Mkdir(dir+"/d", 0o755); return dir + "/d" },
			fields: map[string]string{},
		},
		{
			name: "kubelet volume reads the ..data generation",
			setup: func(t *testing.T, dir string) string {
				kubeletWrite(t, dir, map[string]string{"password": "pw1", "user": "u1"})
				return dir
			},
			fields: map[string]string{"password": "pw1", "user": "u1"},
		},
		{
			name: "kubelet volume whose ..data leads nowhere",
			setup: func(t *testing.T, dir string) string {
				kubeletWrite(t, dir, map[string]string{"password": canary})
				gen, err := os.Readlink(dir + "/..data")
				if err != nil {
					t.Fatal(err)
				}
				os.RemoveAll(filepath.Join(dir, gen))
				return dir
			},
			wantErr: sources.ErrNotFound,
			errHas:  []string{"..data"},
		},
		{
			name:    "missing",
			setup:   func(t *testing.T, dir string) string { return dir + "/nope" },
			wantErr: sources.ErrNotFound,
			errHas:  []string{"/nope"},
		},
		{
			name:    "parent is a file",
			setup:   func(t *testing.T, dir string) string { write(t, dir+"/f", canary); return dir + "/f/pw" },
			wantErr: sources.ErrNotFound,
			errHas:  []string{"/f/pw"},
		},
		{
			name:    "too large",
			maxSize: 8,
			setup:   func(t *testing.T, dir string) string { write(t, dir+"/pw", canary); return dir + "/pw" },
			wantErr: sources.ErrTooLarge,
			errHas:  []string{"/pw", fmt.Sprintf("%d bytes", len(canary)), "8 bytes", "max_file_size"},
		},
		{
			name:    "too large inside a directory",
			maxSize: 8,
			setup: func(t *testing.T, dir string) string {
				write(t, dir+"/d/small", "ok")
				write(t, dir+"/d/big", canary)
				return dir + "/d"
			},
			wantErr: sources.ErrTooLarge,
			errHas:  []string{"/d/big", "max_file_size"},
		},
		{
			name: "fifo is refused without blocking",
			setup: func(t *testing.T, dir string) string {
				if err := syscall.Mkfifo(dir+"/fifo", 0o644); err != nil {
					t.Fatal(err)
				}
				return dir + "/fifo"
			},
			errHas: []string{"/fifo", "not a regular file"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.setup(t, t.TempDir())
			s := New(Options{MaxSize: tt.maxSize})
			o, err := s.Fetch(context.Background(), fileRef(path))
			if tt.wantErr != nil || tt.errHas != nil {
				if err == nil {
					t.Fatalf("Fetch(%s) succeeded, want error", path)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("Fetch error %q does not wrap %v", err, tt.wantErr)
				}
				for _, s := range tt.errHas {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("Fetch error %q does not mention %q", err, s)
					}
				}
				if strings.Contains(err.Error(), canary) {
					t.Errorf("Fetch error leaks file content: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Fetch(%s): %v", path, err)
			}
			if tt.fields != nil {
				if got := fields(o); !equalMaps(got, tt.fields) {
					t.Errorf("fields = %v, want %v", got, tt.fields)
				}
				if !o.Expands() {
					t.Errorf("a directory object must expand")
				}
				return
			}
			if got := string(o.Value.Reveal()); got != tt.value {
				t.Errorf("value = %q, want %q", got, tt.value)
			}
			if o.Fields != nil {
				t.Errorf("a file object has fields %v", fields(o))
			}
			if want := hashOf(tt.value); o.Version != want {
				t.Errorf("version = %q, want %q", o.Version, want)
			}
		})
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestFetchRefusesOtherRefs(t *testing.T) {
	s := New(Options{})
	for _, ref := range []sources.Ref{
		{Kind: sources.Vault, Path: "secret/x"},
		{Kind: sources.File, Path: "relative/path"},
	} {
		if _, err := s.Fetch(context.Background(), ref); err == nil {
			t.Errorf("Fetch(%s) succeeded, want error", ref)
		}
	}
}

// The directory version depends on names and contents, and on nothing else.
func TestDirVersion(t *testing.T) {
	s := New(Options{})
	version := func(files map[string]string) string {
		t.Helper()
		dir := t.TempDir()
		for name, content := range files {
			write(t, filepath.Join(dir, name), content)
		}
		o, err := s.Fetch(context.Background(), fileRef(dir))
		if err != nil {
			t.Fatal(err)
		}
		return o.Version
	}
	base := version(map[string]string{"a": "1", "b": "2"})
	if again := version(map[string]string{"b": "2", "a": "1"}); again != base {
		t.Errorf("same files, different version: %s != %s", again, base)
	}
	for name, files := range map[string]map[string]string{
		"content changed":  {"a": "1", "b": "3"},
		"file renamed":     {"a": "1", "c": "2"},
		"file added":       {"a": "1", "b": "2", "c": ""},
		"boundary shifted": {"a": "12", "b": ""},
	} {
		if v := version(files); v == base {
			t.Errorf("%s: version unchanged (%s)", name, v)
		}
	}
}

// churn calls change(0), change(1), … in a goroutine until stop is called
// or change fails (a test error); stop returns once the goroutine has.
func churn(t *testing.T, change func(i int) error) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			if err := change(i); err != nil {
				t.Errorf("change %d: %v", i, err)
				return
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// A reader never sees a directory object that mixes two kubelet
// generations, however the swaps interleave with its reads.
func TestFetchDirNeverMixesGenerations(t *testing.T) {
	dir := t.TempDir()
	keys := []string{"a", "b", "c", "d"}
	gen := func(v string) map[string]string {
		m := map[string]string{}
		for _, k := range keys {
			m[k] = v
		}
		return m
	}
	kubeletWrite(t, dir, gen("0"))

	stop := churn(t, func(i int) error { return kubeletSwap(dir, gen(fmt.Sprint(i+1))) })
	defer stop()

	s := New(Options{})
	read := 0
	for range 300 {
		o, err := s.Fetch(context.Background(), fileRef(dir))
		if errors.Is(err, sources.ErrNotFound) {
			// Every retry lost its generation to the next swap: this
			// swapper never pauses, kubelet does. The engine keeps the last
			// good files and tries again; what matters is no mixed read.
			continue
		}
		if err != nil {
			t.Fatalf("Fetch during swaps: %v", err)
		}
		read++
		f := fields(o)
		if len(f) != len(keys) {
			t.Fatalf("got %d fields, want %d: %v", len(f), len(keys), f)
		}
		for _, k := range keys {
			if f[k] != f[keys[0]] {
				t.Fatalf("mixed generations: %v", f)
			}
		}
	}
	if read == 0 {
		t.Fatal("no Fetch of 300 succeeded during the swaps")
	}
}
