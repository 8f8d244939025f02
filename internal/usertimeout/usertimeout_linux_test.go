package usertimeout

import (
	"context"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Dialer's connections carry the bound in their sockets: TCP_USER_TIMEOUT
// of d, and keepalive probes after d/2 of silence and every d/2 (in whole
// seconds, one at least, 32,767 at most); with d of 0 the kernel's
// limits, and Go's usual keepalive (15 s).
func TestDialerSetsTheSocketsBounds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()

	for _, c := range []struct {
		d                     time.Duration
		userTimeoutMS         int
		keepIdleS, keepIntvlS int
	}{
		{30 * time.Second, 30000, 15, 15},
		{500 * time.Millisecond, 500, 1, 1},
		{3 * time.Second, 3000, 1, 1}, // whole seconds, rounded down: silence noticed within d
		// Linux takes keepalive times of 32,767 s at most: a longer bound
		// probes at that (an hour's probes refused left Go's 15 s).
		{24 * time.Hour, 86400000, 32767, 32767},
		{0, 0, 15, 15},
	} {
		conn, err := Dialer(c.d).DialContext(context.Background(), "tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		got := sockopts(t, conn.(*net.TCPConn))
		conn.Close()
		if got != [4]int{c.userTimeoutMS, 1, c.keepIdleS, c.keepIntvlS} {
			t.Errorf("Dialer(%v): the socket has TCP_USER_TIMEOUT %d ms, SO_KEEPALIVE %d, TCP_KEEPIDLE %d s, TCP_KEEPINTVL %d s; want %d, 1, %d, %d",
				c.d, got[0], got[1], got[2], got[3], c.userTimeoutMS, c.keepIdleS, c.keepIntvlS)
		}
	}
}

// sockopts reads back c's TCP_USER_TIMEOUT (ms), SO_KEEPALIVE,
// TCP_KEEPIDLE and TCP_KEEPINTVL (s).
func sockopts(t *testing.T, c *net.TCPConn) [4]int {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got [4]int
	var errs [4]error
	userTimeout, err := Of(c)
	got[0], errs[0] = int(userTimeout.Milliseconds()), err
	if err := raw.Control(func(fd uintptr) {
		got[1], errs[1] = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		got[2], errs[2] = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
		got[3], errs[3] = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)
	}); err != nil {
		t.Fatal(err)
	}
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return got
}
