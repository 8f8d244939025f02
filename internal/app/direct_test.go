package app_test

import (
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
