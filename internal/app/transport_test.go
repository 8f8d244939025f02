package app_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/spoolhq/spool/internal/app"
	"github.com/spoolhq/spool/internal/app/apptest"
	"github.com/spoolhq/spool/internal/eventually"
)

// These tests hold the websocket transport to what graphql-ws, Apollo and
// urql clients need: no reconnect storms, keep-alive, subscriptions that
// start with a snapshot, end by themselves and show only the caller's
// uploads.

func TestWebsocketBadToken(t *testing.T) {
	t.Parallel()
	s := startSpool(t, nil)
	tokens := []struct{ name, token, says string }{
		{"no token", "", "send a bearer token"},
		{"garbage", "garbage", "refused: it is malformed"},
		{"expired", craftToken(t, testSecret, "spool", "alice", time.Now().Add(-time.Minute)), "refused: it has expired"},
		{"another secret", craftToken(t, "another-secret-0123456789abcdef0123", "spool", "alice", time.Now().Add(time.Hour)), "made for another server"},
	}
	for _, tc := range tokens {
		t.Run(tc.name, func(t *testing.T) {
			s := s.with(t)
			// The connection is accepted: refusing it would close the
			// socket, which graphql-ws clients retry at once, forever.
			ws, err := s.tryDialWS(tc.token, nil)
			if err != nil {
				t.Fatalf("dialing with a bad token: %v", err)
			}
			ws.subscribe("mine", `subscription { myUploads { uploadId } }`, nil)
			if got := subscriptionError(ws, "mine"); got.code() != "UNAUTHENTICATED" || !strings.Contains(got.Message, tc.says) {
				t.Errorf("subscription: got %s %q, want UNAUTHENTICATED saying %q", got.code(), got.Message, tc.says)
			}
			// The socket is still open: a second operation is answered,
			// and so is a ping.
			ws.subscribe("me", `query { me { name } }`, nil)
			if got := subscriptionError(ws, "me").code(); got != "UNAUTHENTICATED" {
				t.Errorf("query after the failed subscription: got code %s, want UNAUTHENTICATED", got)
			}
			if err := ws.write(map[string]string{"type": "ping"}); err != nil {
				t.Fatalf("ping: %v", err)
			}
			if m := ws.next(""); m.Type != "pong" {
				t.Errorf("after ping: got %s, want pong", m.Type)
			}
		})
	}
}

// A websocket ends when the token it was opened with does: its
// subscriptions must not outlive it. The close is graphql-ws's 4403,
// which clients retry, with a fresh token if their connectionParams give
// one; the same token is then accepted and each operation refused, as
// for any expired token, with no close to retry.
func TestWebsocketClosesWhenItsTokenExpires(t *testing.T) {
	t.Parallel()
	s := startSpool(t, nil)
	expires := time.Now().Add(2 * time.Second).Truncate(time.Second) // a JWT's times are whole seconds
	token := craftToken(t, testSecret, "spool", "alice", expires)

	conn := rawSocket(t, s, "graphql-transport-ws", token)
	if err := conn.WriteJSON(map[string]any{"id": "mine", "type": "subscribe",
		"payload": map[string]any{"query": `subscription { myUploads { uploadId } }`}}); err != nil {
		t.Fatal(err)
	}
	var ce *websocket.CloseError
	for {
		var m wsMessage
		err := conn.ReadJSON(&m)
		if err == nil {
			if m.Type == "ping" {
				_ = conn.WriteJSON(map[string]string{"type": "pong"})
			}
			continue
		}
		if !asCloseError(err, &ce) {
			t.Fatalf("the socket ended with %v, want a close frame", err)
		}
		break
	}
	closedAt := time.Now()
	if ce.Code != 4403 || !strings.Contains(ce.Text, "token has expired") {
		t.Errorf("close: %d %q, want 4403 saying the token has expired", ce.Code, ce.Text)
	}
	if closedAt.Before(expires) {
		t.Errorf("closed at %s, before the token expired at %s", closedAt.Format(time.StampMilli), expires.Format(time.StampMilli))
	}

	ws, err := s.tryDialWS(token, nil)
	if err != nil {
		t.Fatalf("reconnecting with the expired token: %v", err)
	}
	ws.subscribe("mine", `subscription { myUploads { uploadId } }`, nil)
	if got := subscriptionError(ws, "mine"); got.code() != "UNAUTHENTICATED" || !strings.Contains(got.Message, "it has expired") {
		t.Errorf("after reconnecting: got %s %q, want UNAUTHENTICATED saying it has expired", got.code(), got.Message)
	}
}

// TestWebsocketNoReconnectStorm runs a client that behaves like
// graphql-ws: it subscribes and reconnects whenever the socket closes.
// With a bad token it must not be made to reconnect over and over.
func TestWebsocketNoReconnectStorm(t *testing.T) {
	t.Parallel()
	s := startSpool(t, nil)
	wsURL := strings.Replace(s.url, "http", "ws", 1) + "/graphql"
	d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 5 * time.Second}
	// The window only bounds how long the client runs; a server that
	// closed the socket would see hundreds of connections in it.
	until := time.Now().Add(time.Second)
	connects := 0
	for time.Now().Before(until) {
		connects++
		conn, _, err := d.Dial(wsURL, nil)
		if err != nil {
			continue // a refused handshake is retried too
		}
		_ = conn.WriteJSON(map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer expired.or.bad"}})
		_ = conn.WriteJSON(map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{"query": `subscription { myUploads { uploadId } }`}})
		_ = conn.SetReadDeadline(until)
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				break
			}
		}
		conn.Close()
	}
	if connects > 3 {
		t.Errorf("the client connected %d times in its run, want at most 3", connects)
	}
}

func TestWebsocketKeepAlive(t *testing.T) {
	t.Parallel()
	const interval = 100 * time.Millisecond
	s := startSpool(t, func(c *app.Config) { c.PingInterval = interval })

	// A client that answers pings (as wsClient does) stays connected
	// well past the server's pong deadline of two intervals.
	ws := s.dialWS(s.token("alice"), nil)
	for pings := 0; pings < 4; {
		if m := ws.next(""); m.Type == "ping" {
			pings++
		}
	}
	ws.subscribe("up", `subscription($id: ID!) { uploadProgress(uploadId: $id) { status } }`, vars("id", "upl_unknown"))
	if got := subscriptionError(ws, "up").code(); got != "NOT_FOUND" {
		t.Errorf("after 4 pings: got %s, want the connection to answer NOT_FOUND", got)
	}

	// One that never answers is dropped, which is what the pings are for.
	d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 5 * time.Second}
	conn, _, err := d.Dial(strings.Replace(s.url, "http", "ws", 1)+"/graphql", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.WriteJSON(map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + s.token("alice")}}); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second)) // a hang guard only
	pings := 0
	for {
		var m wsMessage
		if err := conn.ReadJSON(&m); err != nil {
			if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
				t.Fatal("a client that never answers pings was never dropped")
			}
			break
		}
		if m.Type == "ping" {
			pings++
		}
	}
	if pings == 0 {
		t.Error("the silent client was dropped without ever being pinged")
	}
}

// errorRecorder keeps the messages of records at level Error and above.
type errorRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *errorRecorder) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }
func (r *errorRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	msg := rec.Message
	rec.Attrs(func(a slog.Attr) bool { msg += " " + a.String(); return true })
	r.msgs = append(r.msgs, msg)
	return nil
}
func (r *errorRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *errorRecorder) WithGroup(string) slog.Handler      { return r }

func (r *errorRecorder) errors() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

// TestSubscriptionStoppedAtOnce stops subscriptions right after starting
// them, as a component that mounts and unmounts at once does: that is no
// server failure and must not be logged as one.
func TestSubscriptionStoppedAtOnce(t *testing.T) {
	t.Parallel()
	rec := &errorRecorder{}
	srv := apptest.StartLogged(t, slog.New(rec), nil)
	s := &spool{t: t, main: srv.Main, url: srv.URL, srv: srv}
	tok := s.token("alice")
	up := s.planOne(tok, file("a.png", "image/png", 1000))

	ws := s.dialWS(tok, nil)
	ids := []string{}
	for i := range 30 {
		id := "s" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		if i%2 == 0 {
			ws.subscribe(id, `subscription { myUploads { uploadId } }`, nil)
		} else {
			ws.subscribe(id, `subscription($id: ID!) { uploadProgress(uploadId: $id) { status } }`, vars("id", up.ID))
		}
		ws.stop(id)
		ids = append(ids, id)
	}
	// Every subscription ends with complete (or error) from the server;
	// once all have, all errors they caused have been presented.
	open := map[string]bool{}
	for _, id := range ids {
		open[id] = true
	}
	for len(open) > 0 {
		select {
		case m, ok := <-ws.msgs:
			if !ok {
				t.Fatal("websocket closed")
			}
			if m.Type == "complete" || m.Type == "error" {
				delete(open, m.ID)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no complete for %d subscriptions", len(open))
		}
	}
	if errs := rec.errors(); len(errs) > 0 {
		t.Errorf("stopping subscriptions logged %d errors, want none; first: %s", len(errs), errs[0])
	}
}

func TestUploadProgressSubscription(t *testing.T) {
	t.Parallel()
	s := startSpool(t, nil)
	tok := s.token("alice")
	img := fileBytes("image/png", 4000, 20)
	up := s.planOne(tok, file("p.png", "image/png", int64(len(img))))

	ws := s.dialWS(tok, nil)
	ws.subscribe("p", `subscription($id: ID!) { uploadProgress(uploadId: $id) { uploadId status percent uploadedChunks mediaStatus } }`, vars("id", up.ID))
	events := collect(ws, "p")
	// The snapshot comes before anything happens.
	first, ok := <-events
	if !ok {
		t.Fatal("the subscription ended without a snapshot")
	}
	if first.UploadID != up.ID || first.Status != "INITIALIZED" || first.Percent != 0 || first.UploadedChunks != 0 {
		t.Fatalf("snapshot: got %+v, want %s INITIALIZED at 0%%", first, up.ID)
	}
	sendChunk(t, up.ChunkURLs[0], img, http.StatusOK)
	s.complete(tok, up.ID)

	last, percent := first, 0
	for p := range events { // ends when the server completes the subscription
		if p.Percent < percent {
			t.Errorf("percent went back from %d to %d", percent, p.Percent)
		}
		percent, last = p.Percent, p
	}
	if last.Status != "COMPLETED" || last.Percent != 100 || last.UploadedChunks != 1 || last.MediaStatus != "READY" {
		t.Errorf("last event: got %+v, want COMPLETED at 100%% with 1 chunk, media READY", last)
	}
	// The connection is still usable after the subscription completed.
	ws.subscribe("again", `subscription($id: ID!) { uploadProgress(uploadId: $id) { status mediaStatus } }`, vars("id", up.ID))
	again := collect(ws, "again")
	if got := <-again; got.Status != "COMPLETED" || got.MediaStatus != "READY" {
		t.Errorf("subscribing to a completed upload: got %+v, want its COMPLETED snapshot with media READY", got)
	}
	if _, open := <-again; open {
		t.Errorf("subscribing to a completed upload with its media READY: got a second event, want the end")
	}
}

// TestChunkAnswerIsSentWhole: a chunk PUT's answer, taken or refused, is
// flushed by its handler before it yields to the subscribers' pumps
// (httpapi's flushAndYield), and still goes out with its Content-Length,
// not chunked, whole and parseable. The subscriber hears the chunk too.
// So do tus PATCHes' answers (yieldAfterBytes).
func TestChunkAnswerIsSentWhole(t *testing.T) {
	t.Parallel()
	s := startSpool(t, nil)
	tok := s.token("alice")
	img := fileBytes("image/png", 4000, 21)
	up := s.planOne(tok, file("whole.png", "image/png", int64(len(img))))
	ws := s.dialWS(tok, nil)
	ws.subscribe("p", `subscription($id: ID!) { uploadProgress(uploadId: $id) { status uploadedChunks } }`, vars("id", up.ID))
	events := collect(ws, "p")
	if first := <-events; first.UploadedChunks != 0 {
		t.Fatalf("snapshot: got %+v, want no chunk yet", first)
	}

	for _, c := range []struct {
		name   string
		body   []byte
		status int
		field  string // a field the answer's JSON must have
	}{
		{"too short", img[:len(img)-1], http.StatusBadRequest, "error"},
		{"taken", img, http.StatusOK, "uploadedChunks"},
	} {
		resp, body := send(t, http.MethodPut, up.ChunkURLs[0].URL, bytes.NewReader(c.body), nil)
		if resp.StatusCode != c.status {
			t.Fatalf("%s: got %d %s, want %d", c.name, resp.StatusCode, body, c.status)
		}
		if len(resp.TransferEncoding) != 0 || resp.ContentLength != int64(len(body)) {
			t.Errorf("%s: sent with Transfer-Encoding %v and Content-Length %d for a %d-byte body; want the length, not chunked",
				c.name, resp.TransferEncoding, resp.ContentLength, len(body))
		}
		var answer map[string]any
		if err := json.Unmarshal(body, &answer); err != nil || answer[c.field] == nil {
			t.Errorf("%s: answer %q has no %q (%v)", c.name, body, c.field, err)
		}
	}
	heard := false
	for p := range events {
		if p.UploadedChunks == 1 {
			heard = true
			break
		}
	}
	if !heard {
		t.Errorf("the subscription ended without hearing the chunk")
	}

	// tus: the answers to requests with a body are flushed the same way,
	// spool's own refusals included.
	tusDo := func(method, url string, body []byte, header map[string]string) (*http.Response, []byte) {
		h := http.Header{"Tus-Resumable": {"1.0.0"}, "Authorization": {"Bearer " + tok}}
		for k, v := range header {
			h.Set(k, v)
		}
		return send(t, method, url, bytes.NewReader(body), h)
	}
	meta := "filename " + base64.StdEncoding.EncodeToString([]byte("t.png")) + ",filetype " + base64.StdEncoding.EncodeToString([]byte("image/png"))
	resp, body := tusDo(http.MethodPost, s.url+"/files/", nil, map[string]string{"Upload-Length": strconv.Itoa(len(img)), "Upload-Metadata": meta})
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusCreated || loc == "" {
		t.Fatalf("tus POST: %d %s, Location %q", resp.StatusCode, body, loc)
	}
	if strings.HasPrefix(loc, "/") {
		loc = s.url + loc
	}
	patch := map[string]string{"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
	for _, c := range []struct {
		name     string
		checksum string
		status   int
	}{
		{"tus PATCH with a malformed Upload-Checksum", "sha1 not base64!", http.StatusBadRequest},
		{"tus PATCH", "", http.StatusNoContent},
	} {
		h := maps.Clone(patch)
		if c.checksum != "" {
			h["Upload-Checksum"] = c.checksum
		}
		resp, body := tusDo(http.MethodPatch, loc, img, h)
		if resp.StatusCode != c.status {
			t.Fatalf("%s: got %d %s, want %d", c.name, resp.StatusCode, body, c.status)
		}
		if len(resp.TransferEncoding) != 0 || (len(body) > 0 && resp.ContentLength != int64(len(body))) {
			t.Errorf("%s: sent with Transfer-Encoding %v and Content-Length %d for a %d-byte body; want the length, not chunked",
				c.name, resp.TransferEncoding, resp.ContentLength, len(body))
		}
		if c.status == http.StatusBadRequest && len(body) == 0 {
			t.Errorf("%s: the refusal has no body, want its code and message", c.name)
		}
	}
}

// TestBatchProgressEndsWhenAllTerminal: the subscription ends once every
// upload is terminal and the completed one's media is processed.
func TestBatchProgressEndsWhenAllTerminal(t *testing.T) {
	t.Parallel()
	s := startSpool(t, nil)
	tok := s.token("alice")
	img := fileBytes("image/png", 4000, 21)
	b := s.initBatch(tok, file("a.png", "image/png", int64(len(img))), file("b.png", "image/png", 500))
	done, dropped := b.Uploads[0], b.Uploads[1]

	ws := s.dialWS(tok, nil)
	ws.subscribe("b", `subscription($id: ID!) { batchProgress(batchId: $id) { uploadId status mediaStatus } }`, vars("id", b.ID))
	events := collect(ws, "b")
	snapshot := map[string]string{}
	for range 2 {
		p := <-events
		snapshot[p.UploadID] = p.Status
	}
	if snapshot[done.ID] != "INITIALIZED" || snapshot[dropped.ID] != "INITIALIZED" {
		t.Fatalf("snapshot: got %v, want both uploads INITIALIZED", snapshot)
	}
	sendChunk(t, done.ChunkURLs[0], img, http.StatusOK)
	s.complete(tok, done.ID)
	s.mustGQL(tok, opCancel, vars("id", dropped.ID), nil)
	final := map[string]progress{}
	for p := range events {
		final[p.UploadID] = p
	}
	if final[done.ID].Status != "COMPLETED" || final[dropped.ID].Status != "CANCELLED" {
		t.Errorf("final states: got %+v, want COMPLETED and CANCELLED", final)
	}
	if m := final[done.ID].MediaStatus; m != "READY" {
		t.Errorf("final media status of the completed upload: got %q, want READY", m)
	}
	if m := final[dropped.ID].MediaStatus; m != "" {
		t.Errorf("media status of the cancelled upload: got %s, want none", m)
	}
}

func TestMyUploadsShowsOnlyMine(t *testing.T) {
	t.Parallel()
	s := startSpool(t, nil)
	alice, bob := s.token("alice"), s.token("bob")
	img := fileBytes("image/png", 4000, 22)
	finished := s.uploadFile(alice, "old.png", "image/png", img)
	pending := s.planOne(alice, file("pending.png", "image/png", 700))
	// Once its media is READY, the finished upload has no more news.
	eventually.Holds(t, "media READY", func() bool {
		var out struct{ Node media }
		s.mustGQL(alice, `query($id: ID!) { node(id: $id) { ... on MediaFile { status } } }`, vars("id", finished.ID), &out)
		return out.Node.Status == "READY"
	})

	ws := s.dialWS(alice, nil)
	ws.subscribe("mine", `subscription { myUploads { uploadId status } }`, nil)
	events := collect(ws, "mine")
	// The snapshot holds the unfinished upload only.
	if p := <-events; p.UploadID != pending.ID || p.Status != "INITIALIZED" {
		t.Fatalf("snapshot: got %+v, want the pending upload %s", p, pending.ID)
	}

	// bob works at the same time.
	bobs := s.planOne(bob, file("bob.png", "image/png", int64(len(img))))
	sendChunk(t, bobs.ChunkURLs[0], img, http.StatusOK)
	s.complete(bob, bobs.ID)

	fresh := s.planOne(alice, file("new.png", "image/png", int64(len(img))))
	sendChunk(t, fresh.ChunkURLs[0], img, http.StatusOK)
	s.complete(alice, fresh.ID)
	s.mustGQL(alice, opCancel, vars("id", pending.ID), nil)

	seen := map[string]string{}
	for p := range events {
		if p.UploadID == bobs.ID {
			t.Errorf("alice got an event of bob's upload: %+v", p)
		}
		if p.UploadID == finished.ID {
			t.Errorf("alice got an event of an upload finished before she subscribed: %+v", p)
		}
		seen[p.UploadID] = p.Status
		if seen[fresh.ID] == "COMPLETED" && seen[pending.ID] == "CANCELLED" {
			break
		}
	}
	if seen[fresh.ID] != "COMPLETED" || seen[pending.ID] != "CANCELLED" {
		t.Errorf("events seen: got %v, want the new upload COMPLETED and the pending one CANCELLED", seen)
	}
	// myUploads never ends by itself; the client stops it.
	ws.stop("mine")
	for p := range events {
		if p.UploadID == bobs.ID {
			t.Errorf("alice got an event of bob's upload: %+v", p)
		}
	}
}
