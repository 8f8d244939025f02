//go:build !linux

package usertimeout

import (
	"syscall"
	"time"
)

// set does nothing off Linux: there the kernel's own retransmission
// limits bound a connection in an outage.
func set(syscall.RawConn, time.Duration) error { return nil }

// Of is 0 off Linux, where no bound is set.
func Of(syscall.Conn) (time.Duration, error) { return 0, nil }
