package file

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// kubeletSwap publishes files into dir the way kubelet's AtomicWriter
// (pkg/volume/util/atomic_writer.go) updates a secret or configmap volume:
//
//  1. create a new timestamped generation directory ..YYYY_MM_DD_hh_mm_ss.N
//  2. write every file into it
//  3. symlink ..data_tmp -> the new generation
//  4. rename ..data_tmp over ..data (the atomic switch)
//  5. create the user-visible symlinks name -> ..data/name that are missing
//  6. remove user-visible symlinks for names no longer in the payload
//  7. remove the old generation directory
func kubeletSwap(dir string, files map[string]string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	gen, err := os.MkdirTemp(dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return err
	}
	if err := os.Chmod(gen, 0o755); err != nil {
		return err
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(gen, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(gen), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		return err
	}
	for name := range files {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				return err
			}
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if _, keep := files[e.Name()]; !keep && e.Type()&os.ModeSymlink != 0 && e.Name()[0] != '.' {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if old != "" {
		return os.RemoveAll(filepath.Join(dir, old))
	}
	return nil
}

func kubeletWrite(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	if err := kubeletSwap(dir, files); err != nil {
		t.Fatal(err)
	}
}
