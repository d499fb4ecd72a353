package sink

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// writeError wraps err from an operation on the target name with what the
// operator can do about it. It returns nil for a nil err. The wrapped OS
// error stays reachable with errors.Is (syscall.ENOSPC, fs.ErrPermission).
func writeError(op, name string, err error) error {
	if err == nil {
		return nil
	}
	if hint := hint(err); hint != "" {
		return fmt.Errorf("sink: %s %q: %s: %w", op, name, hint, err)
	}
	return fmt.Errorf("sink: %s %q: %w", op, name, err)
}

func hint(err error) string {
	switch {
	case errors.Is(err, syscall.ENOSPC):
		return "no space left on the tmpfs: raise its size (emptyDir sizeLimit / tmpfs size=)"
	case errors.Is(err, syscall.EDQUOT):
		return "quota exceeded on the output directory: raise the quota"
	case errors.Is(err, syscall.EACCES):
		return fmt.Sprintf("permission denied for uid %d: make the output directory writable by the sidecar (chown/chmod it, Kubernetes fsGroup)", os.Geteuid())
	case errors.Is(err, syscall.EPERM):
		return "operation not permitted: setting a file's owner needs CAP_CHOWN (run as root, or leave output.uid/gid unset)"
	case errors.Is(err, syscall.EROFS):
		return "read-only file system: mount the output directory read-write"
	case errors.Is(err, syscall.EIO):
		return "I/O error on the output file system"
	case errors.Is(err, syscall.EISDIR), errors.Is(err, syscall.ENOTEMPTY), errors.Is(err, syscall.EEXIST):
		return "a directory is in the way of the target: remove it"
	}
	return ""
}

// openError explains why the output directory cannot be used.
func openError(dir string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("sink: output directory %q does not exist: create it, or mount a tmpfs there (Kubernetes: an emptyDir with medium: Memory): %w", dir, err)
	case errors.Is(err, syscall.ENOTDIR), isFile(dir):
		return fmt.Errorf("sink: output directory %q is not a directory: point output.dir at a directory: %w", dir, err)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("sink: output directory %q: permission denied for uid %d: make it writable by the sidecar (chown/chmod it, Kubernetes fsGroup) or run the sidecar as its owner: %w", dir, os.Geteuid(), err)
	case errors.Is(err, syscall.EROFS):
		return fmt.Errorf("sink: output directory %q is on a read-only file system: mount it read-write: %w", dir, err)
	}
	return fmt.Errorf("sink: open output directory %q: %w", dir, err)
}

// isFile reports whether path exists and is not a directory (os.OpenRoot's
// error for that case is not syscall.ENOTDIR).
func isFile(path string) bool {
	info, err := os.Stat(path)
	return err == nil && !info.IsDir()
}
