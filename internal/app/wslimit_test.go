package app_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
)

// wsMessageLimit is the largest message a client may send over a
// websocket: 1 MiB by default, as for a JSON POST.
const wsMessageLimit = 1 << 20

// A client cannot make the server read a websocket message of any size:
// one over the limit closes its connection with 1009 (Message Too Big),
// one at the limit is served, and the server goes on serving others.
func TestWebsocketMessageLimit(t *testing.T) {
	t.Parallel()
	s := startSpool(t, nil)
	alice := s.token("alice")
	up := s.planOne(alice, file("a.png", "image/png", 1000))
	const op = `subscription($id: ID!) { uploadProgress(uploadId: $id) { status } }`

	ws := s.dialWS(alice, nil)
	ws.subscribe("small", op, vars("id", up.ID))
	wantSnapshot(t, ws, "small")
	// gorilla sends it in many continuation frames.
	if err := ws.conn.WriteMessage(websocket.TextMessage, paddedSubscribe(t, "at-limit", op, up.ID, wsMessageLimit)); err != nil {
		t.Fatal(err)
	}
	wantSnapshot(t, ws, "at-limit")

	// dialWS's reader would swallow the close code; this client reads it.
	over := rawSocket(t, s, "graphql-transport-ws", alice)
	if err := over.WriteMessage(websocket.TextMessage, paddedSubscribe(t, "over", op, up.ID, wsMessageLimit+1)); err != nil {
		t.Logf("sending the message over the limit: %v", err) // the server may have closed first
	}
	for {
		var m wsMessage
		err := over.ReadJSON(&m)
		if websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
			break
		}
		if err != nil {
			t.Fatalf("the connection ended with %v, want close 1009 (Message Too Big)", err)
		}
		if m.ID == "over" {
			t.Fatalf("the message over the limit was served: %s %s", m.Type, m.Payload)
		}
	}

	// The server is still fine, on a new connection and on the old one.
	after := s.dialWS(alice, nil)
	after.subscribe("after", op, vars("id", up.ID))
	wantSnapshot(t, after, "after")
	ws.subscribe("still", op, vars("id", up.ID))
	wantSnapshot(t, ws, "still")
}

// paddedSubscribe is a subscribe message of exactly size bytes: query
// padded with a comment.
func paddedSubscribe(t *testing.T, id, query, uploadID string, size int) []byte {
	t.Helper()
	message := func(padding int) []byte {
		b, err := json.Marshal(map[string]any{"id": id, "type": "subscribe", "payload": map[string]any{
			"query":     query + "\n# " + strings.Repeat("x", padding),
			"variables": vars("id", uploadID),
		}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := message(size - len(message(0)))
	if len(b) != size {
		t.Fatalf("padded message is %d bytes, want %d", len(b), size)
	}
	return b
}

// wantSnapshot checks that subscription id starts with its snapshot.
func wantSnapshot(t *testing.T, ws *wsClient, id string) {
	t.Helper()
	if m := ws.next(id); m.Type != "next" || hasErrors(m) {
		t.Fatalf("subscription %s: got %s %s, want its snapshot", id, m.Type, m.Payload)
	}
}
