package main

import (
	"bytes"
	"database/sql"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/blackhole"
	"github.com/spoolhq/spool/internal/database/dbtest"
	"github.com/spoolhq/spool/internal/eventually"
)

// chunkAnswer is what a chunk PUT got back.
type chunkAnswer struct {
	status int
	header http.Header
	body   string
}

// sendChunk sends chunk i of video, planned as up, to its chunk URL.
func sendChunk(t *testing.T, up plannedUpload, video []byte, i int) chunkAnswer {
	t.Helper()
	c := up.ChunkUrls[i]
	req, err := http.NewRequest(http.MethodPut, c.URL, bytes.NewReader(video[c.Offset:c.Offset+c.Size]))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("PUT chunk %d: %v", i, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return chunkAnswer{resp.StatusCode, resp.Header, string(body)}
}

// completeAndCheck sends the chunks of up from the first on, completes
// it and checks that its file downloads byte-exact.
func completeAndCheck(t *testing.T, base, token string, up plannedUpload, video []byte, first int) {
	t.Helper()
	for i := first; i < len(up.ChunkUrls); i++ {
		if a := sendChunk(t, up, video, i); a.status != http.StatusOK {
			t.Fatalf("PUT chunk %d: %d %s", i, a.status, a.body)
		}
	}
	var completed struct{ Complete struct{ URL string } }
	gql(t, base, token, `mutation($id: ID!) { complete(uploadId: $id) { url } }`, map[string]any{"id": up.ID}, &completed)
	status, body := fetch(t, http.MethodGet, completed.Complete.URL, nil, nil)
	if status != http.StatusOK || sha256hex(body) != sha256hex(video) {
		t.Errorf("GET the completed file: %d, %d bytes with sha256 %s; want 200 and %s", status, len(body), sha256hex(body), sha256hex(video))
	}
}

// TestPostgresPartition runs a replica whose way to PostgreSQL starts
// dropping every packet mid-upload, as a network partition or a frozen
// database host does: a chunk PUT sent into it answers 503 with
// Retry-After once the URL's tcp_user_timeout passes (unbounded, its
// statement waits for TCP's retransmissions, about 15 minutes, and so
// would every request after it), /readyz answers 503 meanwhile, and once
// the network is back the same upload goes on and completes byte-exact.
func TestPostgresPartition(t *testing.T) {
	w := newWalkthrough(t)
	hole := blackhole.Start(t, dbtest.Host(t, w.database))
	dbURL := dbtest.Rewrite(t, w.database, hole.Addr, "tcp_user_timeout", "1000")
	r := w.serve(t, append(w.engines, "--database-url", dbURL)...) // the last --database-url wins
	token := w.token(t, "partitioned")
	video := randomVideo(11<<20, 11)
	up := planVideo(t, r.url, token, video)
	if a := sendChunk(t, up, video, 0); a.status != http.StatusOK {
		t.Fatalf("PUT chunk 0 before the partition: %d %s", a.status, a.body)
	}

	hole.Drop(t)
	start := time.Now()
	done := make(chan chunkAnswer, 1)
	go func() { done <- sendChunk(t, up, video, 1) }()
	select {
	case a := <-done:
		t.Logf("chunk 1, sent into the partition, answered %d after %v: %s", a.status, time.Since(start).Round(time.Millisecond), a.body)
		if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" {
			t.Errorf("chunk 1, sent into the partition: got %d (Retry-After %q) %s, want 503 with Retry-After",
				a.status, a.header.Get("Retry-After"), a.body)
		}
	case <-time.After(2 * time.Minute): // a hang guard
		hole.Restore(t) // so that stopping the replica is not stuck behind it too
		t.Fatalf("chunk 1's PUT still waits 2 minutes into the partition; the replica's log:\n%s", r.log)
	}
	if status, body := fetch(t, http.MethodGet, r.url+"/readyz", nil, nil); status != http.StatusServiceUnavailable {
		t.Errorf("/readyz in the partition: got %d %s, want 503", status, body)
	}

	hole.Restore(t)
	eventually.Holds(t, "/readyz answers 200 once the network is back", func() bool {
		status, _ := fetch(t, http.MethodGet, r.url+"/readyz", nil, nil)
		return status == http.StatusOK
	})
	completeAndCheck(t, r.url, token, up, video, 1)
}

// TestPostgresFailoverToReadOnly runs a replica whose PostgreSQL stops
// taking writes mid-upload and its connections with it, as a failover
// does that leaves the replica on the demoted primary (or on DNS that
// still names it): a chunk PUT then answers 503 with Retry-After, not
// 500, and once writes are taken again the replica takes chunks within a
// pool's worth of attempts, instead of failing each one on the
// connections it opened meanwhile for as long as its pool kept them (up
// to an hour).
func TestPostgresFailoverToReadOnly(t *testing.T) {
	w := newWalkthrough(t)
	// Two CPUs' pool, 8 connections (database.poolSize), whatever the
	// machine: each may be refused once after the database takes writes.
	const pool = 8
	w.env = append(w.env, "GOMAXPROCS=2")
	r := w.serve(t, w.engines...)
	token := w.token(t, "failedover")
	video := randomVideo(11<<20, 12)
	up := planVideo(t, r.url, token, video)
	if a := sendChunk(t, up, video, 0); a.status != http.StatusOK {
		t.Fatalf("PUT chunk 0 before the failover: %d %s", a.status, a.body)
	}
	dbtest.ReadOnly(t, w.database, true)
	for range 3 {
		a := sendChunk(t, up, video, 1)
		if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" {
			t.Errorf("chunk 1 on a read-only database: got %d (Retry-After %q) %s, want 503 with Retry-After",
				a.status, a.header.Get("Retry-After"), a.body)
		}
	}

	dbtest.ReadOnly(t, w.database, false)
	for attempt := 1; ; attempt++ {
		a := sendChunk(t, up, video, 1)
		if a.status == http.StatusOK {
			t.Logf("chunk 1 taken at attempt %d after the database took writes again", attempt)
			break
		}
		if attempt > pool {
			t.Fatalf("chunk 1 still refused after %d attempts once the database took writes again: %d %s", attempt, a.status, a.body)
		}
	}
	completeAndCheck(t, r.url, token, up, video, 2)
}

// TestPostgresLockHeldElsewhere runs a replica whose URL bounds
// PostgreSQL's statements (lock_timeout, or statement_timeout), while
// another session holds the row of the upload being sent (a manual
// transaction, a long migration): the chunk whose receipt waited out the
// bound answers 503 with Retry-After, not 500, and once the lock is let
// go the chunk is taken.
func TestPostgresLockHeldElsewhere(t *testing.T) {
	for _, setting := range []string{"lock_timeout", "statement_timeout"} {
		t.Run(setting, func(t *testing.T) {
			w := newWalkthrough(t)
			// 300 milliseconds, as PostgreSQL reads a bare number.
			dbURL := dbtest.Rewrite(t, w.database, "", setting, "300")
			r := w.serve(t, append(w.engines, "--database-url", dbURL)...) // the last --database-url wins
			token := w.token(t, "locked")
			video := randomVideo(11<<20, 13)
			up := planVideo(t, r.url, token, video)

			holder, err := sql.Open("pgx", w.database)
			if err != nil {
				t.Fatal(err)
			}
			defer holder.Close()
			tx, err := holder.Begin()
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			if _, err := tx.Exec("SELECT id FROM upload_sessions WHERE id = $1 FOR UPDATE", up.ID); err != nil {
				t.Fatal(err)
			}
			a := sendChunk(t, up, video, 0)
			if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" {
				t.Errorf("chunk 0 while its upload's row is locked elsewhere: got %d (Retry-After %q) %s, want 503 with Retry-After",
					a.status, a.header.Get("Retry-After"), a.body)
			}
			if err := tx.Rollback(); err != nil {
				t.Fatal(err)
			}
			completeAndCheck(t, r.url, token, up, video, 0)
		})
	}
}
