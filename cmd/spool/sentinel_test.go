package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/spoolhq/spool/internal/progress/redis/redistest"
)

// TestRedisSentinelFailover runs two replicas on a Redis that Sentinel
// watches, named by a sentinel URL, and kills the Redis primary in the
// middle of an upload: its chunks go to one replica, and its progress is
// watched on the other, so every event crosses replicas through Redis.
// The sentinel makes a replica primary, both spool replicas say they are
// back on Redis, and the watcher sees the rest of the upload through to
// READY without reconnecting. Before sentinel URLs, --redis-url named one
// server, and its death ended progress across replicas until it was back.
func TestRedisSentinelFailover(t *testing.T) {
	w := newWalkthrough(t)
	sentinels := redistest.StartSentinels(t)
	// The last --redis-url wins.
	args := append(w.engines, "--redis-url", sentinels.URL(""))
	a, b := w.serve(t, args...), w.serve(t, args...)
	token := w.token(t, "sentinel")
	video := randomVideo(11<<20, 7)
	up := planVideo(t, a.url, token, video)
	watch := watchUpload(t, b, token, up.ID)
	put := func(i int) {
		t.Helper()
		c := up.ChunkUrls[i]
		if status, body := fetch(t, http.MethodPut, c.URL, video[c.Offset:c.Offset+c.Size], nil); status != http.StatusOK {
			t.Fatalf("PUT chunk %d to A: %d %s", i, status, body)
		}
	}

	put(0)
	watch.until(t, "the first chunk's progress, through Redis", func(p watchedProgress) bool { return p.UploadedChunks == 1 })

	primary := sentinels.Primary(t)
	killed := time.Now()
	primary.Kill()
	sentinels.AwaitFailover(t, primary)
	t.Logf("the sentinel ended its failover %v after the primary was killed", time.Since(killed).Round(time.Millisecond))
	for name, r := range map[string]*replica{"A": a, "B": b} {
		poll(t, name+"'s log saying it is back on Redis", func() bool {
			return strings.Contains(r.log.String(), "redis progress connection restored")
		})
	}
	t.Logf("both replicas were back on Redis %v after the primary was killed", time.Since(killed).Round(time.Millisecond))

	put(1)
	watch.until(t, "the second chunk's progress, after the failover", func(p watchedProgress) bool { return p.UploadedChunks == 2 })
	put(2)
	var done struct{ Complete struct{ URL string } }
	gql(t, a.url, token, `mutation($id: ID!) { complete(uploadId: $id) { url } }`, map[string]any{"id": up.ID}, &done)
	watch.until(t, "COMPLETED and READY", func(p watchedProgress) bool { return p.Status == "COMPLETED" && p.MediaStatus == "READY" })
	if status, body := fetch(t, http.MethodGet, done.Complete.URL, nil, nil); status != http.StatusOK || sha256hex(body) != sha256hex(video) {
		t.Errorf("GET the completed file: %d, %d bytes; want 200 and the video's bytes", status, len(body))
	}
}

// watchedProgress is what the watcher reads of an uploadProgress event.
type watchedProgress struct {
	Status         string
	UploadedChunks int
	MediaStatus    string
}

// progressWatch is one graphql-transport-ws subscription to an upload's
// progress; its events arrive on events, and its end (an error, or nil
// once the subscription completes) on ended.
type progressWatch struct {
	events chan watchedProgress
	ended  chan error
}

// watchUpload subscribes to uploadID's progress on r, over a websocket
// closed when the test ends.
func watchUpload(t *testing.T, r *replica, token, uploadID string) *progressWatch {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 10 * time.Second}
	conn, _, err := d.Dial(strings.Replace(r.url, "http", "ws", 1)+"/graphql", nil)
	if err != nil {
		t.Fatalf("dialing %s's websocket: %v", r.url, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if err := conn.WriteJSON(map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + token}}); err != nil {
		t.Fatalf("writing connection_init: %v", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(time.Minute)) // a hang guard
	var ack struct{ Type string }
	if err := conn.ReadJSON(&ack); err != nil || ack.Type != "connection_ack" {
		t.Fatalf("reading connection_ack: %q, %v", ack.Type, err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	if err := conn.WriteJSON(map[string]any{"id": "p", "type": "subscribe", "payload": map[string]any{
		"query":     `subscription($id: ID!) { uploadProgress(uploadId: $id) { status uploadedChunks mediaStatus } }`,
		"variables": map[string]any{"id": uploadID},
	}}); err != nil {
		t.Fatalf("writing subscribe: %v", err)
	}
	w := &progressWatch{events: make(chan watchedProgress, 64), ended: make(chan error, 1)}
	go func() {
		for {
			var m struct {
				Type    string          `json:"type"`
				Payload json.RawMessage `json:"payload"`
			}
			if err := conn.ReadJSON(&m); err != nil {
				w.ended <- err
				return
			}
			switch m.Type {
			case "ping":
				_ = conn.WriteJSON(map[string]string{"type": "pong"}) // the only writer from now on
			case "next":
				var p struct {
					Data struct{ UploadProgress watchedProgress }
				}
				if err := json.Unmarshal(m.Payload, &p); err != nil {
					w.ended <- fmt.Errorf("decoding %s: %w", m.Payload, err)
					return
				}
				w.events <- p.Data.UploadProgress
			case "error":
				w.ended <- fmt.Errorf("subscription error: %s", m.Payload)
				return
			case "complete":
				w.ended <- nil
				return
			}
		}
	}()
	return w
}

// until reads events until one satisfies done; it fails the test if the
// subscription ends first, or after a minute (a hang guard).
func (w *progressWatch) until(t *testing.T, what string, done func(watchedProgress) bool) {
	t.Helper()
	var seen []watchedProgress
	guard := time.After(time.Minute)
	for {
		select {
		case p := <-w.events:
			if done(p) {
				return
			}
			seen = append(seen, p)
		case err := <-w.ended:
			t.Fatalf("waiting for %s, the subscription ended (%v); it had read %+v", what, err, seen)
		case <-guard:
			t.Fatalf("waiting for %s: not read within a minute; read %+v", what, seen)
		}
	}
}
