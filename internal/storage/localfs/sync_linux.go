package localfs

import (
	"os"

	"golang.org/x/sys/unix"
)

// fdatasync flushes f's data and the metadata needed to read it back.
func fdatasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }

// startWriteback asks the kernel to begin writing a range of f to disk
// and returns at once. It is only a hint: errors are ignored, and the
// fsync in Assemble is what makes the file durable.
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// releaseRange gives the filesystem back the blocks of f's range
// [off, off+n) and reads it as zeros from then on; the file keeps its
// size. Where the filesystem cannot punch holes it does nothing, and the
// range keeps its blocks until the upload is discarded.
func releaseRange(f *os.File, off, n int64) {
	if n > 0 {
		_ = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	}
}
