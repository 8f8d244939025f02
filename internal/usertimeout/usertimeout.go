// Package usertimeout dials TCP connections that give up on a peer which
// stopped acknowledging what they send: a network partition, a host that
// froze or vanished. Without it a request sent into such an outage waits
// for TCP's retransmissions to give up, about 15 minutes on Linux's
// defaults, and nothing else ends it unless its caller leaves
// (docs/DESIGN.md, "What ends a statement in an outage").
//
// The bound is TCP_USER_TIMEOUT: how long sent bytes may stay
// unacknowledged before the kernel closes the connection (ETIMEDOUT). It
// also bounds keepalive probes left unanswered, which is what notices an
// outage that starts once a request has been sent and acknowledged, while
// its answer is awaited. A slow peer is not cut by either: a server
// working on a request still acknowledges what it receives, and its
// kernel answers the probes. It is set on Linux only; elsewhere the
// kernel's own retransmission and keepalive limits apply.
package usertimeout

import (
	"net"
	"syscall"
	"time"
)

// Default is the bound spool's connections are dialled with unless
// configured otherwise: PostgreSQL's (the URL's tcp_user_timeout), what
// GCS's store dials itself, and the CLI's. Long enough for any network
// that still carries packets, short enough that a request meeting a dead
// path fails while its caller still waits, and is retried.
const Default = 30 * time.Second

// Dialer returns a net.Dialer whose TCP connections are given up once
// what they send has gone unacknowledged for d, or once they have heard
// nothing for about d (2 s at least) while their own keepalive probes,
// sent after d/2 of silence and every d/2 (ProbeInterval), go
// unanswered; connecting waits d at most as well. With d 0
// or less it is a plain net.Dialer, the kernel's limits (about 15
// minutes on Linux's defaults). A Unix socket is left alone: it has no
// retransmissions to bound.
func Dialer(d time.Duration) *net.Dialer {
	if d <= 0 {
		return &net.Dialer{}
	}
	probe := ProbeInterval(d)
	return &net.Dialer{
		Timeout:         d,
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: probe, Interval: probe, Count: 9},
		Control:         control(d),
	}
}

// ProbeInterval is how long a connection bounded by d (d > 0) stays
// silent before its first keepalive probe, and the time between probes:
// d/2 in whole seconds, since the kernel counts keepalive in seconds, one
// at least, and maxProbeInterval at most. With TCP_USER_TIMEOUT set to d,
// the kernel gives the connection up at the first probe that finds d
// passed since it last heard from its peer.
func ProbeInterval(d time.Duration) time.Duration {
	return min(max((d/2).Truncate(time.Second), time.Second), maxProbeInterval)
}

// maxProbeInterval is the longest keepalive time Linux takes
// (MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL). Asked for more, it refuses the
// setting, which left a connection bounded by more than 18 hours with
// the kernel's two hours of silence, and PostgreSQL's side the same.
const maxProbeInterval = 32767 * time.Second

// control returns a net.Dialer Control function that sets d as the
// TCP_USER_TIMEOUT of every TCP socket it dials.
func control(d time.Duration) func(network, address string, c syscall.RawConn) error {
	return func(network, _ string, c syscall.RawConn) error {
		if network != "tcp" && network != "tcp4" && network != "tcp6" {
			return nil
		}
		return set(c, d)
	}
}
