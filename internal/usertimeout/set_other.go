//go:build !linux

package database

import (
	"syscall"
	"time"
)

// setTCPUserTimeout does nothing off Linux: there the kernel's own
// retransmission limits bound a connection in an outage.
func setTCPUserTimeout(syscall.RawConn, time.Duration) error { return nil }
