package upload_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"entgo.io/ent/dialect"
	_ "modernc.org/sqlite"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/mediafile"
	"github.com/spoolhq/spool/ent/uploadbatch"
	"github.com/spoolhq/spool/ent/uploadsession"
	"github.com/spoolhq/spool/internal/database"
	"github.com/spoolhq/spool/internal/httpapi"
	"github.com/spoolhq/spool/internal/jobs"
	"github.com/spoolhq/spool/internal/progress"
	"github.com/spoolhq/spool/internal/signing"
	"github.com/spoolhq/spool/internal/storage/gcs"
	"github.com/spoolhq/spool/internal/storage/localfs"
	"github.com/spoolhq/spool/internal/upload"
)

const (
	KiB = upload.KiB
	MiB = upload.MiB
)

// fakeClock is the service's clock in tests: it only moves when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// recordingBroker is the in-process hub, keeping a copy of every event
// published so tests can check their order.
type recordingBroker struct {
	*progress.Hub
	mu     sync.Mutex
	events []upload.Progress
	// beforeSubscribe, when set, runs once at the start of the next
	// Subscribe, before the feed is registered.
	beforeSubscribe func()
	// onPublish, when set, is given every event before it is kept, in
	// the publisher's goroutine.
	onPublish func(upload.Progress)
}

func (b *recordingBroker) Subscribe(ctx context.Context, topic upload.Topic) (upload.Feed, error) {
	b.mu.Lock()
	hook := b.beforeSubscribe
	b.beforeSubscribe = nil
	b.mu.Unlock()
	if hook != nil {
		hook()
	}
	return b.Hub.Subscribe(ctx, topic)
}

func (b *recordingBroker) Publish(ctx context.Context, ev upload.Progress) error {
	b.mu.Lock()
	hook := b.onPublish
	b.mu.Unlock()
	if hook != nil {
		hook(ev)
	}
	b.mu.Lock()
	b.events = append(b.events, ev)
	b.mu.Unlock()
	return b.Hub.Publish(ctx, ev)
}

// eventsOf returns the events published so far for one upload, in order.
func (b *recordingBroker) eventsOf(uploadID string) []upload.Progress {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []upload.Progress
	for _, ev := range b.events {
		if ev.UploadID == uploadID {
			out = append(out, ev)
		}
	}
	return out
}

// testEnv is a Service on the embedded engines: SQLite, the local disk
// and the in-process hub.
type testEnv struct {
	svc    *upload.Service
	db     *ent.Client
	sql    *sql.DB // the pool under db, for River's tables
	clock  *fakeClock
	broker *recordingBroker
	dir    string // the localfs root
	cfg    upload.Config
}

// testConfig is small enough that files of a few MiB are chunked:
// anything over 1 MiB goes in 5 MiB chunks.
func testConfig() upload.Config {
	return upload.Config{
		SingleThreshold: 1 * MiB,
		ChunkSize:       5 * MiB,
		SessionTTL:      time.Hour,
		ChunkURLTTL:     10 * time.Minute,
	}
}

func newTestService(t *testing.T, cfg upload.Config) *testEnv {
	t.Helper()
	return newTestServiceThrough(t, cfg, func(s upload.Store) upload.Store { return s })
}

// newTestServiceThrough is newTestService with its local disk seen
// through wrap, for tests that act in the middle of a store call.
func newTestServiceThrough(t *testing.T, cfg upload.Config, wrap func(upload.Store) upload.Store) *testEnv {
	t.Helper()
	store, dir := localStore(t)
	e := newTestServiceOn(t, cfg, wrap(store))
	e.dir = dir
	return e
}

// newTestServiceWith is newTestService whose processing derives with
// processor.
func newTestServiceWith(t *testing.T, processor upload.Processor) *testEnv {
	t.Helper()
	store, dir := localStore(t)
	e := newTestServiceProcessing(t, testConfig(), store, testJobs(dialect.SQLite), processor)
	e.dir = dir
	return e
}

// localStore is a local disk store in a temporary directory, and its root.
func localStore(t *testing.T) (*localfs.Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "files")
	store, err := localfs.New(dir)
	if err != nil {
		t.Fatalf("localfs.New: %v", err)
	}
	return store, dir
}

// newTestServiceOn is newTestService on another store.
func newTestServiceOn(t testing.TB, cfg upload.Config, store upload.Store) *testEnv {
	t.Helper()
	return newTestServiceJobs(t, cfg, store, testJobs(dialect.SQLite))
}

// newTestServiceJobs is newTestServiceOn with the job queue configured
// by jobsCfg.
func newTestServiceJobs(t testing.TB, cfg upload.Config, store upload.Store, jobsCfg jobs.Config) *testEnv {
	t.Helper()
	return newTestServiceProcessing(t, cfg, store, jobsCfg, nil)
}

// newTestServiceProcessing is newTestServiceJobs whose processing derives
// thumbnails and facts with processor (nil checks the bytes only, which
// lets most tests upload made-up bytes of any type).
func newTestServiceProcessing(t testing.TB, cfg upload.Config, store upload.Store, jobsCfg jobs.Config, processor upload.Processor) *testEnv {
	t.Helper()
	// database.Open, as spool opens its embedded database: the versioned
	// migrations, not ent's auto-migration (which writes ent's
	// package-level tables, a race between these tests in parallel).
	opened, err := database.Open(context.Background(), "", filepath.Join(t.TempDir(), "spool.db"))
	if err != nil {
		t.Fatalf("opening the database: %v", err)
	}
	t.Cleanup(func() { opened.Close() })
	db, sqldb := opened.Client, opened.SQL()
	queue := newTestQueueWith(t, sqldb, dialect.SQLite, jobsCfg)

	secret, err := signing.New(bytes.Repeat([]byte("k"), 32))
	if err != nil {
		t.Fatalf("signing.New: %v", err)
	}
	clock := newFakeClock()
	broker := &recordingBroker{Hub: progress.NewHub()}
	_, onGCS := store.(*gcs.Store)
	svc, err := upload.NewService(upload.Deps{
		DB: db, Dialect: dialect.SQLite, Store: store, Broker: broker, Queue: queue, Processor: processor,
		Signer: httpapi.NewURLSigner("http://spool.test", secret),
		Now:    clock.Now,
		// As spool serve sets it (internal/app).
		WholeChunkWrites: onGCS,
	}, cfg)
	if err != nil {
		t.Fatalf("NewService: %v", err)
	}
	startQueue(t, queue, svc)
	return &testEnv{svc: svc, db: db, sql: sqldb, clock: clock, broker: broker, cfg: svc.Config()}
}

// testJobs is the job queue's configuration in tests on a database of
// ent's dialect d: quick to notice new jobs and to stop, and no periodic
// sweeps, since tests call them and count what they did (a periodic sweep
// starting late under load once took an upload from under
// TestSweepExpiresAndFrees).
//
// On SQLite the queue is woken for each job inserted (by River's
// notifications, and by the service's Queue.TxDone as its transaction
// commits), so the fetch poll is only a fallback and keeps production's
// pace: polling every 20 ms, each poll parsing River's fetch query in the
// in-process SQLite (slow under -race), was over half of this package's
// CPU time. On PostgreSQL these queues have no ListenPool, to spare the
// server a connection each, so the poll is what finds a job inserted in
// a transaction.
func testJobs(d string) jobs.Config {
	poll := 20 * time.Millisecond
	if d == dialect.SQLite {
		poll = jobs.DefaultConfig().PollInterval
	}
	return jobs.Config{PollInterval: poll, ShutdownTimeout: 5 * time.Second, ManualSweeps: true}
}

// newTestQueue returns a job queue over sqldb (of ent's dialect d), with
// River's tables migrated.
func newTestQueue(tb testing.TB, sqldb *sql.DB, d string) *jobs.Queue {
	tb.Helper()
	return newTestQueueWith(tb, sqldb, d, testJobs(d))
}

// newTestQueueWith is newTestQueue configured by cfg.
func newTestQueueWith(tb testing.TB, sqldb *sql.DB, d string, cfg jobs.Config) *jobs.Queue {
	tb.Helper()
	if _, err := jobs.Migrate(context.Background(), sqldb, d); err != nil {
		tb.Fatalf("migrating the job queue: %v", err)
	}
	q, err := jobs.New(sqldb, d, cfg, nil)
	if err != nil {
		tb.Fatalf("jobs.New: %v", err)
	}
	return q
}

// startQueue works the queue's jobs with svc until the test ends.
// Cleanups run last-in first-out: the queue stops before the service
// and the database close.
func startQueue(tb testing.TB, q *jobs.Queue, svc *upload.Service) {
	tb.Helper()
	if err := q.Start(context.Background(), svc); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := q.Stop(context.Background()); err != nil {
			tb.Errorf("stopping the job queue: %v", err)
		}
	})
}

// user returns the id of the user with the subject, creating it.
func (e *testEnv) user(t *testing.T, subject string) string {
	t.Helper()
	u, err := e.svc.EnsureUser(context.Background(), subject)
	if err != nil {
		t.Fatalf("EnsureUser(%q): %v", subject, err)
	}
	return u.ID
}

// setQuota changes a user's quota.
func (e *testEnv) setQuota(t *testing.T, userID string, quota int64) {
	t.Helper()
	if err := e.db.User.UpdateOneID(userID).SetQuotaBytes(quota).Exec(context.Background()); err != nil {
		t.Fatalf("setting quota: %v", err)
	}
}

func (e *testEnv) reserved(t *testing.T, userID string) int64 {
	t.Helper()
	u, err := e.db.User.Get(context.Background(), userID)
	if err != nil {
		t.Fatalf("loading user: %v", err)
	}
	return u.ReservedBytes
}

// stored returns the upload's row as it is in the database.
func (e *testEnv) stored(t *testing.T, uploadID string) *ent.UploadSession {
	t.Helper()
	s, err := e.db.UploadSession.Get(context.Background(), uploadID)
	if err != nil {
		t.Fatalf("loading upload %s: %v", uploadID, err)
	}
	return s
}

// force puts an upload into a status directly, for states the public
// methods reach only through failures.
func (e *testEnv) force(t *testing.T, uploadID string, st upload.Status) {
	t.Helper()
	if err := e.db.UploadSession.UpdateOneID(uploadID).SetStatus(st).AddVersion(1).Exec(context.Background()); err != nil {
		t.Fatalf("forcing %s to %s: %v", uploadID, st, err)
	}
}

func (e *testEnv) mediaCount(t *testing.T, uploadID string) int {
	t.Helper()
	n, err := e.db.MediaFile.Query().Where(mediafile.UploadID(uploadID)).Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (e *testEnv) countSessions(t *testing.T, userID string) int {
	t.Helper()
	n, err := e.db.UploadSession.Query().Where(uploadsession.OwnerID(userID)).Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (e *testEnv) countBatches(t *testing.T, userID string) int {
	t.Helper()
	n, err := e.db.UploadBatch.Query().Where(uploadbatch.OwnerID(userID)).Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// stagingPath is where localfs keeps an unfinished upload's bytes.
func (e *testEnv) stagingPath(t *testing.T, uploadID string) string {
	t.Helper()
	return filepath.Join(e.dir, "staging", filepath.FromSlash(e.stored(t, uploadID).StorageKey))
}

// stagingFiles lists the files under the staging tree.
func (e *testEnv) stagingFiles(t *testing.T) []string {
	t.Helper()
	return e.filesUnder(t, "staging")
}

// filesUnder lists the regular files under dir of the localfs root ("" is
// the root itself).
func (e *testEnv) filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(filepath.Join(e.dir, dir), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func exists(t *testing.T, path string) bool {
	t.Helper()
	_, err := os.Stat(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// mp4Bytes returns n deterministic bytes that start like an MP4 file.
func mp4Bytes(n int64, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := 0; i+8 <= len(b); i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	copy(b, "\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2")
	return b
}

// pngBytes returns n bytes that start like a PNG file.
func pngBytes(n int64) []byte {
	b := mp4Bytes(n, 99)
	copy(b, "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
	return b
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// mp4Spec describes a video file of data.
func mp4Spec(name string, data []byte) upload.FileSpec {
	return upload.FileSpec{FileName: name, Size: int64(len(data)), MimeType: "video/mp4"}
}

// initOne starts a batch of one file and returns its upload.
func (e *testEnv) initOne(t *testing.T, userID string, f upload.FileSpec) *upload.Session {
	t.Helper()
	b, err := e.svc.InitBatch(context.Background(), userID, upload.BatchSpec{Files: []upload.FileSpec{f}})
	if err != nil {
		t.Fatalf("InitBatch(%s): %v", f.FileName, err)
	}
	if len(b.Uploads) != 1 {
		t.Fatalf("InitBatch returned %d uploads, want 1", len(b.Uploads))
	}
	return b.Uploads[0]
}

// chunk returns chunk i of data cut at the service's chunk size.
func (e *testEnv) chunk(data []byte, i int) []byte {
	size := e.cfg.ChunkSize
	if int64(len(data)) <= e.cfg.SingleThreshold {
		size = int64(len(data))
	}
	start := int64(i) * size
	return data[start:min(start+size, int64(len(data)))]
}

// send PUTs chunk i of data, declaring its true length.
func (e *testEnv) send(uploadID string, i int, data []byte) (upload.Progress, error) {
	c := e.chunk(data, i)
	return e.svc.ReceiveChunk(context.Background(), uploadID, i, bytes.NewReader(c),
		upload.ReceiveOptions{ContentLength: int64(len(c))})
}

func (e *testEnv) mustSend(t *testing.T, uploadID string, i int, data []byte) upload.Progress {
	t.Helper()
	p, err := e.send(uploadID, i, data)
	if err != nil {
		t.Fatalf("sending chunk %d of %s: %v", i, uploadID, err)
	}
	return p
}

// sendAll sends every chunk of data.
func (e *testEnv) sendAll(t *testing.T, sess *upload.Session, data []byte) upload.Progress {
	t.Helper()
	var p upload.Progress
	for i := range sess.TotalChunks {
		p = e.mustSend(t, sess.ID, i, data)
	}
	return p
}

// wantCode fails unless err carries the code.
func wantCode(t *testing.T, err error, want upload.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want %s", want)
	}
	if got := upload.ErrorCode(err); got != want {
		t.Fatalf("err = %v (code %s), want code %s", err, got, want)
	}
}

// uploadProcessed uploads file11 under the name, completes it and waits
// until its media file is processed.
func (e *testEnv) uploadProcessed(t *testing.T, userID, name string) (*upload.Session, *ent.MediaFile) {
	t.Helper()
	sess := e.initOne(t, userID, mp4Spec(name, file11))
	e.sendAll(t, sess, file11)
	m, err := e.svc.Complete(context.Background(), userID, sess.ID)
	if err != nil {
		t.Fatalf("Complete(%s): %v", sess.ID, err)
	}
	return sess, e.waitMedia(t, userID, m.ID)
}

// unprocess puts a media file back to PROCESSING, as a crash in the
// middle of processing leaves it, once its processing job has ended.
func (e *testEnv) unprocess(t *testing.T, mediaID string) {
	t.Helper()
	waitJob(t, e, mediaID, "completed")
	if err := e.db.MediaFile.UpdateOneID(mediaID).SetStatus(mediafile.StatusPROCESSING).Exec(context.Background()); err != nil {
		t.Fatalf("putting media %s back to PROCESSING: %v", mediaID, err)
	}
}

// waitMedia polls until the media file leaves PROCESSING.
func (e *testEnv) waitMedia(t *testing.T, userID, mediaID string) *ent.MediaFile {
	t.Helper()
	// A hang guard, not a timing assertion: the first WebP encoding in a
	// process compiles libwebp, which takes tens of seconds under -race.
	deadline := time.Now().Add(90 * time.Second)
	for {
		m, err := e.svc.Media(context.Background(), userID, mediaID)
		if err != nil {
			t.Fatalf("Media(%s): %v", mediaID, err)
		}
		if m.Status != mediafile.StatusPROCESSING && m.Status != mediafile.StatusPENDING {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("media %s still %s after 90s", mediaID, m.Status)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func mustDigest(t *testing.T, s string) upload.Digest {
	t.Helper()
	d, err := upload.ParseDigest(s)
	if err != nil {
		t.Fatalf("ParseDigest(%q): %v", s, err)
	}
	return d
}

// crc32cOf returns the crc32c checksum of b as "crc32c:<hex>".
func crc32cOf(b []byte) string {
	return fmt.Sprintf("crc32c:%08x", crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
}

// readMedia returns the stored bytes of a media file.
func readMedia(t *testing.T, e *testEnv, mediaID string) []byte {
	t.Helper()
	_, obj, err := e.svc.OpenMedia(context.Background(), mediaID)
	if err != nil {
		t.Fatalf("OpenMedia(%s): %v", mediaID, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("reading media %s: %v", mediaID, err)
	}
	return b
}

// chunkURLs lists a session's chunk URLs, failing the test on an error.
func (e *testEnv) chunkURLs(t *testing.T, sess *upload.Session) []upload.ChunkURL {
	t.Helper()
	urls, err := e.svc.ChunkURLs(context.Background(), sess)
	if err != nil {
		t.Fatalf("ChunkURLs: %v", err)
	}
	return urls
}
