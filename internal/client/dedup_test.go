package client_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/app"
	"github.com/spoolhq/spool/internal/app/apptest"
	"github.com/spoolhq/spool/internal/client"
	"github.com/spoolhq/spool/internal/eventually"
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

// A deduplicated upload (the server had the file's bytes) is done without
// a chunk sent or complete called. The stand-in is a spool from before
// userMedia took a contentHash filter: it refuses the look-up in the
// library as such a server does, and UploadFiles goes on to initBatch.
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
		op := "initBatch"
		if strings.Contains(string(body), "userMedia(") {
			op = "userMedia"
		}
		mu.Lock()
		calls = append(calls, r.Method+" "+r.URL.Path+" "+op)
		mu.Unlock()
		if r.URL.Path == "/graphql" && op == "userMedia" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnprocessableEntity)
			_, _ = io.WriteString(w, `{"errors":[{"message":"Field \"contentHashIn\" is not defined by type \"MediaFileWhereInput\".","extensions":{"code":"GRAPHQL_VALIDATION_FAILED"}}],"data":null}`)
			return
		}
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
	if want := []string{"POST /graphql userMedia", "POST /graphql initBatch"}; !slices.Equal(calls, want) || progress.sent != 0 {
		t.Errorf("requests: got %v and %d bytes sent, want %v and none", calls, progress.sent, want)
	}
}

// A look-up in the library that fails for another reason than an older
// server's (here RATE_LIMITED, or UNAUTHENTICATED) stops the upload before
// initBatch: going on would add the copy the look-up is there to prevent.
func TestLibraryLookupFailureStopsTheUpload(t *testing.T) {
	t.Parallel()
	p, _ := apptest.WriteFile(t, t.TempDir(), "p.png", apptest.PNG, 1000, 23)
	for _, code := range []string{"RATE_LIMITED", "UNAUTHENTICATED"} {
		var mu sync.Mutex
		var planned bool
		stub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			if strings.Contains(string(body), "initBatch(") {
				mu.Lock()
				planned = true
				mu.Unlock()
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"errors":[{"message":"no","extensions":{"code":"`+code+`"}}],"data":null}`)
		}))
		c := &client.Client{Server: stub.URL, Token: "t"}
		_, err := c.UploadFiles(context.Background(), []*client.File{openFile(t, p)}, client.UploadOptions{})
		stub.Close()
		if gqlErr, ok := errors.AsType[*client.GraphQLError](err); !ok || gqlErr.Code != code {
			t.Errorf("look-up answered %s: UploadFiles error %v, want that GraphQL error", code, err)
		}
		mu.Lock()
		if planned {
			t.Errorf("look-up answered %s: initBatch was called", code)
		}
		mu.Unlock()
	}
}

// finishOrder records, per file, whether Started came before Finished.
type finishOrder struct {
	mu       sync.Mutex
	started  map[int]bool
	finished map[int]client.Result
}

func (o *finishOrder) Hashed(int, int64)                  {}
func (o *finishOrder) Sent(int, int64)                    {}
func (o *finishOrder) Retrying(int, error, time.Duration) {}
func (o *finishOrder) Started(i int, _ client.Upload) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.started[i] = true
}
func (o *finishOrder) Finished(i int, r client.Result) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.finished[i] = r
}

// A file the caller's library holds, READY under the same name, is not
// planned again: UploadFiles finds it by its SHA-256 (paging past the
// copies of it that share its bytes under other names) and answers with
// that media, so uploading the same files again adds nothing to the
// library. The other files of the call go on as usual.
func TestUploadFindsFilesInLibrary(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, nil)
	dir := t.TempDir()
	earlier, earlierData := apptest.WriteFile(t, dir, "p.png", apptest.PNG, 2000, 5)
	fresh, freshData := apptest.WriteFile(t, dir, "q.png", apptest.PNG, 3000, 6)
	tok := s.Token(t, "alice")
	c := newClient(s, tok, newRecorder(t))
	first := uploadOne(t, c, earlier, earlierData, client.UploadOptions{}).Media
	eventually.Holds(t, "the first file READY", func() bool {
		page, err := c.UserMedia(context.Background(), client.MediaQuery{First: 1})
		if err != nil || len(page.Media) != 1 {
			return false
		}
		first = page.Media[0]
		return first.Status == "READY"
	})
	// 100 files with its bytes under other names, newer than it: it is
	// on the look-up's second page.
	in := openFile(t, earlier).Input
	in.SHA256 = first.ContentHash
	for group := range 20 { // apptest's batches hold 5 files
		var copies []client.FileInput
		for i := range 5 {
			cp := in
			cp.FileName, cp.Fingerprint = fmt.Sprintf("c%03d.png", group*5+i), ""
			copies = append(copies, cp)
		}
		if _, err := c.InitBatch(context.Background(), copies); err != nil {
			t.Fatal(err)
		}
	}

	rec := newRecorder(t)
	var initBatches []string
	var mu sync.Mutex
	rec.sawOperation = func(body []byte) {
		if strings.Contains(string(body), "initBatch(") {
			mu.Lock()
			initBatches = append(initBatches, string(body))
			mu.Unlock()
		}
	}
	seen := &finishOrder{started: map[int]bool{}, finished: map[int]client.Result{}}
	results, err := newClient(s, tok, rec).UploadFiles(context.Background(),
		[]*client.File{openFile(t, earlier), openFile(t, fresh)}, client.UploadOptions{Observer: seen})
	if err != nil {
		t.Fatal(err)
	}
	if r := results[0]; r.Err != nil || !r.InLibrary || !r.AlreadyUploaded() || r.Media.ID != first.ID || r.Upload.ID != "" {
		t.Errorf("the earlier file: got %+v, want media %s found in the library, no upload", r, first.ID)
	}
	if r := results[1]; r.Err != nil || r.InLibrary || r.AlreadyUploaded() || !bytes.Equal(apptest.Get(t, r.Media.URL), freshData) {
		t.Errorf("the fresh file: got %+v, want it uploaded", r)
	}
	if seen.started[0] || seen.finished[0].Media.ID != first.ID || !seen.started[1] || seen.finished[1].Err != nil {
		t.Errorf("observer: started %v, finished %v; want file 0 finished without a start, file 1 started and finished", seen.started, seen.finished)
	}
	if len(initBatches) != 1 || strings.Contains(initBatches[0], first.ContentHash) {
		t.Errorf("initBatch: got %q, want one call, for the fresh file alone", initBatches)
	}
	if got := rec.putChunks(); len(got) != 1 {
		t.Errorf("chunk PUTs: got %v, want the fresh file's one", got)
	}
	if page, err := c.UserMedia(context.Background(), client.MediaQuery{First: 1}); err != nil || page.TotalCount != 102 {
		t.Errorf("library: %d media (%v), want 102: the first, its 100 copies and the fresh file", page.TotalCount, err)
	}

	// One request a distinct SHA-256 (and a page more for the file's,
	// which 101 files share): two inputs of the same file are found
	// with one.
	var inputs []client.FileInput
	for i := range 8 {
		x := in
		x.SHA256 = fmt.Sprintf("%064x", i+1)
		inputs = append(inputs, x)
	}
	inputs = append(inputs, in, in)
	var lookups int
	rec.sawOperation = func(body []byte) {
		if strings.Contains(string(body), "userMedia(") {
			lookups++
		}
	}
	found, err := client.FindInLibrary(newClient(s, tok, rec), context.Background(), inputs)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 2 || found[8].ID != first.ID || found[9].ID != first.ID {
		t.Errorf("found: got %v, want files 8 and 9, as media %s", found, first.ID)
	}
	if lookups != 10 {
		t.Errorf("userMedia requests: got %d, want 10 (9 hashes, one of them 2 pages)", lookups)
	}
}

// A file whose earlier upload finished but is still being processed is
// found too, by the SHA-256 that upload declared: running the upload
// again right after it finished neither sends it again nor adds a copy.
// Processing is held by an ffprobe that waits for the test to let it go.
func TestUploadFindsFilesStillProcessing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	release := filepath.Join(dir, "release")
	ffprobe := filepath.Join(dir, "ffprobe")
	script := "#!/bin/sh\nwhile [ ! -e '" + release + "' ]; do sleep 0.05; done\nexit 1\n"
	if err := os.WriteFile(ffprobe, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	s := apptest.Start(t, func(c *app.Config) {
		c.DeriveMedia, c.Media.FFprobe = true, ffprobe
	})
	// Let processing go before the server stops (cleanups run last first).
	t.Cleanup(func() { _ = os.WriteFile(release, nil, 0o600) })
	video, data := apptest.WriteFile(t, dir, "v.mp4", apptest.MP4, 3000, 7)
	c := newClient(s, s.Token(t, "alice"), newRecorder(t))
	first := uploadOne(t, c, video, data, client.UploadOptions{}).Media

	rec := newRecorder(t)
	results, err := newClient(s, s.Token(t, "alice"), rec).UploadFiles(context.Background(),
		[]*client.File{openFile(t, video)}, client.UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r := results[0]; r.Err != nil || !r.InLibrary || r.Media.ID != first.ID || r.Media.Status != "PROCESSING" {
		t.Errorf("the file again: got %+v, want media %s, still PROCESSING, found in the library", r, first.ID)
	}
	if n := rec.op("initBatch"); n != 0 || len(rec.putChunks()) != 0 {
		t.Errorf("the file again: %d initBatch calls and chunk PUTs %v, want none", n, rec.putChunks())
	}
	if page, err := c.UserMedia(context.Background(), client.MediaQuery{First: 10}); err != nil || page.TotalCount != 1 {
		t.Errorf("library: %d media (%v), want the first alone", page.TotalCount, err)
	}
}
