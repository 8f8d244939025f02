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

// Of reads back c's TCP_USER_TIMEOUT: 0 is the kernel's limits.
func Of(c syscall.Conn) (time.Duration, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var ms int
	var sockErr error
	if err := raw.Control(func(fd uintptr) {
		ms, sockErr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
	}); err != nil {
		return 0, err
	}
	return time.Duration(ms) * time.Millisecond, sockErr
}
