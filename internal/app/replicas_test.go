package app_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/spoolhq/spool/internal/app"
	"github.com/spoolhq/spool/internal/app/apptest"
	"github.com/spoolhq/spool/internal/eventually"
	"github.com/spoolhq/spool/internal/progress/redis/redistest"
)

// TestTwoReplicas runs two spool servers on one PostgreSQL, Redis and GCS
// bucket: chunks of one upload alternate between them, a subscriber on A
// sees what B receives, B completes, A serves the download.
func TestTwoReplicas(t *testing.T) {
	shared := productionEngines(t)
	a := startSpool(t, shared.apply)
	b := startSpool(t, shared.apply)
	tok := a.token("alice")

	for _, s := range []*spool{a, b} {
		resp, body := get(t, s.url+"/readyz", nil)
		var report map[string]string
		if err := json.Unmarshal(body, &report); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("readyz: got %d %s", resp.StatusCode, body)
		}
		for _, engine := range []string{"database", "storage", "redis"} {
			if report[engine] != "ok" {
				t.Errorf("readyz %s: got %q, want ok", engine, report[engine])
			}
		}
	}

	video := fileBytes("video/mp4", 12<<20, 7)
	up := a.initBatch(tok, map[string]any{"fileName": "clip.mp4", "size": len(video), "mimeType": "video/mp4"}).Uploads[0]
	onB := func(u chunkURL) chunkURL {
		u.URL = strings.Replace(u.URL, a.url, b.url, 1)
		return u
	}

	ws := a.dialWS(tok, nil)
	ws.subscribe("up", `subscription($id: ID!) { uploadProgress(uploadId: $id) { uploadId status percent uploadedBytes uploadedChunks failedChunks } }`,
		map[string]any{"id": up.ID})
	events := collect(ws, "up")
	if first := <-events; first.UploadedChunks != 0 || first.Status != "INITIALIZED" {
		t.Fatalf("snapshot: got %+v, want INITIALIZED with nothing", first)
	}

	sendChunk(t, onB(up.ChunkURLs[1]), video, http.StatusOK)
	if p := <-events; p.UploadedChunks != 1 || p.UploadedBytes != 5<<20 {
		t.Fatalf("subscriber on A after a chunk received by B: got %+v, want 1 chunk of 5 MiB", p)
	}
	sendChunk(t, up.ChunkURLs[0], video, http.StatusOK)
	sendChunk(t, onB(up.ChunkURLs[2]), video, http.StatusOK)

	m := b.complete(tok, up.ID)
	var last progress
	for p := range events {
		last = p
	}
	if last.Status != "COMPLETED" || last.Percent != 100 {
		t.Errorf("subscriber on A: last event %+v, want COMPLETED at 100", last)
	}

	var fromA struct {
		Upload struct{ Media media } `json:"upload"`
	}
	a.mustGQL(tok, `query($id: ID!) { upload(id: $id) { media { id url } } }`, map[string]any{"id": up.ID}, &fromA)
	if fromA.Upload.Media.ID != m.ID {
		t.Fatalf("media seen by A: got %q, want %q", fromA.Upload.Media.ID, m.ID)
	}
	resp, body := get(t, fromA.Upload.Media.URL, nil)
	if resp.StatusCode != http.StatusOK || sha256hex(body) != sha256hex(video) {
		t.Errorf("download through A's URL: got HTTP %d, sha256 %s, want %s", resp.StatusCode, sha256hex(body), sha256hex(video))
	}
}

// redisPermissions are the commands, channels and keys a Redis ACL user
// needs to serve spool, as docs/OPERATIONS.md lists them, for a
// deployment whose prefix is prefix: publishing and subscribing its
// channels (and pinging the subscription connection and /readyz's), the
// rate budgets' script (TIME, then GET and SET on its keys), and INFO, which spool asks at start
// whether the server is a cluster node (optional: refused, spool takes
// the URL for one server's).
func redisPermissions(prefix string) []any {
	return []any{"resetkeys", "resetchannels", "-@all", "~rate:" + prefix + "*", "&" + prefix + "*",
		"+ping", "+publish", "+subscribe", "+unsubscribe", "+evalsha", "+eval", "+time", "+get", "+set", "+info"}
}

// TestLeastPrivilegeRedisUser runs two replicas as a Redis ACL user that
// may do only what redisPermissions lists: progress crosses replicas,
// mutations draw on the shared budgets, /readyz finds Redis, and Redis
// logged no command it refused (ACL LOG). Through sentinels, the
// sentinels' user may do only what sentinelPermissions lists (the URL's
// user, as docs/CONFIG.md gives it), and progress crosses replicas
// after a planned failover too.
func TestLeastPrivilegeRedisUser(t *testing.T) {
	t.Parallel()
	t.Run("server", func(t *testing.T) {
		t.Parallel()
		srv := redistest.StartServer(t)
		leastPrivilege(t, "redis://spool:pw@"+srv.Addr+"/0", []*goredis.Client{redistest.Client(t, srv.Addr)}, nil, nil)
	})
	t.Run("sentinel", func(t *testing.T) {
		t.Parallel()
		s := redistest.StartSentinels(t)
		sentinel := s.Sentinel[0].Client()
		if err := sentinel.Do(t.Context(), append([]any{"ACL", "SETUSER", "watcher", "on", ">spw"}, sentinelPermissions()...)...).Err(); err != nil {
			t.Fatalf("ACL SETUSER on the sentinel: %v", err)
		}
		var servers []*goredis.Client
		for _, srv := range s.Servers {
			servers = append(servers, redistest.Client(t, srv.Addr)) // ACL users are not replicated
		}
		url := "redis://watcher:spw@" + s.Sentinel[0].Addr + "/0?master_name=" + s.Name + "&username=spool&password=pw"
		leastPrivilege(t, url, servers, []*goredis.Client{sentinel}, func() {
			s.FailOver(t)
			// go-redis pings its subscription to the sentinel after 3 s of
			// silence: wait for a ping, so that a refused one is in the log.
			eventually.Holds(t, "go-redis pinging its subscription to the sentinel", func() bool {
				clients, err := sentinel.ClientList(t.Context()).Result()
				if err != nil {
					return false
				}
				for c := range strings.Lines(clients) {
					if strings.Contains(c, " user=watcher ") && strings.Contains(c, " flags=P ") && strings.Contains(c, " cmd=ping ") {
						return true
					}
				}
				return false
			})
		})
	})
}

// sentinelPermissions are what a sentinels' user needs of them, as
// docs/CONFIG.md gives it. PING is go-redis's: its subscription to a
// sentinel's announcements pings after 3 s of silence (a run of the test
// under -race lasted long enough to meet the refusal).
func sentinelPermissions() []any {
	return []any{"resetkeys", "resetchannels", "-@all", "&+switch-master", "&+replica-reconf-done",
		"+subscribe", "+ping", "+sentinel|get-master-addr-by-name", "+sentinel|sentinels"}
}

// leastPrivilege runs two replicas on url, whose user is spool with
// password pw and redisPermissions, made here on each of servers (admin
// clients of the Redis servers; sentinels are those of the sentinels,
// whose user url names already). A subscriber on B hears of a chunk A
// took; if failOver is given, again after it. No server or sentinel
// logs a refusal.
func leastPrivilege(t *testing.T, url string, servers, sentinels []*goredis.Client, failOver func()) {
	shared := productionEngines(t)
	args := append([]any{"ACL", "SETUSER", "spool", "on", ">pw"}, redisPermissions(shared.redisPrefix)...)
	for _, admin := range servers {
		if err := admin.Do(t.Context(), args...).Err(); err != nil {
			t.Fatalf("ACL SETUSER: %v", err)
		}
	}
	var logs syncBuffer
	restricted := func(c *app.Config) {
		shared.apply(c)
		c.RedisURL = url
	}
	a := &spool{t: t}
	a.srv = apptest.StartLogged(t, slog.New(slog.NewTextHandler(&logs, nil)), restricted)
	a.main, a.url = a.srv.Main, a.srv.URL
	b := startSpool(t, restricted)
	tok := a.token("alice")
	for _, s := range []*spool{a, b} {
		resp, body := get(t, s.url+"/readyz", nil)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"redis":"ok"`) {
			t.Errorf("readyz as the restricted user: %d %s", resp.StatusCode, body)
		}
	}

	data := fileBytes("video/mp4", 6<<20, 5) // chunks of 5 and 1 MiB
	up := a.initBatch(tok, map[string]any{"fileName": "v.mp4", "size": len(data), "mimeType": "video/mp4"}).Uploads[0]
	ws := b.dialWS(tok, nil)
	ws.subscribe("up", `subscription($id: ID!) { uploadProgress(uploadId: $id) { uploadId status percent uploadedBytes uploadedChunks failedChunks } }`,
		map[string]any{"id": up.ID})
	events := collect(ws, "up")
	if first := <-events; first.Status != "INITIALIZED" {
		t.Fatalf("snapshot on B: %+v, want INITIALIZED", first)
	}
	sendChunk(t, up.ChunkURLs[0], data, http.StatusOK)
	if p := <-events; p.UploadedChunks != 1 {
		t.Errorf("subscriber on B after A took the chunk: %+v, want 1 chunk", p)
	}
	if failOver != nil {
		failOver()
		sendChunk(t, up.ChunkURLs[1], data, http.StatusOK)
		deadline := time.After(30 * time.Second)
		for last := (progress{}); last.UploadedChunks != 2; {
			select {
			case p, ok := <-events:
				if !ok {
					t.Fatalf("subscription on B ended after the failover at %+v, before 2 chunks", last)
				}
				last = p
			case <-deadline:
				t.Fatalf("subscriber on B 30 s after the failover: %+v, want 2 chunks", last)
			}
		}
	}

	if strings.Contains(logs.String(), "rate limits held per replica") {
		t.Errorf("A's budgets fell back to its own:\n%s", logs.String())
	}
	for _, admin := range append(servers, sentinels...) {
		refused, err := admin.Do(t.Context(), "ACL", "LOG").Slice()
		if err != nil {
			t.Fatalf("ACL LOG: %v", err)
		}
		for _, entry := range refused {
			t.Errorf("Redis at %s refused a restricted user: %v", admin.Options().Addr, entry)
		}
	}
}
