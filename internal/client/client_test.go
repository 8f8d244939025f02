package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/app"
	"github.com/spoolhq/spool/internal/app/apptest"
	"github.com/spoolhq/spool/internal/client"
	"github.com/spoolhq/spool/internal/ratelimit"
)

// These tests run uploads against a real spool server. A recording
// transport between client and server counts what is sent and, where a
// test asks, fails a request the way a network or a server would.

// recorder is an http.RoundTripper that records chunk PUTs and GraphQL
// operations on their way to the server.
type recorder struct {
	base *http.Transport
	// intercept, if set, sees each chunk PUT before it is sent, with how
	// many PUTs of that chunk came before; a response or error it returns
	// is the answer instead of the server's.
	intercept func(req *http.Request, chunk, attempt int) (*http.Response, error)
	// answered, if set, sees each chunk's answer.
	answered func(chunk, status int)
	// sawOperation, if set, sees each GraphQL request's body.
	sawOperation func(body []byte)

	mu       sync.Mutex
	statuses map[int][]int  // per chunk, the status of each PUT (0: a transport error)
	ops      map[string]int // GraphQL mutations sent, by name
}

// newRecorder returns a recorder whose connections close when the test
// ends, before its server does: the server's shutdown waits seconds for a
// connection opened but never used.
func newRecorder(t *testing.T) *recorder {
	r := &recorder{base: http.DefaultTransport.(*http.Transport).Clone(), statuses: map[int][]int{}, ops: map[string]int{}}
	t.Cleanup(r.base.CloseIdleConnections)
	return r
}

// interceptFirstPUTOf has the first PUT of chunk answered by answer; its
// later PUTs, and every other chunk's, go to the server.
func (r *recorder) interceptFirstPUTOf(chunk int, answer func(req *http.Request) (*http.Response, error)) {
	r.intercept = func(req *http.Request, c, attempt int) (*http.Response, error) {
		if c != chunk || attempt > 0 {
			return nil, nil
		}
		return answer(req)
	}
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/graphql") {
		r.recordOperation(req)
		return r.base.RoundTrip(req)
	}
	chunk, err := strconv.Atoi(path.Base(req.URL.Path))
	if req.Method != http.MethodPut || err != nil {
		return r.base.RoundTrip(req)
	}
	r.mu.Lock()
	attempt := len(r.statuses[chunk])
	r.mu.Unlock()
	var resp *http.Response
	if r.intercept != nil {
		resp, err = r.intercept(req, chunk, attempt)
	}
	if resp == nil && err == nil {
		resp, err = r.base.RoundTrip(req)
	}
	status := 0
	if err == nil {
		status = resp.StatusCode
	}
	r.mu.Lock()
	r.statuses[chunk] = append(r.statuses[chunk], status)
	r.mu.Unlock()
	if r.answered != nil {
		r.answered(chunk, status)
	}
	return resp, err
}

// recordOperation counts the mutations a GraphQL request names.
func (r *recorder) recordOperation(req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	req.Body.Close()
	req.Body = io.NopCloser(bytes.NewReader(body))
	if r.sawOperation != nil {
		r.sawOperation(body)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, op := range []string{"initBatch", "requestChunkUrl", "retry", "complete"} {
		if bytes.Contains(body, []byte(op+"(")) {
			r.ops[op]++
		}
	}
}

// putChunks lists the chunks PUT, in index order, once per PUT.
func (r *recorder) putChunks() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var chunks []int
	for c, s := range r.statuses {
		for range s {
			chunks = append(chunks, c)
		}
	}
	slices.Sort(chunks)
	return chunks
}

func (r *recorder) statusesOf(chunk int) []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.statuses[chunk])
}

func (r *recorder) op(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ops[name]
}

// drain reads and closes a request's body, as a server would before
// answering.
func drain(req *http.Request) {
	_, _ = io.Copy(io.Discard, req.Body)
	req.Body.Close()
}

// answerInstead drains req and answers it with status, header (plus a
// JSON Content-Type) and body, in the server's place.
func answerInstead(req *http.Request, status int, header http.Header, body string) *http.Response {
	drain(req)
	if header == nil {
		header = http.Header{}
	}
	header.Set("Content-Type", "application/json")
	return &http.Response{StatusCode: status, Header: header, Body: io.NopCloser(strings.NewReader(body)), Request: req}
}

// startWithVideo starts a server and writes a 12 MiB video for it, sent
// as chunks of 5, 5 and 2 MiB; it returns the video's path and bytes.
func startWithVideo(t *testing.T, change func(*app.Config)) (*apptest.Server, string, []byte) {
	t.Helper()
	p, video := apptest.WriteFile(t, t.TempDir(), "v.mp4", apptest.MP4, 12<<20, 1)
	return apptest.Start(t, change), p, video
}

func newClient(s *apptest.Server, token string, rt http.RoundTripper) *client.Client {
	return &client.Client{Server: s.URL, Token: token, HTTP: &http.Client{Transport: rt}}
}

func openFile(t *testing.T, p string) *client.File {
	t.Helper()
	f, err := client.OpenFile(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// uploadOne uploads one file and fails the test unless it succeeds and
// its media serves the same bytes.
func uploadOne(t *testing.T, c *client.Client, p string, want []byte, opts client.UploadOptions) client.Result {
	t.Helper()
	results, err := c.UploadFiles(context.Background(), []*client.File{openFile(t, p)}, opts)
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	r := results[0]
	if r.Err != nil {
		t.Fatalf("upload of %s: %v", p, r.Err)
	}
	if got := apptest.Get(t, r.Media.URL); !bytes.Equal(got, want) {
		t.Fatalf("download of %s: got %d bytes, want the %d uploaded", p, len(got), len(want))
	}
	return r
}

func TestInterruptedUploadResumesWithTheMissingChunks(t *testing.T) {
	t.Parallel()
	s, p, video := startWithVideo(t, nil)
	tok := s.Token(t, "alice")

	// The first run is cut off (Ctrl-C) once the server has a chunk.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := newRecorder(t)
	var mu sync.Mutex
	var received []int
	first.answered = func(chunk, status int) {
		if status == http.StatusOK {
			mu.Lock()
			received = append(received, chunk)
			mu.Unlock()
			cancel()
		}
	}
	results, err := newClient(s, tok, first).UploadFiles(ctx, []*client.File{openFile(t, p)}, client.UploadOptions{Parallel: 1})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted upload: got %v, want context.Canceled", err)
	}
	if results[0].Err == nil {
		t.Fatal("interrupted upload: the file got no error")
	}
	if len(received) == 0 || len(received) == 3 {
		t.Fatalf("interrupted upload: the server received chunks %v, want some but not all", received)
	}

	// The second run, on the same file, sends only the others.
	again := newRecorder(t)
	r := uploadOne(t, newClient(s, tok, again), p, video, client.UploadOptions{Parallel: 1})
	if r.Upload.ID != results[0].Upload.ID {
		t.Errorf("second run: got upload %s, want the first run's %s resumed", r.Upload.ID, results[0].Upload.ID)
	}
	var missing []int
	for i := range 3 {
		if !slices.Contains(received, i) {
			missing = append(missing, i)
		}
	}
	if got := again.putChunks(); !slices.Equal(got, missing) {
		t.Errorf("second run PUT chunks %v, want only the missing %v", got, missing)
	}
}

// sentBytes is an Observer that adds up each file's bytes sent.
type sentBytes struct {
	mu      sync.Mutex
	resumed int64
	sent    int64
}

func (o *sentBytes) Started(_ int, up client.Upload) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.resumed += up.Progress.UploadedBytes
}

func (o *sentBytes) Sent(_ int, n int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.sent += n
}

func (o *sentBytes) Finished(int, client.Result) {}

func (o *sentBytes) Retrying(int, error, time.Duration) {}

func (o *sentBytes) Hashed(int, int64) {}

func TestFailedChunksAreRetried(t *testing.T) {
	t.Parallel()
	s, p, video := startWithVideo(t, nil)

	rec := newRecorder(t)
	rec.intercept = func(req *http.Request, chunk, attempt int) (*http.Response, error) {
		if attempt > 0 || chunk == 0 {
			return nil, nil
		}
		// The body is read before the failure, so progress must take
		// those bytes back.
		if chunk == 1 {
			drain(req)
			return nil, errors.New("connection reset by peer (test)")
		}
		return answerInstead(req, http.StatusServiceUnavailable, nil, `{"error":{"code":"STORAGE_UNAVAILABLE","message":"try again"}}`), nil
	}
	progress := &sentBytes{}
	uploadOne(t, newClient(s, s.Token(t, "alice"), rec), p, video, client.UploadOptions{Observer: progress})

	for chunk, want := range map[int][]int{0: {200}, 1: {0, 200}, 2: {503, 200}} {
		if got := rec.statusesOf(chunk); !slices.Equal(got, want) {
			t.Errorf("chunk %d: got answers %v, want %v", chunk, got, want)
		}
	}
	if progress.resumed != 0 || progress.sent != int64(len(video)) {
		t.Errorf("progress: got %d resumed + %d sent, want 0 + %d (failed attempts taken back)", progress.resumed, progress.sent, len(video))
	}
}

// A chunk that goes missing after it was acknowledged (here one that a
// proxy answered 200 without passing on; in life another client resuming
// the same upload, which invalidates the chunk while it sends it again)
// makes complete answer INCOMPLETE. The client then sends what retry
// lists and completes again; the command failed there, to be run again.
func TestIncompleteAtCompleteSendsTheMissingChunks(t *testing.T) {
	t.Parallel()
	s, p, video := startWithVideo(t, nil)

	rec := newRecorder(t)
	rec.interceptFirstPUTOf(1, func(req *http.Request) (*http.Response, error) {
		return answerInstead(req, http.StatusOK, nil, "{}"), nil
	})
	progress := &sentBytes{}
	uploadOne(t, newClient(s, s.Token(t, "alice"), rec), p, video, client.UploadOptions{Observer: progress})

	if got, want := rec.statusesOf(1), []int{200, 200}; !slices.Equal(got, want) {
		t.Errorf("chunk 1: got answers %v, want %v (lost, then sent again)", got, want)
	}
	if c, r := rec.op("complete"), rec.op("retry"); c != 2 || r != 1 {
		t.Errorf("got %d completes and %d retries, want 2 and 1", c, r)
	}
	if progress.sent != int64(len(video)) {
		t.Errorf("progress: %d bytes sent, want %d (the lost chunk's first sending taken back)", progress.sent, len(video))
	}
}

func TestRefusedChunkURLIsSignedAgain(t *testing.T) {
	t.Parallel()
	s, p, video := startWithVideo(t, nil)

	rec := newRecorder(t)
	rec.interceptFirstPUTOf(1, func(req *http.Request) (*http.Response, error) {
		// The server itself refuses a URL whose signature is bad, as it
		// refuses an expired one.
		bad := req.Clone(req.Context())
		q := bad.URL.Query()
		q.Set("sig", "AAAA"+q.Get("sig"))
		bad.URL.RawQuery = q.Encode()
		return rec.base.RoundTrip(bad)
	})
	uploadOne(t, newClient(s, s.Token(t, "alice"), rec), p, video, client.UploadOptions{})

	if got := rec.statusesOf(1); !slices.Equal(got, []int{403, 200}) {
		t.Errorf("chunk 1: got answers %v, want [403 200]", got)
	}
	if got := rec.op("requestChunkUrl"); got != 1 {
		t.Errorf("requestChunkUrl calls: got %d, want 1 (after the 403)", got)
	}
}

func TestChunksBeyondTheListedURLs(t *testing.T) {
	t.Parallel()
	s, p, video := startWithVideo(t, func(c *app.Config) { c.Upload.MaxChunkURLs = 1 })

	rec := newRecorder(t)
	uploadOne(t, newClient(s, s.Token(t, "alice"), rec), p, video, client.UploadOptions{})
	if got := rec.putChunks(); !slices.Equal(got, []int{0, 1, 2}) {
		t.Errorf("PUT chunks %v, want each of [0 1 2] once", got)
	}
	if got := rec.op("retry"); got != 1 {
		t.Errorf("retry calls: got %d, want 1 (initBatch listed 1 URL of 3)", got)
	}
}

func TestOneFileFailingLeavesTheOthers(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, nil)
	dir := t.TempDir()
	good, image := apptest.WriteFile(t, dir, "good.png", apptest.PNG, 100<<10, 5)
	bad, _ := apptest.WriteFile(t, dir, "bad.png", apptest.MP4, 100<<10, 6) // not a PNG inside

	rec := newRecorder(t)
	c := newClient(s, s.Token(t, "alice"), rec)
	results, err := c.UploadFiles(context.Background(), []*client.File{openFile(t, good), openFile(t, bad)}, client.UploadOptions{})
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	if results[0].Err != nil || !bytes.Equal(apptest.Get(t, results[0].Media.URL), image) {
		t.Errorf("good.png: got %v, want it uploaded", results[0].Err)
	}
	if !client.IsCode(results[1].Err, "TYPE_MISMATCH") {
		t.Errorf("bad.png: got %v, want TYPE_MISMATCH", results[1].Err)
	}
	if got := len(rec.putChunks()); got != 2 {
		t.Errorf("PUTs: got %d, want 2 (a refused chunk is not retried)", got)
	}
}

func TestServerErrorsAreTyped(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, func(c *app.Config) { c.Upload.DefaultQuota = 1 << 20 })
	p, _ := apptest.WriteFile(t, t.TempDir(), "v.mp4", apptest.MP4, 2<<20, 7)

	for _, c := range []struct {
		token, code string
	}{
		{"not-a-token", "UNAUTHENTICATED"},
		{s.Token(t, "alice"), "QUOTA_EXCEEDED"},
	} {
		_, err := newClient(s, c.token, newRecorder(t)).UploadFiles(context.Background(), []*client.File{openFile(t, p)}, client.UploadOptions{})
		var gqlErr *client.GraphQLError
		if !errors.As(err, &gqlErr) || gqlErr.Code != c.code || gqlErr.Message == "" {
			t.Errorf("got %v, want a GraphQLError with code %s and a message", err, c.code)
		}
	}
}

func TestOpenFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	png, _ := apptest.WriteFile(t, dir, "pic.png", apptest.PNG, 1000, 8)
	unknownExt, _ := apptest.WriteFile(t, dir, "clip.spoolvideo", apptest.MP4, 1000, 9)
	webm, _ := apptest.WriteFile(t, dir, "clip.WEBM", "\x1a\x45\xdf\xa3", 1000, 11)
	empty, _ := apptest.WriteFile(t, dir, "empty.png", "", 0, 10)

	for _, c := range []struct{ path, mimeType string }{
		{png, "image/png"},
		{unknownExt, "video/mp4"}, // sniffed
		{webm, "video/webm"},      // whatever the system's tables say
	} {
		f := openFile(t, c.path)
		if in := f.Input; in.MimeType != c.mimeType || in.Size != 1000 || in.FileName != filepath.Base(c.path) {
			t.Errorf("%s: got %+v, want %s, 1000 bytes, its base name", c.path, in, c.mimeType)
		}
	}
	for _, c := range []struct{ path, want string }{
		{filepath.Join(dir, "missing.png"), "no such file"},
		{dir, "is a directory"},
		{empty, "is empty"},
	} {
		if _, err := client.OpenFile(c.path); err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.path) {
			t.Errorf("OpenFile(%s): got %v, want an error naming it and saying %q", c.path, err, c.want)
		}
	}

	// The fingerprint holds while the file is the same, and changes when
	// it is rewritten.
	before := openFile(t, png).Input.Fingerprint
	if again := openFile(t, png).Input.Fingerprint; again != before {
		t.Errorf("fingerprint of the same file: got %s, then %s", before, again)
	}
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(png, later, later); err != nil {
		t.Fatal(err)
	}
	if after := openFile(t, png).Input.Fingerprint; after == before {
		t.Errorf("fingerprint after the file changed: still %s", after)
	}
}

// More files than the server takes in one batch are planned in as many
// batches as it takes, and every file still comes back in order.
func TestMoreFilesThanOneBatch(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, func(c *app.Config) { c.Upload.MaxBatchFiles = 3 })
	dir := t.TempDir()
	var files []*client.File
	var want [][]byte
	for i := range 7 {
		p, b := apptest.WriteFile(t, dir, fmt.Sprintf("p%d.png", i), apptest.PNG, 1000+i, uint64(i))
		files = append(files, openFile(t, p))
		want = append(want, b)
	}
	rec := newRecorder(t)
	results, err := newClient(s, s.Token(t, "alice"), rec).UploadFiles(context.Background(), files, client.UploadOptions{})
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	for i, r := range results {
		if r.Err != nil {
			t.Fatalf("file %d: %v", i, r.Err)
		}
		if got := apptest.Get(t, r.Media.URL); !bytes.Equal(got, want[i]) {
			t.Errorf("file %d: downloaded %d bytes, want the %d uploaded", i, len(got), len(want[i]))
		}
	}
	// 7 refused, then groups of half that: 3 + 3 + 1.
	if got := rec.op("initBatch"); got != 4 {
		t.Errorf("initBatch calls = %d, want 4 (one refused, three planned)", got)
	}
}

// A client held back by the server's limits (RATE_LIMITED on mutations,
// 429 on chunk PUTs over the user's budget or the upload's parallel
// bound) waits and tries again, and every file arrives.
func TestRateLimitedUploadsFinish(t *testing.T) {
	t.Parallel()
	slow := ratelimit.Rate{Events: 2, Per: time.Second, Burst: 1}
	s := apptest.Start(t, func(c *app.Config) {
		c.Limits.Mutations, c.Limits.DataPlane, c.Limits.MaxParallelChunksPerUpload = slow, slow, 1
	})
	dir := t.TempDir()
	var files []*client.File
	var want [][]byte
	for i := range 3 {
		p, b := apptest.WriteFile(t, dir, fmt.Sprintf("%d.png", i), apptest.PNG, 100<<10, uint64(20+i))
		files, want = append(files, openFile(t, p)), append(want, b)
	}
	p, b := apptest.WriteFile(t, dir, "v.mp4", apptest.MP4, 11<<20, 23) // 3 chunks
	files, want = append(files, openFile(t, p)), append(want, b)

	rec := newRecorder(t)
	seen := &retries{errs: map[int][]error{}}
	results, err := newClient(s, s.Token(t, "alice"), rec).UploadFiles(context.Background(), files, client.UploadOptions{Parallel: 4, Observer: seen})
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	for i, r := range results {
		if r.Err != nil || !bytes.Equal(apptest.Get(t, r.Media.URL), want[i]) {
			t.Errorf("file %d: got %v, want it uploaded intact", i, r.Err)
		}
	}
	// Each refusal's wait is the one the server asked for (Retry-After,
	// extensions.retryAfter), not the backoff's own 0.25–0.75 s.
	seen.mu.Lock()
	asked := 0
	for err, wait := range seen.waits {
		var after time.Duration
		if h, ok := errors.AsType[*client.HTTPError](err); ok {
			after = h.RetryAfter
		} else if g, ok := errors.AsType[*client.GraphQLError](err); ok {
			after = g.RetryAfter
		}
		if after > 0 {
			asked++
			if wait != after {
				t.Errorf("retrying %v: waited %s, want the %s asked for", err, wait, after)
			}
		}
	}
	seen.mu.Unlock()
	if asked == 0 {
		t.Error("no refusal asked for a wait: Retry-After was not read")
	}
	refused := 0
	rec.mu.Lock()
	for _, statuses := range rec.statuses {
		for _, status := range statuses {
			if status == http.StatusTooManyRequests {
				refused++
			}
		}
	}
	rec.mu.Unlock()
	if refused == 0 {
		t.Error("no chunk PUT was refused: the test did not reach the limits")
	}
}
