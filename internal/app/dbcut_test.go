package app_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/spoolhq/spool/internal/app"
	"github.com/spoolhq/spool/internal/database/dbtest"
	"github.com/spoolhq/spool/internal/jobs"
)

// TestDatabaseCutDuringComplete cuts PostgreSQL for 5 s in the middle of
// six concurrent completes, right after the COMMIT of the first
// transaction that completes one (which commits on the server while
// spool sees the connection die: an ambiguous commit), each upload
// watched by a subscriber. Clients retry
// complete as they would. Every subscriber must end at COMPLETED with its
// media READY: no upload completes without its processing job, a failed
// processing is retried within seconds, and a retried complete
// publishes. The delay from the database's return to each final event is
// logged, not asserted.
func TestDatabaseCutDuringComplete(t *testing.T) {
	dbURL, proxy := proxiedPostgres(t)
	s := startSpool(t, func(c *app.Config) {
		c.DatabaseURL = dbURL
		c.Jobs.PollInterval = jobs.DefaultConfig().PollInterval // production's pace
	})
	tok := s.token("alice")

	const n = 6
	ups := make([]watchedUpload, n)
	for i := range ups {
		ups[i] = s.uploadWatched(tok, fileBytes("video/mp4", 6<<20, uint64(100+i)))
	}

	// The cut comes right after the commit of the first transaction that
	// completes an upload (it creates the media file).
	cut := proxy.CutOn(`insert into "media_files"`, "commit", 5*time.Second)
	var wg sync.WaitGroup
	tries := make([]int, n)
	for i, up := range ups {
		wg.Go(func() {
			// A client retrying complete until it answers, as the CLI does.
			deadline := time.Now().Add(2 * time.Minute)
			for {
				tries[i]++
				var out struct{ Complete media }
				errs := s.gql(tok, `mutation($id: ID!) { complete(uploadId: $id) { id } }`, map[string]any{"id": up.id}, &out)
				if len(errs) == 0 && out.Complete.ID != "" {
					return
				}
				if time.Now().After(deadline) {
					t.Errorf("complete(%s) still failing after 2 minutes: %v", up.id, errs)
					return
				}
				time.Sleep(250 * time.Millisecond)
			}
		})
	}
	var window cutWindow
	select {
	case window = <-cut:
	case <-time.After(time.Minute):
		t.Fatal("no COMMIT passed the proxy within a minute of the completes")
	}
	wg.Wait()

	// Each subscription is drained at once, so the time of its last
	// event is when it arrived.
	type ending struct {
		last progress
		at   time.Time
	}
	endings := make([]ending, n)
	var drain sync.WaitGroup
	for i, up := range ups {
		drain.Go(func() {
			for p := range up.events {
				endings[i] = ending{p, time.Now()}
			}
		})
	}
	drain.Wait()
	var worst time.Duration
	for i, up := range ups {
		last := endings[i].last
		if last.Status != "COMPLETED" || last.MediaStatus != "READY" {
			t.Errorf("upload %s: last event %+v, want COMPLETED with media READY", up.id, last)
			continue
		}
		delay := endings[i].at.Sub(window.until)
		worst = max(worst, delay)
		t.Logf("upload %s: complete answered after %d tries; final READY %v after the database came back", up.id, tries[i], delay.Round(time.Millisecond))
	}
	t.Logf("database cut %v; the last subscriber's final event came %v after it was back", window.until.Sub(window.from).Round(time.Millisecond), worst.Round(time.Millisecond))
}

// TestDatabaseCutDuringInitBatch cuts PostgreSQL right after the COMMIT
// of an initBatch, which commits on the server while spool sees its
// connection die. The client retries with the file's fingerprint, as the
// CLI does, and so resumes the upload the first attempt stored: its
// chunks must land and it must complete. spool used to discard the
// upload's storage when the COMMIT failed, and every chunk PUT of the
// resumed upload then answered ALREADY_FINISHED (TestFaults met it).
func TestDatabaseCutDuringInitBatch(t *testing.T) {
	dbURL, proxy := proxiedPostgres(t)
	s := startSpool(t, func(c *app.Config) { c.DatabaseURL = dbURL })
	tok := s.token("alice")
	video := fileBytes("video/mp4", 6<<20, 43)
	f := file("v.mp4", "video/mp4", int64(len(video)))
	f["fingerprint"] = "cut during initBatch"

	cut := proxy.CutOn(`insert into "upload_batches"`, "commit", 2*time.Second)
	tries := 0
	var up session
	for deadline := time.Now().Add(time.Minute); ; {
		tries++
		var out struct{ InitBatch batch }
		errs := s.gql(tok, initBatchOp, map[string]any{"input": map[string]any{"files": []any{f}}}, &out)
		if len(errs) == 0 && len(out.InitBatch.Uploads) == 1 {
			up = out.InitBatch.Uploads[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("initBatch still failing after a minute: %v", errs)
		}
		time.Sleep(250 * time.Millisecond)
	}
	select {
	case <-cut:
	default:
		t.Fatal("no initBatch COMMIT passed the proxy")
	}
	if tries < 2 {
		t.Fatal("the first initBatch answered: the cut missed its COMMIT")
	}
	for _, c := range up.ChunkURLs {
		sendChunk(t, c, video, http.StatusOK)
	}
	m := s.complete(tok, up.ID)
	if resp, body := get(t, m.URL, nil); resp.StatusCode != http.StatusOK || sha256hex(body) != sha256hex(video) {
		t.Errorf("download of the resumed upload: got %d, %d bytes; want the video", resp.StatusCode, len(body))
	}
	t.Logf("initBatch answered on try %d, with upload %s", tries, up.ID)
}

// TestDatabaseCutLosesAJobFetch cuts PostgreSQL just as River's fetch of
// a processing job has committed on the server, before its answer
// reaches spool: the fetch is one UPDATE that commits by itself, so the
// job is then running in the database, attempted by this replica, with no
// worker on it. River would rescue it only after --job-rescue-after (35
// minutes), the media PROCESSING all that time; the replica must take it
// back and the media reach READY within seconds of the database's return.
// (TestDatabaseCutDuringComplete met this when its cut fell on a fetch.)
func TestDatabaseCutLosesAJobFetch(t *testing.T) {
	dbURL, proxy := proxiedPostgres(t)
	const lostAfter = 2 * time.Second
	s := startSpool(t, func(c *app.Config) {
		c.DatabaseURL = dbURL
		c.Jobs.PollInterval = jobs.DefaultConfig().PollInterval // production's pace
		c.Jobs.LostFetchAfter = lostAfter
	})
	tok := s.token("alice")
	up := s.uploadWatched(tok, fileBytes("video/mp4", 1<<20, 7))

	// The fetch's answer holds the job's row, now running.
	cut := proxy.CutOnReply(3*time.Second, "spool_process_media", "running")
	// complete is retried as clients do: the fetch is sent as complete's
	// transaction commits, so its answer, and the cut, can come before
	// complete's own last statements do.
	for deadline := time.Now().Add(time.Minute); ; {
		var out struct{ Complete media }
		errs := s.gql(tok, `mutation($id: ID!) { complete(uploadId: $id) { id } }`, map[string]any{"id": up.id}, &out)
		if len(errs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("complete still failing after a minute: %v", errs)
		}
		time.Sleep(250 * time.Millisecond)
	}
	var window cutWindow
	select {
	case window = <-cut:
	case <-time.After(time.Minute):
		t.Fatal("no fetch of the processing job passed the proxy within a minute of complete")
	}

	var last progress
	var at time.Time
	for p := range up.events {
		last, at = p, time.Now()
	}
	if last.Status != "COMPLETED" || last.MediaStatus != "READY" {
		t.Fatalf("last event %+v, want COMPLETED with media READY", last)
	}
	t.Logf("fetch lost at the cut; READY %v after the database came back (jobs lost after %v are taken back)",
		at.Sub(window.until).Round(time.Millisecond), lostAfter)
}

// proxiedPostgres returns the URL of a scratch PostgreSQL database
// reached through a new dbProxy. pgx sends each statement's text there
// (exec mode), not a cached statement's name, and so do the answers
// carry text, so the proxy can tell statements and answers apart.
func proxiedPostgres(t *testing.T) (string, *dbProxy) {
	t.Helper()
	u, err := url.Parse(dbtest.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := startDBProxy(t, u.Host)
	u.Host = proxy.Addr()
	q := u.Query()
	q.Set("default_query_exec_mode", "exec")
	u.RawQuery = q.Encode()
	return u.String(), proxy
}

// watchedUpload is an upload whose chunks are all in, and the events of
// its uploadProgress subscription after the snapshot.
type watchedUpload struct {
	id     string
	events <-chan progress
}

// uploadWatched uploads file as one upload of tok's user, without
// completing it, and subscribes to its progress.
func (s *spool) uploadWatched(tok string, file []byte) watchedUpload {
	s.t.Helper()
	up := s.initBatch(tok, map[string]any{"fileName": "clip.mp4", "size": len(file), "mimeType": "video/mp4"}).Uploads[0]
	for _, c := range up.ChunkURLs {
		sendChunk(s.t, c, file, 200)
	}
	ws := s.dialWS(tok, nil)
	ws.subscribe("up", `subscription($id: ID!) { uploadProgress(uploadId: $id) { uploadId status mediaId mediaStatus } }`,
		map[string]any{"id": up.ID})
	w := watchedUpload{id: up.ID, events: collect(ws, "up")}
	if first := <-w.events; first.Status != "UPLOADING" {
		s.t.Fatalf("snapshot of %s: %+v, want UPLOADING", up.ID, first)
	}
	return w
}

// TestDatabaseCutIsUnavailable cuts PostgreSQL (a proxy closes every
// connection and refuses new ones) and checks that spool says "try again
// later", not "bad token": a GraphQL request by a token used for the
// first time (its user is in no cache, so checking it needs the
// database) answers UNAVAILABLE with extensions.retryAfter, the data
// plane 503 with a positive Retry-After (a HEAD by that token, a chunk
// PUT by signed URL), complete UNAVAILABLE, and a websocket's
// connection_init closes with 1013. Once the database is back the same
// token works, a new websocket authenticates and subscribes, and the
// chunk refused during the cut, sent again, is stored once: the file
// completes with its exact bytes.
func TestDatabaseCutIsUnavailable(t *testing.T) {
	dbURL := dbtest.Postgres(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startDBProxy(t, u.Host)
	u.Host = proxy.Addr()
	s := startSpool(t, func(c *app.Config) { c.DatabaseURL = u.String() })
	alice := s.token("alice")
	fresh := s.token("carol") // never used before the cut
	data := fileBytes("image/png", 12<<20, 7)
	up := s.planOne(alice, file("a.png", "image/png", int64(len(data))))
	if len(up.ChunkURLs) < 2 {
		t.Fatalf("got %d chunks, want 2 or more", len(up.ChunkURLs))
	}
	sendChunk(t, up.ChunkURLs[0], data, http.StatusOK)

	proxy.Cut(time.Hour) // until Restore
	e := s.wantCode(fresh, opMe, nil, "UNAVAILABLE")
	if ra, _ := e.Extensions["retryAfter"].(float64); ra < 1 || ra != math.Trunc(ra) {
		t.Errorf("GraphQL UNAVAILABLE: extensions.retryAfter = %v, want a positive whole number of seconds", e.Extensions["retryAfter"])
	}
	s.wantCode(alice, `mutation($id: ID!) { complete(uploadId: $id) { id } }`, vars("id", up.ID), "UNAVAILABLE")
	wantUnavailable := func(what string, a planeAnswer) {
		t.Helper()
		if a.Status != http.StatusServiceUnavailable {
			t.Errorf("%s during the cut: HTTP %d %+v, want 503", what, a.Status, a.Error)
		}
		if n, err := strconv.Atoi(a.Header.Get("Retry-After")); err != nil || n < 1 {
			t.Errorf("%s during the cut: Retry-After %q, want a positive integer", what, a.Header.Get("Retry-After"))
		}
		if a.Header.Get("WWW-Authenticate") != "" {
			t.Errorf("%s during the cut asks for credentials (WWW-Authenticate), as for a bad token", what)
		}
	}
	wantUnavailable("HEAD by a new token", do(t, http.MethodHead, s.url+"/uploads/"+up.ID, nil, bearer(fresh)))
	chunk := up.ChunkURLs[1]
	put := do(t, http.MethodPut, chunk.URL, chunkOf(chunk, data), nil)
	wantUnavailable("chunk PUT", put)
	if put.Error.Code != "UNAVAILABLE" {
		t.Errorf("chunk PUT during the cut: code %q, want UNAVAILABLE", put.Error.Code)
	}
	code, reason := initCloseCode(t, s, fresh)
	if code != 1013 {
		t.Errorf("websocket connection_init during the cut: closed with %d %q, want 1013 (try again later)", code, reason)
	}

	proxy.Restore()
	// The pool finds its connections dead and opens new ones; the first
	// request after the cut may still meet a dead one, and answers
	// UNAVAILABLE again, as a client retrying after Retry-After would see.
	var me struct{ Me user }
	for try := 0; ; try++ {
		errs := s.gql(fresh, opMe, nil, &me)
		if len(errs) == 0 {
			break
		}
		if errs[0].code() != "UNAVAILABLE" || try == 20 {
			t.Fatalf("after the cut: %+v, want the token to work", errs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if me.Me.Name != "carol" {
		t.Fatalf("after the cut: me is %+v, want carol", me.Me)
	}
	ws := s.dialWS(fresh, nil)
	mine := s.planOne(fresh, file("c.png", "image/png", 1000))
	ws.subscribe("p", `subscription($id: ID!) { uploadProgress(uploadId: $id) { uploadId status } }`, vars("id", mine.ID))
	if first := <-collect(ws, "p"); first.UploadID != mine.ID || first.Status != "INITIALIZED" {
		t.Errorf("subscription after the cut: first event %+v, want %s INITIALIZED", first, mine.ID)
	}
	for _, c := range up.ChunkURLs[1:] {
		sendChunk(t, c, data, http.StatusOK)
	}
	m := s.complete(alice, up.ID)
	if m.FileSize != int64(len(data)) {
		t.Errorf("completed file is %d bytes, want %d", m.FileSize, len(data))
	}
	if resp, body := get(t, m.URL, nil); resp.StatusCode != http.StatusOK || sha256hex(body) != sha256hex(data) {
		t.Errorf("download: HTTP %d, SHA-256 %s, want 200 and %s", resp.StatusCode, sha256hex(body), sha256hex(data))
	}
}

// initCloseCode opens a websocket, sends connection_init with token and
// returns the close code and reason the server ends it with (0 if it
// answered connection_ack instead).
func initCloseCode(t *testing.T, s *spool, token string) (int, string) {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 5 * time.Second}
	conn, _, err := d.Dial(strings.Replace(s.url, "http", "ws", 1)+"/graphql", nil)
	if err != nil {
		t.Fatalf("websocket dial: %v", err)
	}
	defer conn.Close()
	if err := conn.WriteJSON(map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + token}}); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second)) // a hang guard
	var m wsMessage
	err = conn.ReadJSON(&m)
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code, ce.Text
	}
	if err != nil {
		t.Fatalf("websocket: %v, want a close frame", err)
	}
	return 0, "answered " + m.Type
}

// TestDatabaseCutMidChunk cuts PostgreSQL while a chunk's bytes are
// being written (after the server looked the upload up, before it
// records the chunk): the PUT answers 503 UNAVAILABLE with Retry-After,
// the chunk does not count as received, and, once the database is back,
// the same chunk sent again is taken and the file completes with its
// exact bytes.
func TestDatabaseCutMidChunk(t *testing.T) {
	dbURL := dbtest.Postgres(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startDBProxy(t, u.Host)
	u.Host = proxy.Addr()
	dataDir := t.TempDir()
	s := startSpool(t, func(c *app.Config) { c.DatabaseURL, c.DataDir = u.String(), dataDir })
	tok := s.token("alice")
	data := fileBytes("image/png", 12<<20, 9)
	up := s.planOne(tok, file("a.png", "image/png", int64(len(data))))
	sendChunk(t, up.ChunkURLs[0], data, http.StatusOK)
	chunk := up.ChunkURLs[1]
	body := chunkOf(chunk, data)

	pr, pw := io.Pipe()
	answer := make(chan planeAnswer, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPut, chunk.URL, pr)
		req.ContentLength = int64(len(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("PUT: %v", err)
			answer <- planeAnswer{}
			return
		}
		defer resp.Body.Close()
		var a planeAnswer
		_ = json.NewDecoder(resp.Body).Decode(&a)
		a.Status, a.Header = resp.StatusCode, resp.Header
		answer <- a
	}()
	half := len(body) / 2
	if _, err := pw.Write(body[:half]); err != nil {
		t.Fatal(err)
	}
	// The server writes the chunk at its offset in the upload's staging
	// file (created at full size, zeros): once its first bytes are
	// there, the upload was looked up and only recording it is left.
	waitStaged(t, filepath.Join(dataDir, "files", "staging"), chunk.Offset, body[:16])
	proxy.Cut(time.Hour) // until Restore
	if _, err := pw.Write(body[half:]); err != nil {
		t.Fatal(err)
	}
	_ = pw.Close()
	a := <-answer
	if a.Status != http.StatusServiceUnavailable || a.Error.Code != "UNAVAILABLE" {
		t.Errorf("chunk PUT cut mid-chunk: HTTP %d %+v, want 503 UNAVAILABLE", a.Status, a.Error)
	}
	if n, err := strconv.Atoi(a.Header.Get("Retry-After")); err != nil || n < 1 {
		t.Errorf("chunk PUT cut mid-chunk: Retry-After %q, want a positive integer", a.Header.Get("Retry-After"))
	}
	proxy.Restore()
	// The pool may still hold connections the cut killed, and the server's
	// job queue uses the pool too, so any request after the cut may meet
	// one and answer UNAVAILABLE: a client retries after Retry-After, as
	// here, for every request.
	put := func(c chunkURL, body []byte) func() (bool, string, any) {
		return func() (bool, string, any) {
			a := do(t, http.MethodPut, c.URL, body, nil)
			return a.Status == http.StatusOK, a.Error.Code, a
		}
	}
	afterCut(t, "re-sending the chunk", put(chunk, body))
	for _, c := range up.ChunkURLs[2:] {
		afterCut(t, fmt.Sprintf("chunk %d", c.ChunkIndex), put(c, chunkOf(c, data)))
	}
	var done struct{ Complete media }
	afterCut(t, "complete", func() (bool, string, any) {
		errs := s.gql(tok, `mutation($id: ID!) { complete(uploadId: $id) { url } }`, map[string]any{"id": up.ID}, &done)
		if len(errs) > 0 {
			return false, errs[0].code(), errs
		}
		return true, "", nil
	})
	var got []byte
	afterCut(t, "download", func() (bool, string, any) {
		resp, b := get(t, done.Complete.URL, nil)
		got = b
		code := ""
		if resp.StatusCode == http.StatusServiceUnavailable {
			code = "UNAVAILABLE"
		}
		return resp.StatusCode == http.StatusOK, code, resp.Status
	})
	if sha256hex(got) != sha256hex(data) {
		t.Errorf("download: SHA-256 %s, want %s", sha256hex(got), sha256hex(data))
	}
}

// afterCut runs try, a request after the database came back, until it is
// done; an answer UNAVAILABLE (a pooled connection the cut killed) is
// retried, as a client does after Retry-After, and anything else, or
// UNAVAILABLE 20 times, fails the test with try's detail.
func afterCut(t *testing.T, what string, try func() (done bool, code string, detail any)) {
	t.Helper()
	for n := 0; ; n++ {
		done, code, detail := try()
		if done {
			return
		}
		if code != "UNAVAILABLE" || n == 20 {
			t.Fatalf("%s after the cut: %s %+v", what, code, detail)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitStaged waits until the one staging file under dir holds want at
// offset.
func waitStaged(t *testing.T, dir string, offset int64, want []byte) {
	t.Helper()
	deadline := time.Now().Add(time.Minute) // a hang guard
	for {
		var names []string
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				names = append(names, p)
			}
			return nil
		})
		if len(names) == 1 {
			f, err := os.Open(names[0])
			if err == nil {
				got := make([]byte, len(want))
				_, err = f.ReadAt(got, offset)
				f.Close()
				if err == nil && bytes.Equal(got, want) {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no staging file under %s got the chunk's first bytes (files: %v)", dir, names)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
