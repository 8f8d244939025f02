package app_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// legacySocket dials with the legacy graphql-ws subprotocol
// (subscriptions-transport-ws, what older Apollo clients speak) and
// sends connection_init with token; it returns after connection_ack.
func legacySocket(t *testing.T, s *spool, token string) *websocket.Conn {
	t.Helper()
	conn := rawSocket(t, s, "graphql-ws", token)
	if m := legacyNext(t, conn); m.Type != "connection_ack" {
		t.Fatalf("after connection_init: %s, want connection_ack", m.Type)
	}
	return conn
}

// legacyNext reads the next message other than a keep-alive ("ka").
func legacyNext(t *testing.T, conn *websocket.Conn) wsMessage {
	t.Helper()
	for {
		var m wsMessage
		if err := conn.ReadJSON(&m); err != nil {
			t.Fatalf("reading: %v", err)
		}
		if m.Type != "ka" {
			return m
		}
	}
}

// The legacy graphql-ws protocol that API.md promises beside
// graphql-transport-ws: start, data, stop, complete, connection_terminate,
// and a close when the token expires, after a connection_error saying why.
func TestLegacyGraphQLWSProtocol(t *testing.T) {
	t.Parallel()
	s := startSpool(t, nil)
	alice := s.token("alice")
	conn := legacySocket(t, s, alice)

	if err := conn.WriteJSON(map[string]any{"id": "1", "type": "start",
		"payload": map[string]any{"query": `subscription { myUploads { uploadId status } }`}}); err != nil {
		t.Fatal(err)
	}
	// Planned before or after the subscription starts, the upload is
	// sent as INITIALIZED: in the snapshot of unfinished uploads, or as
	// an event.
	up := s.planOne(alice, file("a.png", "image/png", 1000))
	m := legacyNext(t, conn)
	var data struct {
		Data struct {
			MyUploads struct{ UploadID, Status string }
		}
	}
	if err := json.Unmarshal(m.Payload, &data); m.Type != "data" || m.ID != "1" || err != nil ||
		data.Data.MyUploads.UploadID != up.ID || data.Data.MyUploads.Status != "INITIALIZED" {
		t.Fatalf("after initBatch: %s %s %s, want data for id 1 with %s INITIALIZED", m.Type, m.ID, m.Payload, up.ID)
	}
	if err := conn.WriteJSON(map[string]any{"id": "1", "type": "stop"}); err != nil {
		t.Fatal(err)
	}
	if m := legacyNext(t, conn); m.Type != "complete" || m.ID != "1" {
		t.Errorf("after stop: %s %s, want complete for id 1", m.Type, m.ID)
	}
	if err := conn.WriteJSON(map[string]any{"type": "connection_terminate"}); err != nil {
		t.Fatal(err)
	}
	var ce *websocket.CloseError
	if err := conn.ReadJSON(&wsMessage{}); !asCloseError(err, &ce) || ce.Code != websocket.CloseNormalClosure {
		t.Errorf("after connection_terminate: %v, want close 1000", err)
	}

	// A token about to expire: connection_error says why, then 4403.
	expiring := legacySocket(t, s, craftToken(t, testSecret, "spool", "alice", time.Now().Add(2*time.Second)))
	if m := legacyNext(t, expiring); m.Type != "connection_error" || !strings.Contains(string(m.Payload), "token has expired") {
		t.Errorf("at the token's expiry: %s %s, want connection_error saying the token has expired", m.Type, m.Payload)
	}
	if err := expiring.ReadJSON(&wsMessage{}); !asCloseError(err, &ce) || ce.Code != 4403 {
		t.Errorf("after connection_error: %v, want close 4403", err)
	}
}
