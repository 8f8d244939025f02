package app_test

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// tusHeader returns the headers of a tus request: the token, the
// protocol version and name, value pairs.
func tusHeader(token string, pairs ...string) http.Header {
	h := http.Header{"Authorization": {"Bearer " + token}, "Tus-Resumable": {"1.0.0"}}
	for i := 0; i+1 < len(pairs); i += 2 {
		h.Set(pairs[i], pairs[i+1])
	}
	return h
}

// TestTusAcrossReplicas runs a tus upload on the production engines
// (PostgreSQL, Redis, GCS) through two replicas: created on A, its
// PATCHes alternate between A and B, each ending inside a chunk, while a
// subscriber on A sees the progress of every PATCH and then COMPLETED;
// the PATCH that completes it names the media, which downloads
// byte-exact.
func TestTusAcrossReplicas(t *testing.T) {
	shared := productionEngines(t)
	a := startSpool(t, shared.apply)
	b := startSpool(t, shared.apply)
	tok := a.token("alice")
	video := fileBytes("video/mp4", 12<<20+333, 21)

	meta := "filename " + base64.StdEncoding.EncodeToString([]byte("clip.mp4")) +
		",filetype " + base64.StdEncoding.EncodeToString([]byte("video/mp4"))
	resp, body := send(t, http.MethodPost, a.url+"/files/", nil,
		tusHeader(tok, "Upload-Length", strconv.Itoa(len(video)), "Upload-Metadata", meta))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /files/ on A: %d %s", resp.StatusCode, body)
	}
	onA := resp.Header.Get("Location")
	id := onA[strings.LastIndex(onA, "/")+1:]
	onB := b.url + "/files/" + id

	ws := a.dialWS(tok, nil)
	ws.subscribe("up", `subscription($id: ID!) { uploadProgress(uploadId: $id) { uploadId status percent uploadedBytes mediaId } }`,
		map[string]any{"id": id})
	events := collect(ws, "up")
	if first := <-events; first.Status != "INITIALIZED" || first.UploadedBytes != 0 {
		t.Fatalf("snapshot: got %+v, want INITIALIZED with nothing", first)
	}

	// 3 MiB + 1 byte PATCHes: most end inside a 5 MiB chunk.
	const piece = 3<<20 + 1
	var mediaID string
	for i, at := 0, 0; at < len(video); i++ {
		url, name := onA, "A"
		if i%2 == 1 {
			url, name = onB, "B"
		}
		end := min(at+piece, len(video))
		resp, body := send(t, http.MethodPatch, url, bytes.NewReader(video[at:end]), tusHeader(tok,
			"Upload-Offset", strconv.Itoa(at), "Content-Type", "application/offset+octet-stream"))
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Upload-Offset") != strconv.Itoa(end) {
			t.Fatalf("PATCH %d..%d on %s: %d %s, Upload-Offset %q", at, end, name, resp.StatusCode, body, resp.Header.Get("Upload-Offset"))
		}
		at = end
		if at < len(video) {
			// The other replica knows the offset at once.
			other := onB
			if name == "B" {
				other = onA
			}
			h, _ := send(t, http.MethodHead, other, nil, tusHeader(tok))
			if h.Header.Get("Upload-Offset") != strconv.Itoa(at) {
				t.Fatalf("HEAD on the other replica after PATCH on %s: Upload-Offset %q, want %d", name, h.Header.Get("Upload-Offset"), at)
			}
			// The subscriber sees this PATCH's bytes.
			for p := range events {
				if p.UploadedBytes > int64(at) {
					t.Fatalf("subscriber: %d bytes uploaded, more than the %d sent", p.UploadedBytes, at)
				}
				if p.UploadedBytes == int64(at) {
					break
				}
			}
			continue
		}
		mediaID = resp.Header.Get("Spool-Media-Id")
	}
	if mediaID == "" {
		t.Fatal("the last PATCH names no media (Spool-Media-Id)")
	}
	var last progress
	for p := range events {
		last = p
	}
	if last.Status != "COMPLETED" || last.Percent != 100 || last.MediaID != mediaID {
		t.Errorf("subscriber on A: last event %+v, want COMPLETED at 100 with media %s", last, mediaID)
	}

	var fromB struct {
		Node media `json:"node"`
	}
	b.mustGQL(tok, `query($id: ID!) { node(id: $id) { ... on MediaFile { id fileName fileSize url } } }`, map[string]any{"id": mediaID}, &fromB)
	if fromB.Node.ID != mediaID || fromB.Node.FileName != "clip.mp4" || fromB.Node.FileSize != int64(len(video)) {
		t.Fatalf("media seen by B: %+v", fromB.Node)
	}
	resp, body = get(t, fromB.Node.URL, nil)
	if resp.StatusCode != http.StatusOK || sha256hex(body) != sha256hex(video) {
		t.Errorf("download: got HTTP %d, sha256 %s, want %s", resp.StatusCode, sha256hex(body), sha256hex(video))
	}
}
