package sink

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"
)

// A bundle "tls" is published kubelet-style: Dir/tls is a symlink to a
// versioned directory Dir/..tls_<unix-nanoseconds> that holds every member.
// A new version is written in full, then one rename swaps the symlink, so a
// reader that opens the bundle directory once sees either all old members or
// all new ones, never a mix. The old version is removed right after the swap,
// as kubelet does, so a reader still inside it can find a member gone
// (ENOENT) and must open the bundle again. Target names cannot start with
// ".", so versions and
// temporary symlinks never clash with targets.

// MaxBundle leaves room in a file name for the ".." prefix and the "_<n>"
// suffix of a version.
const MaxBundle = MaxName - 2 - 1 - 20

func versionName(bundle string, n int64) string {
	return ".." + bundle + "_" + strconv.FormatInt(n, 10)
}

// isVersionDir reports whether name has the form of a bundle version.
func isVersionDir(name string) bool {
	bundle, ok := versionBundle(name)
	return ok && checkName(bundle) == nil
}

// versionBundle returns the bundle a version name belongs to.
func versionBundle(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, "..")
	i := strings.LastIndexByte(rest, '_')
	if !ok || i < 1 || i == len(rest)-1 {
		return "", false
	}
	for _, c := range rest[i+1:] {
		if c < '0' || c > '9' {
			return "", false
		}
	}
	return rest[:i], true
}

// WriteBundle publishes files as the members of bundle, all at once: it
// writes a new version directory and swaps the bundle symlink to it. When
// every member (and nothing else) already matches, nothing is written and
// changed is false. On error the old version stays in place.
func (d *Dir) WriteBundle(bundle string, files []File) (changed bool, err error) {
	if err := checkBundle(bundle, files); err != nil {
		return false, fmt.Errorf("sink: write bundle %q: %w", bundle, err)
	}
	if err := d.Check(); err != nil {
		return false, err
	}
	cur := d.currentVersion(bundle)
	if cur != "" && d.bundleMatches(cur, files) {
		return false, nil
	}
	if err := d.publish(bundle, files); err != nil {
		return false, writeError("write bundle", bundle, err)
	}
	if cur != "" {
		d.dropVersion(cur)
	}
	return true, nil
}

func checkBundle(bundle string, files []File) error {
	if err := CheckBundleName(bundle); err != nil {
		return fmt.Errorf("bundle name %w", err)
	}
	if len(files) == 0 {
		return errors.New("no members")
	}
	seen := make(map[string]bool, len(files))
	for _, f := range files {
		if err := checkName(f.Name); err != nil {
			return fmt.Errorf("member %q: %w", f.Name, err)
		}
		if seen[f.Name] {
			return fmt.Errorf("member %q given twice", f.Name)
		}
		seen[f.Name] = true
	}
	return nil
}

// currentVersion returns the version directory the symlink name points to,
// or "" when name is not a symlink to one of this bundle's versions.
func (d *Dir) currentVersion(name string) string {
	target, err := d.root.Readlink(name)
	if err != nil {
		return ""
	}
	if b, ok := versionBundle(target); !ok || b != name {
		return ""
	}
	if info, err := d.root.Lstat(target); err != nil || !info.IsDir() {
		return ""
	}
	return target
}

// bundleMatches reports whether version holds exactly files.
func (d *Dir) bundleMatches(version string, files []File) bool {
	vr, err := d.root.OpenRoot(version)
	if err != nil {
		return false
	}
	defer vr.Close()
	dir, err := vr.Open(".")
	if err != nil {
		return false
	}
	names, err := dir.Readdirnames(-1)
	dir.Close()
	if err != nil || len(names) != len(files) {
		return false
	}
	for _, f := range files {
		if _, same := matches(vr, f.Name, f); !same {
			return false
		}
	}
	return true
}

// publish writes a new version of bundle and swaps the bundle symlink to it.
func (d *Dir) publish(bundle string, files []File) (err error) {
	version, err := d.mkVersion(bundle)
	if err != nil {
		return err
	}
	swapped := false
	defer func() {
		if !swapped {
			d.root.RemoveAll(version)
		}
	}()
	if err := writeMembers(d.root, version, files); err != nil {
		return err
	}
	var link string
	for range 10 {
		link = tmpPrefix + strconv.FormatUint(rand.Uint64(), 36)
		if err = d.root.Symlink(version, link); !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if err != nil {
		return err
	}
	if err := d.root.Rename(link, bundle); err != nil {
		d.root.Remove(link)
		return err
	}
	swapped = true
	d.syncDir(bundle)
	return nil
}

// mkVersion creates an empty, new version directory for bundle.
func (d *Dir) mkVersion(bundle string) (string, error) {
	n := time.Now().UnixNano()
	for i := range int64(100) {
		name := versionName(bundle, n+i)
		err := d.root.Mkdir(name, 0o755)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		// Readers running as another uid must traverse it, whatever the umask.
		return name, d.root.Chmod(name, 0o755)
	}
	return "", fmt.Errorf("create a version directory: %w", fs.ErrExist)
}

// writeMembers writes every file into the (new, unpublished) version
// directory and syncs it.
func writeMembers(root *os.Root, version string, files []File) error {
	vr, err := root.OpenRoot(version)
	if err != nil {
		return err
	}
	defer vr.Close()
	for _, f := range files {
		file, err := vr.OpenFile(f.Name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if err := fill(file, f); err != nil {
			return err
		}
	}
	dir, err := vr.Open(".")
	if err != nil {
		return err
	}
	err = dir.Sync()
	if cerr := dir.Close(); err == nil {
		err = cerr
	}
	return err
}

// dropVersion removes a version directory that nothing points to any more.
// A failure only leaves garbage, which the next Open removes.
func (d *Dir) dropVersion(version string) {
	if err := d.root.RemoveAll(version); err != nil {
		d.logger.Warn("could not remove an old bundle version; the next start removes it", "path", d.Path(version), "err", err)
	}
}

// syncDir makes a rename durable. The rename is already visible to readers,
// so a failure here (never on tmpfs, where fsync is a no-op) is logged rather
// than reported as a failed write.
func (d *Dir) syncDir(name string) {
	if err := d.self.Sync(); err != nil {
		d.logger.Warn("could not fsync the output directory after replacing a target", "path", d.Path(name), "err", err)
	}
}
