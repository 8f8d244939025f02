package main

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/blackhole"
	"github.com/spoolhq/spool/internal/eventually"
)

// TestPostgresPartition runs a replica whose way to PostgreSQL starts
// dropping every packet mid-upload, as a network partition or a frozen
// database host does: a chunk PUT sent into it answers 503 with
// Retry-After once the URL's tcp_user_timeout passes (unbounded, its
// statement waits for TCP's retransmissions, about 15 minutes, and so
// would every request after it), /readyz answers 503 meanwhile, and once
// the network is back the same upload goes on and completes byte-exact.
func TestPostgresPartition(t *testing.T) {
	w := newWalkthrough(t)
	u, err := url.Parse(w.database)
	if err != nil {
		t.Fatal(err)
	}
	hole := blackhole.Start(t, u.Host)
	u.Host = hole.Addr
	q := u.Query()
	q.Set("tcp_user_timeout", "1000")
	u.RawQuery = q.Encode()
	r := w.serve(t, append(w.engines, "--database-url", u.String())...) // the last --database-url wins
	token := w.token(t, "partitioned")
	video := randomVideo(11<<20, 11)
	up := planVideo(t, r.url, token, video)
	put := func(i int) (int, http.Header, string) {
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
		return resp.StatusCode, resp.Header, string(body)
	}
	if status, _, body := put(0); status != http.StatusOK {
		t.Fatalf("PUT chunk 0 before the partition: %d %s", status, body)
	}

	hole.Drop(t)
	start := time.Now()
	type answer struct {
		status int
		header http.Header
		body   string
	}
	done := make(chan answer, 1)
	go func() {
		status, header, body := put(1)
		done <- answer{status, header, body}
	}()
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
	for i := 1; i < len(up.ChunkUrls); i++ {
		if status, _, body := put(i); status != http.StatusOK {
			t.Fatalf("PUT chunk %d after the partition: %d %s", i, status, body)
		}
	}
	var completed struct{ Complete struct{ URL string } }
	gql(t, r.url, token, `mutation($id: ID!) { complete(uploadId: $id) { url } }`, map[string]any{"id": up.ID}, &completed)
	status, body := fetch(t, http.MethodGet, completed.Complete.URL, nil, nil)
	if status != http.StatusOK || sha256hex(body) != sha256hex(video) {
		t.Errorf("GET the completed file: %d, %d bytes with sha256 %s; want 200 and %s", status, len(body), sha256hex(body), sha256hex(video))
	}
}
