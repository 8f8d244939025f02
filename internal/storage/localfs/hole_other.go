//go:build !(linux || darwin || freebsd)

package localfs

import (
	"errors"
	"os"
)

// firstHole is not known where lseek has no SEEK_HOLE: every byte of a
// write then counts as new (roomFor).
func firstHole(*os.File, int64) (int64, error) {
	return 0, errors.New("localfs: holes are not known on this system")
}
