package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// tusRequest makes one tus request with the token and returns the status,
// the answer's headers and body.
func tusRequest(t *testing.T, method, url, token string, body []byte, header map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Authorization", "Bearer "+token)
	if method == http.MethodPatch {
		req.Header.Set("Content-Type", "application/offset+octet-stream")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return resp.StatusCode, resp.Header, string(answer)
}

// tusMeta is an Upload-Metadata header.
func tusMeta(kv ...string) string {
	var parts []string
	for i := 0; i+1 < len(kv); i += 2 {
		parts = append(parts, kv[i]+" "+base64.StdEncoding.EncodeToString([]byte(kv[i+1])))
	}
	return strings.Join(parts, ",")
}

// tusCreate creates a tus upload on base and returns its URL.
func tusCreate(t *testing.T, base, token string, header map[string]string) string {
	t.Helper()
	status, h, body := tusRequest(t, http.MethodPost, base+"/files/", token, nil, header)
	if status != http.StatusCreated || h.Get("Location") == "" {
		t.Fatalf("POST %s/files/: %d %s (Location %q)", base, status, body, h.Get("Location"))
	}
	loc := h.Get("Location")
	if strings.HasPrefix(loc, "/") {
		loc = base + loc
	}
	return loc
}

// tusPatchAcross sends data to the upload at url in PATCHes of step
// bytes, each to the next replica in turn, checking every answer's
// offset; it returns the last answer's headers.
func tusPatchAcross(t *testing.T, url, token string, data []byte, step int, replicas ...*replica) http.Header {
	t.Helper()
	var last http.Header
	for i, off := 0, 0; off < len(data); i, off = i+1, off+step {
		end := min(off+step, len(data))
		r := replicas[i%len(replicas)]
		u := onReplica(url, r)
		status, h, body := tusRequest(t, http.MethodPatch, u, token, data[off:end], map[string]string{"Upload-Offset": strconv.Itoa(off)})
		if status != http.StatusNoContent || h.Get("Upload-Offset") != strconv.Itoa(end) {
			t.Fatalf("PATCH [%d, %d) to %s: %d, Upload-Offset %q, %s; want 204 and %d", off, end, u, status, h.Get("Upload-Offset"), body, end)
		}
		last = h
	}
	return last
}

// onReplica is url with its scheme and host replaced by r's.
func onReplica(url string, r *replica) string {
	i := strings.Index(url, "/files/")
	return r.url + url[i:]
}

// progressSeen is what a subscriber read of one upload.
type progressSeen struct {
	statuses []string
	uploaded map[int64]bool
	err      error
}

// followProgress subscribes to an upload's progress on r over
// graphql-transport-ws and reads until COMPLETED or a minute of silence.
func followProgress(r *replica, token, uploadID string, subscribed chan<- struct{}) progressSeen {
	seen := progressSeen{uploaded: map[int64]bool{}}
	d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 10 * time.Second}
	conn, _, err := d.Dial(strings.Replace(r.url, "http", "ws", 1)+"/graphql", nil)
	if err != nil {
		seen.err = err
		close(subscribed)
		return seen
	}
	defer conn.Close()
	_ = conn.WriteJSON(map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + token}})
	for {
		_ = conn.SetReadDeadline(time.Now().Add(time.Minute)) // a hang guard
		var m struct {
			Type    string          `json:"type"`
			Payload json.RawMessage `json:"payload"`
		}
		if err := conn.ReadJSON(&m); err != nil {
			seen.err = err
			return seen
		}
		switch m.Type {
		case "connection_ack":
			_ = conn.WriteJSON(map[string]any{"id": "p", "type": "subscribe", "payload": map[string]any{
				"query":     `subscription($id: ID!) { uploadProgress(uploadId: $id) { status uploadedBytes } }`,
				"variables": map[string]any{"id": uploadID},
			}})
		case "ping":
			_ = conn.WriteJSON(map[string]string{"type": "pong"})
		case "next":
			var p struct {
				Data struct {
					UploadProgress struct {
						Status        string
						UploadedBytes int64
					}
				}
			}
			if err := json.Unmarshal(m.Payload, &p); err != nil {
				seen.err = err
				return seen
			}
			if len(seen.statuses) == 0 {
				close(subscribed) // the snapshot: the subscription is live
			}
			ev := p.Data.UploadProgress
			seen.statuses = append(seen.statuses, ev.Status)
			seen.uploaded[ev.UploadedBytes] = true
			if ev.Status == "COMPLETED" {
				return seen
			}
		case "error", "complete":
			seen.err = fmt.Errorf("subscription ended: %s %s", m.Type, m.Payload)
			return seen
		}
	}
}

// TestTusAcrossReplicas sends tus uploads through two replicas on
// PostgreSQL, Redis and the GCS emulator, their PATCHes alternating
// between the replicas and ending inside 5 MiB chunks (pieces composed
// on GCS): a subscriber on the other replica sees the progress and
// COMPLETED, HEAD on either replica tells the same offset and media id,
// and the file downloads byte-exact. Then four partial uploads, sent to
// both replicas, joined by a final POST.
func TestTusAcrossReplicas(t *testing.T) {
	w := newWalkthrough(t)
	a, b := w.serve(t, w.engines...), w.serve(t, w.engines...)
	token := w.token(t, "alice")

	video := randomVideo(13<<20+321, 12)
	url := tusCreate(t, a.url, token, map[string]string{
		"Upload-Length":   strconv.Itoa(len(video)),
		"Upload-Metadata": tusMeta("filename", "clip.mp4", "filetype", "video/mp4"),
	})
	uploadID := url[strings.LastIndex(url, "/")+1:]
	subscribed, followed := make(chan struct{}), make(chan progressSeen, 1)
	go func() { followed <- followProgress(b, token, uploadID, subscribed) }()
	<-subscribed

	last := tusPatchAcross(t, url, token, video, 2<<20+7, a, b)
	mediaID := last.Get("Spool-Media-Id")
	if mediaID == "" {
		t.Fatalf("the last PATCH's answer names no media (headers %v)", last)
	}
	for _, r := range []*replica{a, b} {
		status, h, body := tusRequest(t, http.MethodHead, onReplica(url, r), token, nil, nil)
		if status != http.StatusOK || h.Get("Upload-Offset") != strconv.Itoa(len(video)) || h.Get("Spool-Media-Id") != mediaID {
			t.Errorf("HEAD on %s: %d, Upload-Offset %q, Spool-Media-Id %q, %s; want 200, %d, %s",
				r.url, status, h.Get("Upload-Offset"), h.Get("Spool-Media-Id"), body, len(video), mediaID)
		}
	}
	seen := <-followed
	if seen.err != nil || len(seen.statuses) == 0 || seen.statuses[len(seen.statuses)-1] != "COMPLETED" {
		t.Errorf("the subscriber on B read %v (err %v), want it to end at COMPLETED", seen.statuses, seen.err)
	}
	if len(seen.uploaded) < 3 {
		t.Errorf("the subscriber saw uploadedBytes %v, want the upload's progress along the way", seen.uploaded)
	}
	wantDownload(t, a, token, mediaID, video)

	// Concatenation: four parts, sent to both replicas, joined on B.
	joined := randomVideo(9<<20+5, 13)
	var paths []string
	for i, cut := 0, 0; i < 4; i++ {
		end := min(cut+len(joined)/4+1, len(joined))
		r := []*replica{a, b}[i%2]
		part := tusCreate(t, r.url, token, map[string]string{"Upload-Length": strconv.Itoa(end - cut), "Upload-Concat": "partial"})
		tusPatchAcross(t, part, token, joined[cut:end], 1<<20+3, b, a)
		paths = append(paths, part[strings.Index(part, "/files/"):])
		cut = end
	}
	status, h, body := tusRequest(t, http.MethodPost, b.url+"/files/", token, nil, map[string]string{
		"Upload-Concat":   "final;" + strings.Join(paths, " "),
		"Upload-Metadata": tusMeta("filename", "joined.mp4", "filetype", "video/mp4"),
	})
	if status != http.StatusCreated || h.Get("Spool-Media-Id") == "" {
		t.Fatalf("final POST: %d %s, Spool-Media-Id %q; want 201 naming the media", status, body, h.Get("Spool-Media-Id"))
	}
	wantDownload(t, b, token, h.Get("Spool-Media-Id"), joined)
}

// wantDownload fetches the media's URL from r and checks its bytes.
func wantDownload(t *testing.T, r *replica, token, mediaID string, want []byte) {
	t.Helper()
	var m struct {
		Node struct{ URL string }
	}
	gql(t, r.url, token, `query($id: ID!) { node(id: $id) { ... on MediaFile { url } } }`, map[string]any{"id": mediaID}, &m)
	status, got := fetch(t, http.MethodGet, m.Node.URL, nil, nil)
	if status != http.StatusOK || sha256hex(got) != sha256hex(want) {
		t.Errorf("GET media %s: %d, %d bytes with sha256 %s; want 200 and %s", mediaID, status, len(got), sha256hex(got), sha256hex(want))
	}
}
