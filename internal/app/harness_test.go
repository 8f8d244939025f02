package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/spoolhq/spool/internal/app"
	"github.com/spoolhq/spool/internal/app/apptest"
)

// testSecret signs the test servers' tokens (for tests that craft their own).
const testSecret = apptest.Secret

// spool is a running server under test, reached only over HTTP and
// websockets, as clients reach it.
type spool struct {
	t    testing.TB
	main *app.Main
	url  string
	srv  *apptest.Server
}

// smallConfig keeps files small: SINGLE up to 1 MiB, 5 MiB chunks.
func smallConfig(dir string) app.Config { return apptest.Config(dir) }

// startSpool runs spool on a free port with a fresh data dir; change
// edits the config first.
func startSpool(t testing.TB, change func(*app.Config)) *spool {
	t.Helper()
	srv := apptest.Start(t, change)
	return &spool{t: t, main: srv.Main, url: srv.URL, srv: srv}
}

// token returns a bearer token for user.
func (s *spool) token(user string) string {
	s.t.Helper()
	return s.srv.Token(s.t, user)
}

type gqlError struct {
	Message    string         `json:"message"`
	Extensions map[string]any `json:"extensions"`
}

func (e gqlError) code() string { c, _ := e.Extensions["code"].(string); return c }

// gql runs one operation over HTTP POST and decodes data into out. It
// returns the GraphQL errors, if any.
func (s *spool) gql(token, query string, vars map[string]any, out any) []gqlError {
	s.t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, s.url+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("POST /graphql: %v", err)
	}
	defer resp.Body.Close()
	var res struct {
		Data   json.RawMessage `json:"data"`
		Errors []gqlError      `json:"errors"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		s.t.Fatalf("decoding GraphQL answer (HTTP %d): %v", resp.StatusCode, err)
	}
	if out != nil && len(res.Errors) == 0 {
		if err := json.Unmarshal(res.Data, out); err != nil {
			s.t.Fatalf("decoding data %s: %v", res.Data, err)
		}
	}
	return res.Errors
}

// mustGQL is gql that fails the test on any error.
func (s *spool) mustGQL(token, query string, vars map[string]any, out any) {
	s.t.Helper()
	if errs := s.gql(token, query, vars, out); len(errs) > 0 {
		s.t.Fatalf("GraphQL errors: %+v", errs)
	}
}

// wantCode runs an operation and checks it fails with the code.
func (s *spool) wantCode(token, query string, vars map[string]any, code string) gqlError {
	s.t.Helper()
	errs := s.gql(token, query, vars, nil)
	if len(errs) == 0 {
		s.t.Fatalf("got success, want %s", code)
	}
	if got := errs[0].code(); got != code {
		s.t.Fatalf("got code %s (%q), want %s", got, errs[0].Message, code)
	}
	return errs[0]
}

// put sends body to a URL with PUT and returns the status and body.
func put(t testing.TB, url string, body []byte, header http.Header) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, url, bytes.NewReader(body))
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("PUT %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// get fetches a URL with optional headers.
func get(t testing.TB, url string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	return send(t, http.MethodGet, url, nil, header)
}

// send makes one request with optional headers and returns the response
// with its whole body read.
func send(t testing.TB, method, url string, body io.Reader, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, body)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", url, err)
	}
	return resp, b
}

// wsClient speaks graphql-transport-ws, as graphql-ws clients do.
type wsClient struct {
	t    testing.TB
	conn *websocket.Conn
	msgs chan wsMessage
	// writeMu serialises writes: read answers pings while a test
	// subscribes, and gorilla allows one writer at a time.
	writeMu sync.Mutex
}

// write sends one JSON message.
func (c *wsClient) write(v any) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	return c.conn.WriteJSON(v)
}

type wsMessage struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// rawSocket dials /graphql with subprotocol, sends connection_init with
// token, and returns the connection as is, for tests that read what
// dialWS's reader would swallow (close codes, keep-alives). It is closed
// when the test ends, and reads give up after 30 s (a hang guard only).
func rawSocket(t testing.TB, s *spool, subprotocol, token string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{subprotocol}, HandshakeTimeout: 5 * time.Second}
	conn, _, err := d.Dial(strings.Replace(s.url, "http", "ws", 1)+"/graphql", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if got := conn.Subprotocol(); got != subprotocol {
		t.Fatalf("subprotocol %q, want %q", got, subprotocol)
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if err := conn.WriteJSON(map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + token}}); err != nil {
		t.Fatal(err)
	}
	return conn
}

// dialWS connects and sends connection_init with the token (if any); it
// returns after connection_ack.
func (s *spool) dialWS(token string, header http.Header) *wsClient {
	s.t.Helper()
	c, err := s.tryDialWS(token, header)
	if err != nil {
		s.t.Fatal(err)
	}
	return c
}

func (s *spool) tryDialWS(token string, header http.Header) (*wsClient, error) {
	d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 5 * time.Second}
	conn, resp, err := d.Dial(strings.Replace(s.url, "http", "ws", 1)+"/graphql", header)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		return nil, fmt.Errorf("dial (HTTP %d): %w", status, err)
	}
	c := &wsClient{t: s.t, conn: conn, msgs: make(chan wsMessage, 1024)}
	s.t.Cleanup(func() { conn.Close() })
	payload := map[string]any{}
	if token != "" {
		payload["Authorization"] = "Bearer " + token
	}
	if err := conn.WriteJSON(map[string]any{"type": "connection_init", "payload": payload}); err != nil {
		return nil, err
	}
	go c.read()
	select {
	case m, ok := <-c.msgs:
		if !ok || m.Type != "connection_ack" {
			return nil, fmt.Errorf("got %+v (open %v), want connection_ack", m, ok)
		}
	case <-time.After(10 * time.Second):
		return nil, fmt.Errorf("no connection_ack")
	}
	return c, nil
}

// read forwards messages, answering pings as graphql-ws clients do.
func (c *wsClient) read() {
	defer close(c.msgs)
	for {
		var m wsMessage
		if err := c.conn.ReadJSON(&m); err != nil {
			return
		}
		if m.Type == "ping" {
			_ = c.write(map[string]string{"type": "pong"})
		}
		c.msgs <- m
	}
}

func (c *wsClient) subscribe(id, query string, vars map[string]any) {
	c.t.Helper()
	err := c.write(map[string]any{"id": id, "type": "subscribe",
		"payload": map[string]any{"query": query, "variables": vars}})
	if err != nil {
		c.t.Fatalf("subscribe: %v", err)
	}
}

// next returns the next message for id other than pings, or fails the test
// after a generous deadline (a hang guard, not a timing assertion).
func (c *wsClient) next(id string) wsMessage {
	c.t.Helper()
	// A hang guard, not a timing assertion: an event after processing
	// can take over a minute under -race on a loaded 2-CPU machine (the
	// first WebP encoding compiles libwebp; CI saw 30 s run out).
	deadline := time.After(120 * time.Second)
	for {
		select {
		case m, ok := <-c.msgs:
			if !ok {
				c.t.Fatalf("websocket closed while waiting for %s", id)
			}
			if m.ID == id {
				return m
			}
		case <-deadline:
			c.t.Fatalf("no message for %s", id)
		}
	}
}
