//go:build !linux

package sink

import "os"

// fsType cannot tell memory-backed file systems apart outside Linux; the
// output directory then needs output.allow_disk: true.
func fsType(*os.File) (name string, memory bool, err error) {
	return "a file system this platform cannot identify", false, nil
}
