package client_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/spoolhq/spool/internal/app/apptest"
	"github.com/spoolhq/spool/internal/client"
)

func TestHash(t *testing.T) {
	t.Parallel()
	// Larger than Hash's buffer, and not a multiple of it.
	p, data := apptest.WriteFile(t, t.TempDir(), "v.mp4", apptest.MP4, 3<<20+5, 21)
	f := openFile(t, p)
	var read int64
	var pieces int
	if err := f.Hash(context.Background(), func(n int64) { read += n; pieces++ }); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if want := hex.EncodeToString(sum[:]); f.Input.SHA256 != want {
		t.Errorf("SHA256: got %s, want %s", f.Input.SHA256, want)
	}
	if read != int64(len(data)) || pieces < 4 {
		t.Errorf("progress: got %d bytes in %d pieces, want %d in at least 4", read, pieces, len(data))
	}

	ctx, cancel := context.WithCancel(context.Background())
	g := openFile(t, p)
	err := g.Hash(ctx, func(int64) { cancel() })
	if !errors.Is(err, context.Canceled) || g.Input.SHA256 != "" {
		t.Errorf("Hash cut short: got %v and SHA256 %q, want context.Canceled and none", err, g.Input.SHA256)
	}
}

// hashedBytes is sentBytes that also adds up the bytes read to hash.
type hashedBytes struct {
	sentBytes
	mu     sync.Mutex
	hashed int64
}

func (o *hashedBytes) Hashed(_ int, n int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.hashed += n
}

// An upload tells initBatch each file's SHA-256, which the server checks
// once the file is assembled.
func TestUploadSendsSHA256(t *testing.T) {
	t.Parallel()
	s, p, video := startWithVideo(t, nil)
	rec := newRecorder(t)
	var mu sync.Mutex
	var inits []string
	rec.sawOperation = func(body []byte) {
		if strings.Contains(string(body), "initBatch(") {
			mu.Lock()
			inits = append(inits, string(body))
			mu.Unlock()
		}
	}
	progress := &hashedBytes{}
	uploadOne(t, newClient(s, s.Token(t, "alice"), rec), p, video, client.UploadOptions{Observer: progress})

	sum := sha256.Sum256(video)
	if len(inits) != 1 {
		t.Fatalf("initBatch calls: got %d, want 1", len(inits))
	}
	var req struct {
		Variables struct {
			In struct{ Files []client.FileInput } `json:"in"`
		} `json:"variables"`
	}
	if err := json.Unmarshal([]byte(inits[0]), &req); err != nil {
		t.Fatal(err)
	}
	if files := req.Variables.In.Files; len(files) != 1 || files[0].SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("initBatch files: got %+v, want one with sha256 %x", files, sum)
	}
	if progress.hashed != int64(len(video)) {
		t.Errorf("observer: %d bytes hashed, want %d", progress.hashed, len(video))
	}
}

// A deduplicated upload (the server had the file) is done without a chunk
// sent or complete called. The server answers deduplicated only once the
// dedup of issue 9 is in; until then this spool stand-in answers as it
// will (schema.graphqls: UploadSession.deduplicated).
func TestDeduplicatedUploadSendsNothing(t *testing.T) {
	t.Parallel()
	p, data := apptest.WriteFile(t, t.TempDir(), "p.png", apptest.PNG, 1000, 22)
	sum := sha256.Sum256(data)
	media := client.MediaFile{ID: "med_earlier", FileName: "p.png", MimeType: "image/png", MediaType: "IMAGE",
		FileSize: int64(len(data)), Status: "READY", URL: "http://spool.test/media/med_earlier/p.png"}
	var mu sync.Mutex
	var calls []string
	stub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		calls = append(calls, r.Method+" "+r.URL.Path)
		mu.Unlock()
		if r.URL.Path != "/graphql" || !strings.Contains(string(body), "initBatch(") {
			http.Error(w, "not expected", http.StatusTeapot)
			return
		}
		if !strings.Contains(string(body), hex.EncodeToString(sum[:])) {
			t.Errorf("initBatch: got %s, want the file's sha256", body)
		}
		up := client.Upload{ID: "upl_1", FileName: "p.png", MimeType: "image/png", TotalSize: int64(len(data)),
			Strategy: "SINGLE", ChunkSize: int64(len(data)), TotalChunks: 1, Status: "COMPLETED", ChunkURLs: []client.ChunkURL{},
			Progress:     client.Progress{Status: "COMPLETED", UploadedBytes: int64(len(data)), TotalBytes: int64(len(data)), UploadedChunks: 1, TotalChunks: 1},
			Deduplicated: true, Media: &media}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"initBatch": client.Batch{ID: "bat_1", Uploads: []client.Upload{up}}}})
	}))
	t.Cleanup(stub.Close)

	progress := &hashedBytes{}
	c := &client.Client{Server: stub.URL, Token: "t"}
	results, err := c.UploadFiles(context.Background(), []*client.File{openFile(t, p)}, client.UploadOptions{Observer: progress})
	if err != nil {
		t.Fatal(err)
	}
	r := results[0]
	if r.Err != nil || !r.AlreadyUploaded() || r.Media.ID != media.ID {
		t.Errorf("result: got %+v, want the earlier media, already uploaded", r)
	}
	if len(calls) != 1 || progress.sent != 0 {
		t.Errorf("requests: got %v and %d bytes sent, want only initBatch", calls, progress.sent)
	}
}
