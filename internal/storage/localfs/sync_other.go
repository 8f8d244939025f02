//go:build !linux

package localfs

import "os"

// fdatasync is fsync where fdatasync is not available.
func fdatasync(f *os.File) error { return f.Sync() }

// startWriteback is a no-op where sync_file_range does not exist; Assemble
// then flushes the whole file.
func startWriteback(*os.File, int64, int64) {}

// releaseRange is a no-op where fallocate cannot punch holes: a failed
// write's bytes keep their blocks until the upload is discarded.
func releaseRange(*os.File, int64, int64) {}
