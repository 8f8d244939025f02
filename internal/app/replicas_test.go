package app_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
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
