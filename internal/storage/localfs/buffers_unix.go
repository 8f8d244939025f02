//go:build unix

package localfs

import "golang.org/x/sys/unix"

// mapBuffer maps size bytes of anonymous memory: resident once touched,
// never scanned or counted by the garbage collector.
func mapBuffer(size int) ([]byte, error) {
	return unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
}

func unmapBuffer(buf []byte) { _ = unix.Munmap(buf) }
