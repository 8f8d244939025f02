package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/spoolhq/spool/internal/app"
)

// TestDirectUploads sends chunks straight to GCS through V4 signed URLs:
// confirmChunk and complete stat the parts, spool never sees the bytes.
func TestDirectUploads(t *testing.T) {
	shared := productionEngines(t)
	s := startSpool(t, func(c *app.Config) {
		shared.apply(c)
		c.Upload.DirectUploads = true
	})
	tok := s.token("alice")
	video := fileBytes("video/mp4", 11<<20, 9)
	up := s.initBatch(tok, map[string]any{"fileName": "d.mp4", "size": len(video), "mimeType": "video/mp4"}).Uploads[0]
	for _, u := range up.ChunkURLs {
		if strings.HasPrefix(u.URL, s.url) {
			t.Fatalf("chunk %d URL %s points at spool, want the store", u.ChunkIndex, u.URL)
		}
	}

	s.wantCode(tok, `mutation($id: ID!) { confirmChunk(uploadId: $id, chunkIndex: 0, size: 5242880) { uploadedChunks } }`,
		map[string]any{"id": up.ID}, "CHUNK_MISSING")
	for _, u := range up.ChunkURLs[:2] {
		sendChunk(t, u, video, http.StatusOK)
	}
	var out struct{ ConfirmChunk progress }
	s.mustGQL(tok, `mutation($id: ID!) { confirmChunk(uploadId: $id, chunkIndex: 1, size: 5242880) { uploadedChunks uploadedBytes } }`,
		map[string]any{"id": up.ID}, &out)
	if out.ConfirmChunk.UploadedChunks != 1 {
		t.Errorf("after confirming chunk 1: got %+v, want 1 chunk counted", out.ConfirmChunk)
	}
	s.wantCode(tok, `mutation($id: ID!) { complete(uploadId: $id) { id } }`, map[string]any{"id": up.ID}, "INCOMPLETE")

	sendChunk(t, up.ChunkURLs[2], video, http.StatusOK)
	m := s.complete(tok, up.ID) // stats chunks 0 and 2 itself
	resp, body := get(t, m.URL, nil)
	if resp.StatusCode != http.StatusOK || sha256hex(body) != sha256hex(video) {
		t.Errorf("download: got HTTP %d, sha256 %s, want %s", resp.StatusCode, sha256hex(body), sha256hex(video))
	}
}

// TestDirectSingleResumes sends a SINGLE file to a GCS resumable session
// that spool opened for the page's origin, breaks off part way, and goes
// on from the offset requestChunkUrl gives, with its headers, through the
// whole HTTP stack.
func TestDirectSingleResumes(t *testing.T) {
	shared := productionEngines(t)
	const page = "https://app.example"
	s := startSpool(t, func(c *app.Config) {
		shared.apply(c)
		c.Upload.DirectUploads = true
		c.AllowedOrigins = []string{page}
	})
	tok := s.token("alice")
	image := fileBytes("image/png", 900<<10, 4) // SINGLE: up to 1 MiB
	n := int64(len(image))

	var planned struct{ InitBatch batch }
	s.gqlFrom(page, tok, initBatchOp, map[string]any{"input": map[string]any{"files": []any{
		map[string]any{"fileName": "p.png", "size": n, "mimeType": "image/png"}}}}, &planned)
	up := planned.InitBatch.Uploads[0]
	if up.Strategy != "SINGLE" || len(up.ChunkURLs) != 1 {
		t.Fatalf("planned %s with %d URLs, want SINGLE with one", up.Strategy, len(up.ChunkURLs))
	}
	u := up.ChunkURLs[0]
	if got, ok := shared.gcsServer.SessionOrigin(u.URL); !ok || got != page {
		t.Fatalf("chunk URL is not a session opened for %s (Origin %q, known %v)", page, got, ok)
	}
	wantHeaders(t, u, fmt.Sprintf("bytes 0-%d/%d", n-1, n))

	const k = 256 << 10
	resp, body := send(t, http.MethodPut, u.URL, bytes.NewReader(image[:k]), http.Header{"Content-Range": {fmt.Sprintf("bytes 0-%d/*", k-1)}})
	if resp.StatusCode != http.StatusPermanentRedirect {
		t.Fatalf("first piece: HTTP %d %s, want 308", resp.StatusCode, body)
	}

	var again struct{ RequestChunkURL chunkURL }
	s.gqlFrom(page, tok, `mutation($id: ID!) { requestChunkUrl(uploadId: $id, chunkIndex: 0) { chunkIndex url method headers { name value } offset size } }`,
		map[string]any{"id": up.ID}, &again)
	r := again.RequestChunkURL
	if r.Offset != k || r.Size != n-k || r.URL != u.URL {
		t.Fatalf("after the break: offset %d size %d (same session: %v), want %d, %d, the same", r.Offset, r.Size, r.URL == u.URL, k, n-k)
	}
	wantHeaders(t, r, fmt.Sprintf("bytes %d-%d/%d", k, n-1, n))
	s.wantCode(s.token("bob"), opRequestURL, vars("id", up.ID, "i", 0), "NOT_FOUND")

	header := http.Header{}
	for _, h := range r.Headers {
		header.Set(h.Name, h.Value)
	}
	resp, body = send(t, r.Method, r.URL, bytes.NewReader(image[r.Offset:r.Offset+r.Size]), header)
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		t.Fatalf("the rest: HTTP %d %s", resp.StatusCode, body)
	}
	s.mustGQL(tok, opConfirm, vars("id", up.ID, "i", 0, "size", n, "sum", crc32cOf(image)), nil)
	m := s.complete(tok, up.ID)
	if _, body := get(t, m.URL, nil); sha256hex(body) != sha256hex(image) {
		t.Errorf("download: %d bytes, sha256 %s, want %s", len(body), sha256hex(body), sha256hex(image))
	}
}

func wantHeaders(t *testing.T, u chunkURL, contentRange string) {
	t.Helper()
	if u.Method != "PUT" || len(u.Headers) != 1 || u.Headers[0].Name != "Content-Range" || u.Headers[0].Value != contentRange {
		t.Fatalf("chunk URL: %s with headers %+v, want PUT with Content-Range %s", u.Method, u.Headers, contentRange)
	}
}

// gqlFrom is mustGQL from a browser page at origin.
func (s *spool) gqlFrom(origin, token, query string, vars map[string]any, out any) {
	s.t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	resp, raw := send(s.t, http.MethodPost, s.url+"/graphql", bytes.NewReader(body), http.Header{
		"Content-Type": {"application/json"}, "Authorization": {"Bearer " + token}, "Origin": {origin}})
	var res struct {
		Data   json.RawMessage `json:"data"`
		Errors []gqlError      `json:"errors"`
	}
	if err := json.Unmarshal(raw, &res); err != nil || len(res.Errors) > 0 {
		s.t.Fatalf("GraphQL from %s: HTTP %d %s", origin, resp.StatusCode, raw)
	}
	if err := json.Unmarshal(res.Data, out); err != nil {
		s.t.Fatalf("decoding %s: %v", res.Data, err)
	}
}
