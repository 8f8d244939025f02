//go:build linux || darwin || freebsd

package localfs

import (
	"os"

	"golang.org/x/sys/unix"
)

// firstHole returns where f's first hole at or after off begins: the
// bytes from off to there are on disk. A file without holes ends in one.
func firstHole(f *os.File, off int64) (int64, error) {
	return unix.Seek(int(f.Fd()), off, unix.SEEK_HOLE)
}
