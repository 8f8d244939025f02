package upload_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/uploadchunk"
	"github.com/spoolhq/spool/internal/database"
	"github.com/spoolhq/spool/internal/database/dbtest"
	"github.com/spoolhq/spool/internal/upload"
)

// file11 is an 11 MiB video: chunks of 5, 5 and 1 MiB.
var file11 = mp4Bytes(11*MiB, 2)

func checkCounts(t *testing.T, p upload.Progress, bytes int64, chunks int, failed []int) {
	t.Helper()
	if p.UploadedBytes != bytes || p.UploadedChunks != chunks {
		t.Errorf("uploaded = %d bytes, %d chunks; want %d bytes, %d chunks", p.UploadedBytes, p.UploadedChunks, bytes, chunks)
	}
	if !slices.Equal(p.FailedChunks, failed) {
		t.Errorf("failed chunks = %v, want %v", p.FailedChunks, failed)
	}
}

// checkRowCounts fails unless the counts a session keeps equal what its
// chunk rows say (invariant 1).
func checkRowCounts(t *testing.T, db *ent.Client, sessionID string) {
	t.Helper()
	ctx := context.Background()
	sess, err := db.UploadSession.Get(ctx, sessionID)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := db.UploadChunk.Query().Where(uploadchunk.SessionID(sessionID)).All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var received, failed int
	var bytes int64
	for _, r := range rows {
		if r.State == uploadchunk.StateRECEIVED {
			received++
			bytes += r.Size
		} else {
			failed++
		}
	}
	if sess.ReceivedChunks != received || sess.ReceivedBytes != bytes || sess.FailedChunks != failed {
		t.Errorf("upload %s counts %d received (%d bytes), %d failed; its rows say %d (%d bytes), %d",
			sessionID, sess.ReceivedChunks, sess.ReceivedBytes, sess.FailedChunks, received, bytes, failed)
	}
}

// onEngines runs test on a Service on SQLite and on one on PostgreSQL
// (the receipt's write differs: groupcommit.go, buildReceipt), each with
// its files on local disk.
func onEngines(t *testing.T, test func(t *testing.T, e *testEnv)) {
	onEnginesClocked(t, func() *fakeClock { return nil }, test)
}

// onEnginesClocked is onEngines with each Service's clock from clock (nil:
// the real one).
func onEnginesClocked(t *testing.T, clock func() *fakeClock, test func(t *testing.T, e *testEnv)) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			dbURL, dir := "", t.TempDir()
			if engine == "postgres" {
				dbURL = dbtest.Postgres(t)
			}
			e, err := newEnvOn(t, dbURL, filepath.Join(dir, database.SQLiteFile), filepath.Join(dir, "files"), clock(), testConfig())
			if err != nil {
				t.Fatal(err)
			}
			test(t, e)
		})
	}
}

func TestResendAndConfirmNeverDoubleCount(t *testing.T) {
	t.Parallel()
	onEngines(t, testResendAndConfirmNeverDoubleCount)
}

func testResendAndConfirmNeverDoubleCount(t *testing.T, e *testEnv) {
	owner := e.user(t, "alice")
	sess := e.initOne(t, owner, mp4Spec("a.mp4", file11))
	if sess.Strategy != upload.StrategyChunked || sess.TotalChunks != 3 {
		t.Fatalf("plan = %s with %d chunks, want CHUNKED with 3", sess.Strategy, sess.TotalChunks)
	}
	ctx := context.Background()

	e.mustSend(t, sess.ID, 0, file11)
	p := e.mustSend(t, sess.ID, 2, file11)
	checkCounts(t, p, 6*MiB, 2, []int{})

	for i := range 3 {
		p = e.mustSend(t, sess.ID, 2, file11)
		checkCounts(t, p, 6*MiB, 2, []int{})
		if i == 0 {
			continue
		}
		for _, idx := range []int{0, 2} {
			size := int64(len(e.chunk(file11, idx)))
			c, err := e.svc.ConfirmChunk(ctx, owner, sess.ID, idx, size, nil)
			if err != nil {
				t.Fatalf("ConfirmChunk(%d): %v", idx, err)
			}
			checkCounts(t, c, 6*MiB, 2, []int{})
		}
	}
	s, err := e.svc.Session(ctx, owner, sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	checkCounts(t, s.Progress, 6*MiB, 2, []int{})
	if got, want := s.ReceivedChunks(), []int{0, 2}; !slices.Equal(got, want) {
		t.Errorf("received chunks = %v, want %v", got, want)
	}
	// The row was updated in place, not duplicated.
	rows, err := e.db.UploadChunk.Query().Where(uploadchunk.SessionID(sess.ID), uploadchunk.Index(2)).All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Attempts != 4 {
		t.Errorf("chunk 2 rows = %d (attempts %d), want 1 row with 4 attempts", len(rows), rows[0].Attempts)
	}
	checkRowCounts(t, e.db, sess.ID)
}

func TestConfirmChunkChecks(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	owner := e.user(t, "alice")
	sess := e.initOne(t, owner, mp4Spec("a.mp4", file11))
	ctx := context.Background()
	chunk2 := e.chunk(file11, 2)
	sha := "sha256:" + sha256Hex(chunk2)
	if _, err := e.svc.ReceiveChunk(ctx, sess.ID, 2, bytes.NewReader(chunk2), upload.ReceiveOptions{
		ContentLength: int64(len(chunk2)), Expect: []upload.Digest{mustDigest(t, sha)},
	}); err != nil {
		t.Fatalf("ReceiveChunk with sha256: %v", err)
	}
	e.mustSend(t, sess.ID, 1, file11)
	crc := crc32cOf(e.chunk(file11, 1))
	wrongSHA := "sha256:" + strings.Repeat("0", 64)

	tests := []struct {
		name     string
		index    int
		size     int64
		checksum string
		want     upload.Code
	}{
		{"received", 2, 1 * MiB, "", ""},
		{"received, right sha256", 2, 1 * MiB, sha, ""},
		{"received, right crc32c", 1, 5 * MiB, crc, ""},
		{"wrong sha256", 2, 1 * MiB, wrongSHA, upload.CodeChecksumMismatch},
		{"wrong crc32c", 1, 5 * MiB, "crc32c:00000000", upload.CodeChecksumMismatch},
		{"sha256 never recorded", 1, 5 * MiB, "sha256:" + sha256Hex(e.chunk(file11, 1)), upload.CodeBadUserInput},
		{"malformed checksum", 2, 1 * MiB, "sha256:xyz", upload.CodeBadUserInput},
		{"wrong size", 2, 5 * MiB, "", upload.CodeBadUserInput},
		{"never sent", 0, 5 * MiB, "", upload.CodeChunkMissing},
		{"index past the end", 3, 1 * MiB, "", upload.CodeInvalidChunk},
		{"negative index", -1, 5 * MiB, "", upload.CodeInvalidChunk},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cs *string
			if tt.checksum != "" {
				cs = &tt.checksum
			}
			p, err := e.svc.ConfirmChunk(ctx, owner, sess.ID, tt.index, tt.size, cs)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("ConfirmChunk = %v, want success", err)
				}
				checkCounts(t, p, 6*MiB, 2, []int{})
				return
			}
			wantCode(t, err, tt.want)
		})
	}
}

// TestFailedResend: a re-send that overwrote bytes of a received chunk
// and then broke off leaves the chunk FAILED; one refused before a byte
// was written leaves the earlier copy RECEIVED.
func TestFailedResend(t *testing.T) {
	t.Parallel()
	onEngines(t, testFailedResend)
}

func testFailedResend(t *testing.T, e *testEnv) {
	owner := e.user(t, "alice")
	sess := e.initOne(t, owner, mp4Spec("a.mp4", file11))
	ctx := context.Background()
	e.sendAll(t, sess, file11)

	// Chunk 1 again, with no declared length and half the body.
	half := e.chunk(file11, 1)[:5*MiB/2]
	p, err := e.svc.ReceiveChunk(ctx, sess.ID, 1, bytes.NewReader(half), upload.ReceiveOptions{ContentLength: -1})
	wantCode(t, err, upload.CodeChunkTooSmall)
	checkCounts(t, p, 6*MiB, 2, []int{1})
	_, err = e.svc.ConfirmChunk(ctx, owner, sess.ID, 1, 5*MiB, nil)
	wantCode(t, err, upload.CodeChunkMissing)
	_, err = e.svc.Complete(ctx, owner, sess.ID)
	wantCode(t, err, upload.CodeIncomplete)
	urls, err := e.svc.Retry(ctx, owner, sess.ID)
	if err != nil {
		t.Fatalf("Retry: %v", err)
	}
	if len(urls) != 1 || urls[0].ChunkIndex != 1 || urls[0].Offset != 5*MiB || urls[0].Size != 5*MiB {
		t.Fatalf("Retry = %+v, want one URL for chunk 1 at 5 MiB, 5 MiB long", urls)
	}

	// Chunk 2 again, refused by its declared length: nothing written.
	staging := e.stagingPath(t, sess.ID)
	wrong := bytes.Repeat([]byte{0xAA}, int(1*MiB+1))
	for _, cl := range []int64{1*MiB + 1, 1*MiB - 1} {
		p, err = e.svc.ReceiveChunk(ctx, sess.ID, 2, bytes.NewReader(wrong[:cl]), upload.ReceiveOptions{ContentLength: cl})
		if cl > 1*MiB {
			wantCode(t, err, upload.CodeChunkTooLarge)
		} else {
			wantCode(t, err, upload.CodeChunkTooSmall)
		}
		checkCounts(t, p, 6*MiB, 2, []int{1})
	}
	checkRowCounts(t, e.db, sess.ID)
	if _, err := e.svc.ConfirmChunk(ctx, owner, sess.ID, 2, 1*MiB, nil); err != nil {
		t.Fatalf("ConfirmChunk(2) after a refused re-send = %v, want success", err)
	}
	onDisk, err := os.ReadFile(staging)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(onDisk[10*MiB:], e.chunk(file11, 2)) {
		t.Fatalf("chunk 2's bytes changed on disk after a re-send refused before writing")
	}

	// Chunk 2 again, longer than declared-unknown: the body overflows.
	p, err = e.svc.ReceiveChunk(ctx, sess.ID, 2, bytes.NewReader(wrong), upload.ReceiveOptions{ContentLength: -1})
	wantCode(t, err, upload.CodeChunkTooLarge)
	checkCounts(t, p, 5*MiB, 1, []int{1, 2})

	// Sending both again repairs the upload, and the file is exact.
	e.mustSend(t, sess.ID, 1, file11)
	p = e.mustSend(t, sess.ID, 2, file11)
	checkCounts(t, p, 11*MiB, 3, []int{})
	m, err := e.svc.Complete(ctx, owner, sess.ID)
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if got := readMedia(t, e, m.ID); !bytes.Equal(got, file11) {
		t.Fatalf("completed file differs from what was sent (%d bytes, want %d)", len(got), len(file11))
	}
}

func TestChecksumMismatchFailsChunk(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	owner := e.user(t, "alice")
	sess := e.initOne(t, owner, mp4Spec("a.mp4", file11))
	ctx := context.Background()
	c := e.chunk(file11, 1)
	for _, d := range []string{"crc32c:00000000", "md5:" + strings.Repeat("0", 32), "sha256:" + strings.Repeat("1", 64)} {
		p, err := e.svc.ReceiveChunk(ctx, sess.ID, 1, bytes.NewReader(c), upload.ReceiveOptions{
			ContentLength: int64(len(c)), Expect: []upload.Digest{mustDigest(t, d)},
		})
		wantCode(t, err, upload.CodeChecksumMismatch)
		checkCounts(t, p, 0, 0, []int{1})
	}
	p, err := e.svc.ReceiveChunk(ctx, sess.ID, 1, bytes.NewReader(c), upload.ReceiveOptions{
		ContentLength: int64(len(c)), Expect: []upload.Digest{mustDigest(t, crc32cOf(c))},
	})
	if err != nil {
		t.Fatalf("ReceiveChunk with the right crc32c: %v", err)
	}
	checkCounts(t, p, 5*MiB, 1, []int{})
}

func TestReceiveRange(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	owner := e.user(t, "alice")
	sess := e.initOne(t, owner, mp4Spec("a.mp4", file11))
	ctx := context.Background()
	total := int64(len(file11))
	tests := []struct {
		name               string
		first, last, total int64
		want               upload.Code
	}{
		{"chunk 1", 5 * MiB, 10*MiB - 1, total, ""},
		{"last, short chunk", 10 * MiB, total - 1, total, ""},
		{"unknown total", 0, 5*MiB - 1, -1, ""},
		{"wrong total", 0, 5*MiB - 1, total + 1, upload.CodeInvalidChunk},
		{"not chunk aligned", 1, 5 * MiB, total, upload.CodeInvalidChunk},
		{"two chunks at once", 0, 10*MiB - 1, total, upload.CodeInvalidChunk},
		{"past the end", 15 * MiB, 20*MiB - 1, total, upload.CodeInvalidChunk},
		{"negative start", -1, 5*MiB - 2, total, upload.CodeInvalidChunk},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body []byte
			if tt.first >= 0 && tt.last < total && tt.last >= tt.first {
				body = file11[tt.first : tt.last+1]
			}
			_, err := e.svc.ReceiveRange(ctx, owner, sess.ID, tt.first, tt.last, tt.total, bytes.NewReader(body),
				upload.ReceiveOptions{ContentLength: int64(len(body))})
			if tt.want == "" {
				if err != nil {
					t.Fatalf("ReceiveRange = %v, want success", err)
				}
				return
			}
			wantCode(t, err, tt.want)
		})
	}
	s, err := e.svc.Session(ctx, owner, sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	checkCounts(t, s.Progress, 11*MiB, 3, []int{})
}

// TestPercentNeverDecreases follows every event published for an upload
// through sends, a failure that loses a chunk, and completion.
func TestPercentNeverDecreases(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	owner := e.user(t, "alice")
	sess := e.initOne(t, owner, mp4Spec("a.mp4", file11))
	ctx := context.Background()

	e.mustSend(t, sess.ID, 0, file11)
	e.mustSend(t, sess.ID, 1, file11)
	high := e.mustSend(t, sess.ID, 2, file11).Percent
	if high != 100 {
		t.Fatalf("percent with every chunk = %d, want 100", high)
	}
	half := e.chunk(file11, 0)[:1*MiB]
	p, err := e.svc.ReceiveChunk(ctx, sess.ID, 0, bytes.NewReader(half), upload.ReceiveOptions{ContentLength: -1})
	wantCode(t, err, upload.CodeChunkTooSmall)
	if p.Percent != high || p.UploadedBytes != 6*MiB {
		t.Fatalf("after losing chunk 0: percent %d, uploaded %d; want %d (never backwards), %d", p.Percent, p.UploadedBytes, high, 6*MiB)
	}
	s, err := e.svc.Session(ctx, owner, sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	if s.Progress.Percent != high {
		t.Fatalf("Session percent = %d, want %d", s.Progress.Percent, high)
	}
	checkRowCounts(t, e.db, sess.ID)
	e.mustSend(t, sess.ID, 0, file11)
	if _, err := e.svc.Complete(ctx, owner, sess.ID); err != nil {
		t.Fatal(err)
	}

	events := e.broker.eventsOf(sess.ID)
	if len(events) < 7 {
		t.Fatalf("got %d events, want at least 7 (init, 4 chunks, a failure, assembling, completed)", len(events))
	}
	for i := 1; i < len(events); i++ {
		prev, cur := events[i-1], events[i]
		if cur.Percent < prev.Percent {
			t.Errorf("event %d: percent %d after %d", i, cur.Percent, prev.Percent)
		}
		if cur.Version < prev.Version {
			t.Errorf("event %d: version %d after %d", i, cur.Version, prev.Version)
		}
	}
	if last := events[len(events)-1]; last.Status != upload.StatusCompleted || last.Percent != 100 {
		t.Errorf("last event = %s at %d%%, want COMPLETED at 100%%", last.Status, last.Percent)
	}
}

func TestCompleteListsMissingChunks(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	owner := e.user(t, "alice")
	sess := e.initOne(t, owner, mp4Spec("a.mp4", file11))
	e.mustSend(t, sess.ID, 0, file11)
	e.mustSend(t, sess.ID, 2, file11)
	_, err := e.svc.Complete(context.Background(), owner, sess.ID)
	wantCode(t, err, upload.CodeIncomplete)
	if msg, want := upload.ErrorMessage(err), "missing 1 of 3 chunks: [1]"; !strings.Contains(msg, want) {
		t.Errorf("message = %q, want it to contain %q", msg, want)
	}
	if n := e.mediaCount(t, sess.ID); n != 0 {
		t.Errorf("media files after an incomplete Complete = %d, want 0", n)
	}
}

func TestCompleteIsIdempotent(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	owner := e.user(t, "alice")
	sess := e.initOne(t, owner, mp4Spec("a.mp4", file11))
	e.sendAll(t, sess, file11)
	ctx := context.Background()
	first, err := e.svc.Complete(ctx, owner, sess.ID)
	if err != nil {
		t.Fatalf("first Complete: %v", err)
	}
	second, err := e.svc.Complete(ctx, owner, sess.ID)
	if err != nil {
		t.Fatalf("second Complete: %v", err)
	}
	if first.ID != second.ID {
		t.Errorf("second Complete returned media %s, want %s", second.ID, first.ID)
	}
	if n := e.mediaCount(t, sess.ID); n != 1 {
		t.Errorf("media files = %d, want 1", n)
	}
	if first.FileSize != int64(len(file11)) || first.MimeType != "video/mp4" {
		t.Errorf("media = %d bytes of %s, want %d of video/mp4", first.FileSize, first.MimeType, len(file11))
	}
}

func TestConcurrentComplete(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	owner := e.user(t, "alice")
	sess := e.initOne(t, owner, mp4Spec("a.mp4", file11))
	e.sendAll(t, sess, file11)

	const callers = 8
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		ids   = make([]string, callers)
		errs  = make([]error, callers)
	)
	for i := range callers {
		wg.Go(func() {
			<-start
			m, err := e.svc.Complete(context.Background(), owner, sess.ID)
			errs[i] = err
			if err == nil {
				ids[i] = m.ID
			}
		})
	}
	close(start)
	wg.Wait()
	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("Complete #%d: %v", i, errs[i])
		}
		if ids[i] != ids[0] {
			t.Errorf("Complete #%d returned media %s, want %s like #0", i, ids[i], ids[0])
		}
	}
	if n := e.mediaCount(t, sess.ID); n != 1 {
		t.Errorf("media files = %d, want exactly 1", n)
	}
	if st := e.stored(t, sess.ID).Status; st != upload.StatusCompleted {
		t.Errorf("status = %s, want COMPLETED", st)
	}
	if got := readMedia(t, e, ids[0]); !bytes.Equal(got, file11) {
		t.Errorf("completed file differs from what was sent")
	}
}

// TestConcurrentReceives: the same chunk arriving many times at once is
// counted once, and different chunks arriving together all count.
func TestConcurrentReceives(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	owner := e.user(t, "alice")
	sess := e.initOne(t, owner, mp4Spec("a.mp4", file11))

	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 8 {
		wg.Go(func() {
			if _, err := e.send(sess.ID, 1, file11); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	for _, i := range []int{0, 2, 0, 2} {
		wg.Go(func() {
			if _, err := e.send(sess.ID, i, file11); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent ReceiveChunk: %v", err)
	}

	s, err := e.svc.Session(context.Background(), owner, sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	checkCounts(t, s.Progress, 11*MiB, 3, []int{})
	checkRowCounts(t, e.db, sess.ID)
	if s.Progress.Percent != 100 {
		t.Errorf("percent = %d, want 100", s.Progress.Percent)
	}
	m, err := e.svc.Complete(context.Background(), owner, sess.ID)
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if got := readMedia(t, e, m.ID); !bytes.Equal(got, file11) {
		t.Errorf("completed file differs from what was sent")
	}
}

// TestBrokenBody: a body that fails, even after its last byte, is the
// client's failure (the chunk is FAILED and can be sent again), never
// reported as storage being unavailable.
func TestBrokenBody(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	owner := e.user(t, "alice")
	sess := e.initOne(t, owner, mp4Spec("a.mp4", file11))
	c := e.chunk(file11, 1)
	errHangUp := errors.New("connection reset by peer")
	for _, sent := range []int{0, int(1 * MiB), len(c)} {
		body := io.MultiReader(bytes.NewReader(c[:sent]), iotest.ErrReader(errHangUp))
		p, err := e.svc.ReceiveChunk(context.Background(), sess.ID, 1, body, upload.ReceiveOptions{ContentLength: -1})
		wantCode(t, err, upload.CodeChunkTooSmall)
		checkCounts(t, p, 0, 0, []int{1})
	}
	p := e.mustSend(t, sess.ID, 1, file11)
	checkCounts(t, p, 5*MiB, 1, []int{})
	checkRowCounts(t, e.db, sess.ID)
}
