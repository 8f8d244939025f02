//go:build !unix

package localfs

// mapBuffer allocates in the heap where there is no mmap.
func mapBuffer(size int) ([]byte, error) { return make([]byte, size), nil }

func unmapBuffer([]byte) {}
