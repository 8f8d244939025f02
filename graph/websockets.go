package graph

import (
	"sync"

	"github.com/gorilla/websocket"
)

// Websockets tracks a server's open websockets. net/http's
// Server.Shutdown does not see them (they are hijacked), so a draining
// server closes them itself, with 1001 (going away): graphql-ws clients
// then reconnect (to another replica, once the load balancer has taken
// this one out) and subscribe again, which starts each subscription
// with a fresh snapshot.
type Websockets struct {
	mu    sync.Mutex
	open  map[*wsConn]struct{}
	going bool // GoAway was called: new sockets are closed at once
}

// NewWebsockets returns an empty set.
func NewWebsockets() *Websockets {
	return &Websockets{open: map[*wsConn]struct{}{}}
}

// closeGoingAway is RFC 6455's 1001, "going away".
const closeGoingAway = websocket.CloseGoingAway

// goingAwayReason is the close frame's reason at a drain.
const goingAwayReason = "server shutting down; reconnect"

// add registers c; false means the set is going away and c must close.
func (s *Websockets) add(c *wsConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.going {
		return false
	}
	s.open[c] = struct{}{}
	return true
}

func (s *Websockets) remove(c *wsConn) {
	s.mu.Lock()
	delete(s.open, c)
	s.mu.Unlock()
}

// Len is how many websockets are open.
func (s *Websockets) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.open)
}

// GoAway closes every open websocket with 1001 (going away), and every
// one opened from now on as soon as it is upgraded; it returns how many
// were open. Each close frame waits at most closeFrameTimeout for a
// client that does not read; the sockets are closed in parallel.
func (s *Websockets) GoAway() int {
	s.mu.Lock()
	s.going = true
	open := make([]*wsConn, 0, len(s.open))
	for c := range s.open {
		open = append(open, c)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range open {
		wg.Go(func() { c.closeWith(closeGoingAway, goingAwayReason) })
	}
	wg.Wait()
	return len(open)
}
