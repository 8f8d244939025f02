package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/spoolhq/spool/internal/progress/redis/redistest"
)

// TestRedisFailover runs two replicas on a Redis that fails over, and
// fails it over in the middle of an upload whose chunks go to one replica
// while its progress is watched on the other, so every event crosses
// replicas through Redis:
//   - a primary that Sentinel watches, named by a sentinel URL, killed;
//   - the same failed over as planned (SENTINEL FAILOVER), the old
//     primary left up and a primary, as one the sentinels cannot reach;
//   - a Redis Cluster named by one node's URL, whose node that spool's
//     channels are on is killed.
//
// Each speaks only TLS, with certificates of a private authority
// (--redis-ca-file), as managed Redis does. A replica takes over, both
// spool replicas say they are back on Redis, and the watcher sees the
// rest of the upload through to READY without reconnecting. Before,
// --redis-url named one server: the death of a sentinel-watched primary
// ended progress across replicas until it was back, and spool on a
// cluster's node sent every rate budget to that node, which refused
// those of the other nodes' slots; and a subscription stayed on a
// primary the sentinels had replaced until that server dropped it.
func TestRedisFailover(t *testing.T) {
	t.Parallel()
	t.Run("sentinel", func(t *testing.T) {
		t.Parallel()
		sentinels, certs := redistest.StartTLSSentinels(t)
		redisFailover(t, sentinels.URL(), certs.CAFile, "redis sentinel", func(t *testing.T) {
			primary := sentinels.Primary(t)
			primary.Kill()
			sentinels.AwaitFailover(t, primary)
		})
	})
	t.Run("sentinel, planned", func(t *testing.T) {
		t.Parallel()
		sentinels, certs := redistest.StartTLSSentinels(t)
		redisFailover(t, sentinels.URL(), certs.CAFile, "redis sentinel", func(t *testing.T) {
			// The old primary stays up, and a primary: the sentinel cannot
			// demote it, as when it cannot reach it. Only the sentinels'
			// word moves spool's subscriptions off it.
			old := sentinels.Primary(t).Client()
			if err := old.Do(t.Context(), "ACL", "SETUSER", "default", "-replicaof", "-slaveof").Err(); err != nil {
				t.Fatalf("keeping the primary from being demoted: %v", err)
			}
			sentinels.FailOver(t)
		})
	})
	t.Run("cluster", func(t *testing.T) {
		t.Parallel()
		cluster, certs := redistest.StartTLSCluster(t, 3, 1)
		redisFailover(t, cluster.URL(), certs.CAFile, "redis cluster", func(t *testing.T) {
			// spool's channels are all in the slot of its prefix, in braces.
			ours := cluster.MasterOf(t, "{spool:}")
			ours.Kill()
			cluster.AwaitFailover(t, ours)
		})
	})
}

// redisFailover runs TestRedisFailover on the Redis of redisURL, whose
// certificates the authority of caFile signed, which spool's start log
// calls kind, and which failOver fails over.
func redisFailover(t *testing.T, redisURL, caFile, kind string, failOver func(t *testing.T)) {
	w := newWalkthrough(t)
	// The last --redis-url wins. A JSON log, whose every line, go-redis's
	// own included, must be JSON.
	args := append(w.engines, "--redis-url", redisURL, "--redis-ca-file", caFile, "--log-format", "json")
	a, b := w.serve(t, args...), w.serve(t, args...)
	for name, r := range map[string]*replica{"A": a, "B": b} {
		if want := `"progress":"` + kind + `"`; !strings.Contains(r.log.String(), want) {
			t.Errorf("%s's log does not say %s:\n%s", name, want, r.log)
		}
	}
	t.Cleanup(func() {
		for name, r := range map[string]*replica{"A": a, "B": b} {
			for line := range strings.Lines(r.log.String()) {
				if !json.Valid([]byte(line)) {
					t.Errorf("%s's log has a line that is not JSON: %q", name, line)
				}
			}
		}
	})
	token := w.token(t, "failover")
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
	// initBatch and the PUT each took from a budget in Redis.
	if log := a.log.String(); strings.Contains(log, "rate limits held per replica") {
		t.Errorf("A fell back to budgets of its own before the failover, Redis refusing them:\n%s", log)
	}

	start := time.Now()
	failOver(t)
	t.Logf("Redis failed over %v after the failover began", time.Since(start).Round(time.Millisecond))
	for name, r := range map[string]*replica{"A": a, "B": b} {
		poll(t, name+"'s log saying it is back on Redis", func() bool {
			return strings.Contains(r.log.String(), `"msg":"redis progress connection restored`)
		})
	}
	t.Logf("both replicas were back on Redis %v after the failover began", time.Since(start).Round(time.Millisecond))

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

// TestRedisOverTLS runs two replicas on a Redis that speaks only TLS,
// with a certificate of a private authority (as Google's Memorystore's
// is), named by --redis-ca-file: an upload's progress crosses from the
// replica taking its chunks to a watcher on the other, and its budgets
// are kept in Redis. Without the file, or with another authority's,
// serve refuses to start, saying why.
func TestRedisOverTLS(t *testing.T) {
	t.Parallel()
	srv, certs := redistest.StartTLSServer(t)
	redisURL := "rediss://" + srv.Addr + "/0"
	for name, caFile := range map[string]string{"no CA file": "", "another authority's": redistest.NewTLS(t).CAFile} {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // a hang guard: serve blocks if it starts
		args := []string{"serve", "--data-dir", t.TempDir(), "--addr", "127.0.0.1:0", "--redis-url", redisURL}
		if caFile != "" {
			args = append(args, "--redis-ca-file", caFile)
		}
		err := run(ctx, args, env("SPOOL_JWT_SECRET", goodSecret), io.Discard, io.Discard)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("serve with %s: %v, want it to refuse to start over Redis's certificate", name, err)
		}
	}

	w := newWalkthrough(t)
	args := append(w.engines, "--redis-url", redisURL, "--redis-ca-file", certs.CAFile) // the last --redis-url wins
	a, b := w.serve(t, args...), w.serve(t, args...)
	token := w.token(t, "tls")
	video := randomVideo(11<<20, 9)
	up := planVideo(t, a.url, token, video)
	watch := watchUpload(t, b, token, up.ID)
	c := up.ChunkUrls[0]
	if status, body := fetch(t, http.MethodPut, c.URL, video[c.Offset:c.Offset+c.Size], nil); status != http.StatusOK {
		t.Fatalf("PUT chunk 0 to A: %d %s", status, body)
	}
	watch.until(t, "the first chunk's progress, through Redis over TLS", func(p watchedProgress) bool { return p.UploadedChunks == 1 })
	if log := a.log.String(); strings.Contains(log, "rate limits held per replica") {
		t.Errorf("A fell back to budgets of its own, Redis refusing them:\n%s", log)
	}
}
