package sink

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// fsNames names the file systems an output directory is commonly found on,
// for the error message.
var fsNames = map[uint32]string{
	unix.EXT4_SUPER_MAGIC:      "ext2/ext3/ext4",
	unix.XFS_SUPER_MAGIC:       "xfs",
	unix.BTRFS_SUPER_MAGIC:     "btrfs",
	unix.OVERLAYFS_SUPER_MAGIC: "overlayfs",
	unix.NFS_SUPER_MAGIC:       "nfs",
	unix.V9FS_MAGIC:            "9p",
	unix.FUSE_SUPER_MAGIC:      "fuse",
	unix.F2FS_SUPER_MAGIC:      "f2fs",
	unix.CIFS_SUPER_MAGIC:      "cifs",
	unix.SMB2_SUPER_MAGIC:      "smb2",
	unix.SQUASHFS_MAGIC:        "squashfs",
	0x2fc12fc1:                 "zfs",
}

// fsType reports the file system f is on and whether it is memory-backed
// (tmpfs or ramfs).
func fsType(f *os.File) (name string, memory bool, err error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return "", false, err
	}
	var st unix.Statfs_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fstatfs(int(fd), &st) }); err != nil {
		return "", false, err
	}
	if serr != nil {
		return "", false, serr
	}
	switch magic := uint32(st.Type); magic {
	case unix.TMPFS_MAGIC:
		return "tmpfs", true, nil
	case unix.RAMFS_MAGIC:
		return "ramfs", true, nil
	default:
		if n, ok := fsNames[magic]; ok {
			return n, false, nil
		}
		return fmt.Sprintf("a file system of type 0x%x", magic), false, nil
	}
}
