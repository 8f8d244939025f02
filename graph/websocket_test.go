package graph_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/spoolhq/spool/graph"
	"github.com/spoolhq/spool/internal/auth"
)

// noUsers knows no token: every connection stays anonymous, which these
// tests need no more than.
type noUsers struct{}

func (noUsers) Authenticate(context.Context, string) (string, error) {
	return "", fmt.Errorf("%w: no users here", auth.ErrInvalidToken)
}

func (noUsers) ValidUntil(string) (time.Time, bool) { return time.Time{}, false }

// A websocket message over MaxWebsocketMessage closes the connection with
// 1009 (Message Too Big); one at the limit is served. Zero means 1 MiB.
func TestWebsocketMessageLimit(t *testing.T) {
	for _, tc := range []struct {
		option, limit int64
	}{
		{option: 0, limit: 1 << 20},
		{option: 64 << 10, limit: 64 << 10},
	} {
		t.Run(fmt.Sprint("MaxWebsocketMessage ", tc.option), func(t *testing.T) {
			srv := httptest.NewServer(graph.NewServer(graph.ServerOptions{Auth: noUsers{}, MaxWebsocketMessage: tc.option}))
			defer srv.Close()
			url := "ws" + strings.TrimPrefix(srv.URL, "http")

			conn := dialInitialized(t, url)
			for _, size := range []int64{100, tc.limit - 1, tc.limit} {
				if err := conn.WriteMessage(websocket.TextMessage, paddedPing(t, size)); err != nil {
					t.Fatal(err)
				}
				var pong struct{ Type string }
				if err := conn.ReadJSON(&pong); err != nil || pong.Type != "pong" {
					t.Fatalf("after a ping of %d bytes: got %q, %v; want a pong", size, pong.Type, err)
				}
			}

			// gorilla sends a message this large in many frames: the limit
			// is crossed in a continuation frame.
			if err := conn.WriteMessage(websocket.TextMessage, paddedPing(t, tc.limit+1)); err != nil {
				t.Logf("sending the message over the limit: %v", err) // the server may have closed first
			}
			wantClose(t, conn, websocket.CloseMessageTooBig)
		})
	}
}

// A connection_init over the limit is refused the same way.
func TestWebsocketMessageLimitBeforeInit(t *testing.T) {
	const limit = 1000
	srv := httptest.NewServer(graph.NewServer(graph.ServerOptions{Auth: noUsers{}, MaxWebsocketMessage: limit}))
	defer srv.Close()
	conn := dial(t, "ws"+strings.TrimPrefix(srv.URL, "http"))
	init := fmt.Sprintf(`{"type":"connection_init","payload":{"pad":"%s"}}`, strings.Repeat("x", limit))
	if err := conn.WriteMessage(websocket.TextMessage, []byte(init)); err != nil {
		t.Fatal(err)
	}
	wantClose(t, conn, websocket.CloseMessageTooBig)
}

func dial(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 5 * time.Second}
	conn, _, err := d.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second)) // a hang guard only
	return conn
}

// dialInitialized returns a graphql-transport-ws connection that the
// server has acknowledged.
func dialInitialized(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	conn := dial(t, url)
	if err := conn.WriteJSON(map[string]any{"type": "connection_init"}); err != nil {
		t.Fatal(err)
	}
	var ack struct{ Type string }
	if err := conn.ReadJSON(&ack); err != nil || ack.Type != "connection_ack" {
		t.Fatalf("after connection_init: got %q, %v; want connection_ack", ack.Type, err)
	}
	return conn
}

// paddedPing is a graphql-transport-ws ping of exactly size bytes, padded
// in its payload.
func paddedPing(t *testing.T, size int64) []byte {
	t.Helper()
	message := func(padding int64) []byte {
		b, err := json.Marshal(map[string]any{"type": "ping", "payload": map[string]string{"pad": strings.Repeat("x", int(padding))}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := message(size - int64(len(message(0))))
	if int64(len(b)) != size {
		t.Fatalf("padded ping is %d bytes, want %d", len(b), size)
	}
	return b
}

// wantClose checks that the server's next word is a close with code.
func wantClose(t *testing.T, conn *websocket.Conn, code int) {
	t.Helper()
	_, msg, err := conn.ReadMessage()
	if err == nil {
		t.Fatalf("got a message of %d bytes (%.60s…), want close %d", len(msg), msg, code)
	}
	if !websocket.IsCloseError(err, code) {
		t.Fatalf("the connection ended with %v, want close %d", err, code)
	}
}

// Messages that reach the server in one TCP segment are all answered: the
// reader waits on the socket only when nothing is buffered, so the later
// ones, read into the buffer with the first, are not left there until the
// client sends more.
func TestWebsocketMessagesInOneWrite(t *testing.T) {
	srv := httptest.NewServer(graph.NewServer(graph.ServerOptions{Auth: noUsers{}}))
	defer srv.Close()
	conn := dialInitialized(t, "ws"+strings.TrimPrefix(srv.URL, "http"))

	// Three client frames (text, masked with a zero key, so the payload
	// is sent as is) written at once on the TCP connection.
	var frames []byte
	for i := range 3 {
		payload := fmt.Appendf(nil, `{"type":"ping","payload":{"n":%d}}`, i)
		frames = append(frames, 0x81, 0x80|byte(len(payload)), 0, 0, 0, 0)
		frames = append(frames, payload...)
	}
	if _, err := conn.NetConn().Write(frames); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		var pong struct {
			Type    string
			Payload struct{ N int }
		}
		if err := conn.ReadJSON(&pong); err != nil || pong.Type != "pong" || pong.Payload.N != i {
			t.Fatalf("answer %d: got %+v, %v; want the pong of ping %d", i, pong, err, i)
		}
	}
}
