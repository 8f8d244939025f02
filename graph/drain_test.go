package graph_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/spoolhq/spool/graph"
	"github.com/spoolhq/spool/internal/auth"
	"github.com/spoolhq/spool/internal/upload"
)

// GoAway closes every open websocket with 1001 (going away), whether
// acknowledged or still before connection_init, and one upgraded after
// it at once; Len counts the open ones.
func TestWebsocketsGoAway(t *testing.T) {
	sockets := graph.NewWebsockets()
	srv := httptest.NewServer(graph.NewServer(graph.ServerOptions{Auth: noUsers{}, Websockets: sockets}))
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	acked := dialInitialized(t, url)
	fresh := dial(t, url)
	// The server registers a socket right after it answers the
	// upgrade, which may be after the client's dial returns.
	for deadline := time.Now().Add(30 * time.Second); sockets.Len() != 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) { // a hang guard
			t.Fatalf("Len = %d before GoAway, want 2", sockets.Len())
		}
	}
	if n := sockets.GoAway(); n != 2 {
		t.Errorf("GoAway closed %d websockets, want 2", n)
	}
	wantClose(t, acked, websocket.CloseGoingAway)
	wantClose(t, fresh, websocket.CloseGoingAway)
	late := dial(t, url)
	wantClose(t, late, websocket.CloseGoingAway)
	if n := sockets.Len(); n != 0 {
		t.Errorf("Len = %d after GoAway, want 0", n)
	}
}

// authenticator answers every token with err.
type authenticator struct{ err error }

func (a authenticator) Authenticate(context.Context, string) (string, error) { return "", a.err }

func (authenticator) ValidUntil(string) (time.Time, bool) { return time.Time{}, false }

// A connection_init whose token cannot be checked is the server's
// failure, not the client's: 1013 (try again later) when the database is
// unavailable, which graphql-ws clients retry, and 4500 for another
// failure; a bad token is acknowledged (its operations answer
// UNAUTHENTICATED).
func TestWebsocketInitFailures(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want int // close code; 0 means connection_ack
	}{
		{"database unavailable", upload.Unavailable(errors.New("dial tcp: connection refused")), 1013},
		{"another failure", errors.New("boom"), 4500},
		{"bad token", fmt.Errorf("%w: expired", auth.ErrInvalidToken), 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(graph.NewServer(graph.ServerOptions{Auth: authenticator{c.err}}))
			defer srv.Close()
			url := "ws" + strings.TrimPrefix(srv.URL, "http")
			if c.want == 0 {
				dialInitialized(t, url)
				return
			}
			conn := dial(t, url)
			if err := conn.WriteJSON(map[string]any{"type": "connection_init", "payload": map[string]string{"Authorization": "Bearer x"}}); err != nil {
				t.Fatal(err)
			}
			wantClose(t, conn, c.want)
		})
	}
}
