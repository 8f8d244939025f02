package app_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"hash/crc32"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/eventually"
)

const uploadFields = `id batchId fileName mimeType totalSize strategy chunkSize totalChunks status expiresAt
	chunkUrls { chunkIndex url method headers { name value } offset size expiresAt }
	progress { uploadId batchId status uploadedBytes totalBytes percent uploadedChunks totalChunks failedChunks }`

const initBatchOp = `mutation($input: InitBatchInput!) { initBatch(input: $input) { id uploads { ` + uploadFields + ` } } }`

type chunkURL struct {
	ChunkIndex int      `json:"chunkIndex"`
	URL        string   `json:"url"`
	Method     string   `json:"method"`
	Headers    []header `json:"headers"`
	Offset     int64    `json:"offset"`
	Size       int64    `json:"size"`
}

type header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type progress struct {
	UploadID       string `json:"uploadId"`
	BatchID        string `json:"batchId"`
	Status         string `json:"status"`
	UploadedBytes  int64  `json:"uploadedBytes"`
	TotalBytes     int64  `json:"totalBytes"`
	Percent        int    `json:"percent"`
	UploadedChunks int    `json:"uploadedChunks"`
	TotalChunks    int    `json:"totalChunks"`
	FailedChunks   []int  `json:"failedChunks"`
	// MediaID and MediaStatus are set once the upload is COMPLETED ("" for null).
	MediaID     string `json:"mediaId"`
	MediaStatus string `json:"mediaStatus"`
}

type session struct {
	ID          string     `json:"id"`
	BatchID     string     `json:"batchId"`
	FileName    string     `json:"fileName"`
	TotalSize   int64      `json:"totalSize"`
	Strategy    string     `json:"strategy"`
	ChunkSize   int64      `json:"chunkSize"`
	TotalChunks int        `json:"totalChunks"`
	Status      string     `json:"status"`
	ChunkURLs   []chunkURL `json:"chunkUrls"`
	Progress    progress   `json:"progress"`
}

type batch struct {
	ID      string    `json:"id"`
	Uploads []session `json:"uploads"`
}

type media struct {
	ID          string  `json:"id"`
	FileName    string  `json:"fileName"`
	MediaType   string  `json:"mediaType"`
	FileSize    int64   `json:"fileSize"`
	URL         string  `json:"url"`
	Status      string  `json:"status"`
	ContentHash *string `json:"contentHash"`
}

// fileBytes returns n random bytes that start like a file of mimeType,
// so spool's sniffing of chunk 0 accepts them.
func fileBytes(mimeType string, n int, seed uint64) []byte {
	// ChaCha8's Read, not a byte at a time: under -race each byte
	// stored in a loop is an instrumented write (0.12 s a MiB).
	b := make([]byte, n)
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	_, _ = rand.NewChaCha8(key).Read(b) // never fails
	switch mimeType {
	case "video/mp4":
		copy(b, "\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom")
	case "image/png":
		copy(b, "\x89PNG\r\n\x1a\n")
	case "audio/mpeg":
		copy(b, "ID3\x04\x00\x00\x00\x00\x00\x00")
	}
	return b
}

func sha256hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func crc32cOf(b []byte) string {
	sum := crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))
	return "crc32c:" + base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint32(nil, sum))
}

func (s *spool) initBatch(token string, files ...map[string]any) batch {
	s.t.Helper()
	var out struct{ InitBatch batch }
	s.mustGQL(token, initBatchOp, map[string]any{"input": map[string]any{"files": files}}, &out)
	return out.InitBatch
}

func (s *spool) uploadSession(token, id string) session {
	s.t.Helper()
	var out struct{ Upload session }
	s.mustGQL(token, `query($id: ID!) { upload(id: $id) { `+uploadFields+` } }`, map[string]any{"id": id}, &out)
	return out.Upload
}

func (s *spool) complete(token, id string) media {
	s.t.Helper()
	var out struct{ Complete media }
	s.mustGQL(token, `mutation($id: ID!) { complete(uploadId: $id) { id fileName mediaType fileSize url status contentHash } }`,
		map[string]any{"id": id}, &out)
	return out.Complete
}

// sendChunk PUTs one chunk of data to its URL and checks the status.
func sendChunk(t testing.TB, u chunkURL, data []byte, wantStatus int) {
	t.Helper()
	if status, body := put(t, u.URL, data[u.Offset:u.Offset+u.Size], nil); status != wantStatus {
		t.Fatalf("PUT chunk %d: got %d %s, want %d", u.ChunkIndex, status, body, wantStatus)
	}
}

// TestUploadLifecycle drives a batch of a SINGLE and a CHUNKED file through
// the public API: chunks in parallel and out of order, one re-sent, one
// truncated then retried, a subscriber watching, and downloads compared.
func TestUploadLifecycle(t *testing.T) {
	for _, set := range engineSets {
		t.Run(set.name, func(t *testing.T) {
			testUploadLifecycle(t, startSpool(t, set.setup(t)))
		})
	}
}

func testUploadLifecycle(t *testing.T, s *spool) {
	tok := s.token("alice")
	image := fileBytes("image/png", 300<<10, 1)
	video := fileBytes("video/mp4", 12<<20, 2) // 3 chunks: 5, 5 and 2 MiB

	b := s.initBatch(tok,
		map[string]any{"fileName": "cover.png", "size": len(image), "mimeType": "image/png"},
		map[string]any{"fileName": "../clips/holiday.mp4", "size": len(video), "mimeType": "video/mp4", "sha256": sha256hex(video)},
	)
	if len(b.Uploads) != 2 {
		t.Fatalf("got %d uploads, want 2", len(b.Uploads))
	}
	single, chunked := b.Uploads[0], b.Uploads[1]
	if single.Strategy != "SINGLE" || single.TotalChunks != 1 || len(single.ChunkURLs) != 1 {
		t.Fatalf("single upload planned as %s with %d chunks and %d URLs", single.Strategy, single.TotalChunks, len(single.ChunkURLs))
	}
	if chunked.Strategy != "CHUNKED" || chunked.TotalChunks != 3 || chunked.ChunkSize != 5<<20 || len(chunked.ChunkURLs) != 3 {
		t.Fatalf("chunked upload planned as %s, %d chunks of %d, %d URLs", chunked.Strategy, chunked.TotalChunks, chunked.ChunkSize, len(chunked.ChunkURLs))
	}
	if got, want := chunked.FileName, "holiday.mp4"; got != want {
		t.Errorf("file name: got %q, want %q", got, want)
	}
	if last := chunked.ChunkURLs[2]; last.Offset != 10<<20 || last.Size != 2<<20 || last.Method != "PUT" {
		t.Errorf("last chunk: got offset %d size %d method %s", last.Offset, last.Size, last.Method)
	}

	ws := s.dialWS(tok, nil)
	ws.subscribe("batch", `subscription($id: ID!) { batchProgress(batchId: $id) { uploadId status percent uploadedBytes uploadedChunks failedChunks mediaId mediaStatus } }`,
		map[string]any{"id": b.ID})
	events := collect(ws, "batch")
	// One socket per subscription: collect skips other subscriptions' messages.
	wsVideo := s.dialWS(tok, nil)
	wsVideo.subscribe("video", `subscription($id: ID!) { uploadProgress(uploadId: $id) { uploadId status percent mediaId mediaStatus } }`,
		map[string]any{"id": chunked.ID})
	videoEvents := collect(wsVideo, "video")
	wsMine := s.dialWS(tok, nil)
	wsMine.subscribe("mine", `subscription { myUploads { uploadId status mediaId mediaStatus } }`, nil)
	mine := collect(wsMine, "mine")
	for range 2 { // the snapshot: both uploads, unfinished
		if p, ok := <-mine; !ok || p.Status != "INITIALIZED" {
			t.Fatalf("myUploads snapshot: got %+v (open %v), want the batch's uploads INITIALIZED", p, ok)
		}
	}

	// Chunks 2 and 0 in parallel (out of order), chunk 1 truncated.
	var wg sync.WaitGroup
	for _, i := range []int{2, 0} {
		wg.Go(func() { sendChunk(t, chunked.ChunkURLs[i], video, http.StatusOK) })
	}
	wg.Go(func() { sendChunk(t, single.ChunkURLs[0], image, http.StatusOK) })
	wg.Wait()
	u1 := chunked.ChunkURLs[1]
	if status, body := put(t, u1.URL, video[u1.Offset:u1.Offset+u1.Size/2], nil); status != http.StatusBadRequest {
		t.Fatalf("truncated chunk: got %d %s, want 400", status, body)
	}
	sendChunk(t, chunked.ChunkURLs[0], video, http.StatusOK) // re-sent: must not count twice

	got := s.uploadSession(tok, chunked.ID).Progress
	if got.UploadedChunks != 2 || got.UploadedBytes != 7<<20 || len(got.FailedChunks) != 1 || got.FailedChunks[0] != 1 {
		t.Fatalf("after truncated chunk: got %+v, want 2 chunks, 7 MiB, failed [1]", got)
	}
	s.wantCode(tok, `mutation($id: ID!) { complete(uploadId: $id) { id } }`, map[string]any{"id": chunked.ID}, "INCOMPLETE")

	var retry struct{ Retry []chunkURL }
	s.mustGQL(tok, `mutation($id: ID!) { retry(uploadId: $id) { chunkIndex url offset size } }`, map[string]any{"id": chunked.ID}, &retry)
	if len(retry.Retry) != 1 || retry.Retry[0].ChunkIndex != 1 {
		t.Fatalf("retry: got %+v, want chunk 1 only", retry.Retry)
	}
	sendChunk(t, retry.Retry[0], video, http.StatusOK)

	for i := range 3 {
		ref := chunked.ChunkURLs[i]
		var out struct{ ConfirmChunk progress }
		s.mustGQL(tok, `mutation($id: ID!, $i: Int!, $size: Int64!, $sum: String) {
			confirmChunk(uploadId: $id, chunkIndex: $i, size: $size, checksum: $sum) { uploadedChunks uploadedBytes percent } }`,
			map[string]any{"id": chunked.ID, "i": i, "size": ref.Size, "sum": crc32cOf(video[ref.Offset : ref.Offset+ref.Size])}, &out)
		if i == 2 && (out.ConfirmChunk.UploadedChunks != 3 || out.ConfirmChunk.Percent != 100) {
			t.Errorf("confirm: got %+v, want 3 chunks at 100%%", out.ConfirmChunk)
		}
	}

	mediaVideo := s.complete(tok, chunked.ID)
	mediaImage := s.complete(tok, single.ID)
	if again := s.complete(tok, chunked.ID); again.ID != mediaVideo.ID {
		t.Errorf("complete twice: got media %s then %s", mediaVideo.ID, again.ID)
	}
	if mediaVideo.FileSize != int64(len(video)) || mediaVideo.MediaType != "VIDEO" || mediaImage.MediaType != "IMAGE" {
		t.Errorf("media: got %+v and %+v", mediaVideo, mediaImage)
	}

	// The subscription ends by itself once both uploads are COMPLETED and
	// their media processed.
	final := map[string]progress{}
	last := map[string]int{}
	for p := range events {
		if p.Percent < last[p.UploadID] {
			t.Errorf("percent of %s went back from %d to %d", p.UploadID, last[p.UploadID], p.Percent)
		}
		last[p.UploadID] = p.Percent
		final[p.UploadID] = p
	}
	for _, id := range []string{single.ID, chunked.ID} {
		if p := final[id]; p.Status != "COMPLETED" || p.Percent != 100 || p.MediaStatus != "READY" {
			t.Errorf("subscriber's last event for %s: got %+v, want COMPLETED at 100 with media READY", id, p)
		}
	}
	// uploadProgress: COMPLETED, the media READY, then the end.
	var videoSeen []progress
	for p := range videoEvents {
		videoSeen = append(videoSeen, p)
	}
	if len(videoSeen) == 0 {
		t.Fatal("uploadProgress sent nothing")
	}
	if p := videoSeen[len(videoSeen)-1]; p.Status != "COMPLETED" || p.MediaID != mediaVideo.ID || p.MediaStatus != "READY" {
		t.Errorf("uploadProgress's last event: got %+v, want COMPLETED with media %s READY", p, mediaVideo.ID)
	}
	for _, p := range videoSeen[:len(videoSeen)-1] {
		if p.MediaStatus != "" && p.MediaStatus != "PROCESSING" {
			t.Errorf("uploadProgress before its last event: got media %s, want none or PROCESSING", p.MediaStatus)
		}
	}
	// myUploads carries on, and brings the processing result too.
	ready := map[string]bool{}
	for p := range mine {
		if p.MediaStatus == "READY" {
			ready[p.UploadID] = true
		}
		if ready[single.ID] && ready[chunked.ID] {
			break
		}
	}
	if !ready[single.ID] || !ready[chunked.ID] {
		t.Errorf("myUploads: media READY seen for %v, want both uploads", ready)
	}
	wsMine.stop("mine")
	for range mine { // until the server's complete
	}

	for _, d := range []struct {
		m    media
		data []byte
	}{{mediaVideo, video}, {mediaImage, image}} {
		resp, body := get(t, d.m.URL, nil)
		if resp.StatusCode != http.StatusOK || sha256hex(body) != sha256hex(d.data) {
			t.Errorf("download %s: got HTTP %d, %d bytes, sha256 %s; want %s", d.m.FileName, resp.StatusCode, len(body), sha256hex(body), sha256hex(d.data))
		}
	}
	resp, body := get(t, mediaVideo.URL, http.Header{"Range": {"bytes=5242870-5242889"}})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, video[5242870:5242890]) {
		t.Errorf("range request: got HTTP %d with %d bytes, want 206 with the 20 bytes", resp.StatusCode, len(body))
	}

	// Processing checks the declared SHA-256 and makes the media READY.
	var list struct {
		UserMedia struct {
			TotalCount int
			Edges      []struct{ Node media }
		}
	}
	eventually.Holds(t, "media READY", func() bool {
		s.mustGQL(tok, `{ userMedia(first: 10) { totalCount edges { node { id status contentHash } } } }`, nil, &list)
		for _, e := range list.UserMedia.Edges {
			if e.Node.Status != "READY" {
				return false
			}
		}
		return list.UserMedia.TotalCount == 2
	})
	if got := list.UserMedia.Edges[0].Node; got.ID != mediaImage.ID {
		t.Errorf("newest first: got %s first, want the image %s", got.ID, mediaImage.ID)
	}
	for _, e := range list.UserMedia.Edges {
		if e.Node.ID == mediaVideo.ID && (e.Node.ContentHash == nil || *e.Node.ContentHash != sha256hex(video)) {
			t.Errorf("video content hash: got %v, want %s", e.Node.ContentHash, sha256hex(video))
		}
	}
}

// collect reads a subscription's next messages until it completes.
func collect(ws *wsClient, id string) <-chan progress {
	out := make(chan progress, 1024)
	go func() {
		defer close(out)
		// A hang guard: a minute without a message of this subscription
		// (the server's pings do not count, so they cannot keep it open).
		const patience = 60 * time.Second
		idle := time.NewTimer(patience)
		defer idle.Stop()
		for {
			select {
			case m, ok := <-ws.msgs:
				if !ok {
					return
				}
				if m.ID != id {
					continue
				}
				idle.Reset(patience)
				switch m.Type {
				case "next":
					var p struct {
						Data map[string]progress `json:"data"`
					}
					if err := json.Unmarshal(m.Payload, &p); err != nil {
						ws.t.Errorf("decoding %s: %v", m.Payload, err)
						return
					}
					for _, v := range p.Data {
						out <- v
					}
				case "complete":
					return
				default:
					ws.t.Errorf("subscription %s: got %s %s", id, m.Type, m.Payload)
					return
				}
			case <-idle.C:
				ws.t.Errorf("subscription %s never completed", id)
				return
			}
		}
	}()
	return out
}
