//go:build unix

package graph

import "syscall"

// readable reports whether the socket fd has something to read (or has
// failed or ended), peeking at one byte without taking it; false has
// syscall.RawConn.Read wait for the socket to become readable.
func readable(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err != syscall.EAGAIN
}
