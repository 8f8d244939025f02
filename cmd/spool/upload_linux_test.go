package main

import (
	"context"
	"net"
	"net/http"
	"testing"

	"github.com/spoolhq/spool/internal/usertimeout"
)

// The CLI's connections to a server are dialled with a TCP user timeout,
// so a request sent into a path that died silently fails within it and
// is retried, instead of waiting for TCP's retransmissions (GraphQL's
// requests had only the 2-minute ResponseHeaderTimeout).
func TestCLIConnectionsAreBounded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := (&remoteFlags{server: "http://" + ln.Addr().String(), token: "t"}).client(4)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := c.HTTP.Transport.(*http.Transport).DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got, err := usertimeout.Of(conn.(*net.TCPConn)); err != nil || got != usertimeout.Default {
		t.Errorf("the CLI's connection has TCP_USER_TIMEOUT %v (%v), want %v", got, err, usertimeout.Default)
	}
}
