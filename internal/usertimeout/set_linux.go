package usertimeout

import (
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// set sets d as TCP_USER_TIMEOUT on c's socket.
func set(c syscall.RawConn, d time.Duration) error {
	var sockErr error
	err := c.Control(func(fd uintptr) {
		sockErr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d.Milliseconds()))
	})
	if err != nil {
		return err
	}
	return sockErr
}
