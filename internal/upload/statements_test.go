package upload_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"

	"golang.org/x/sync/semaphore"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/mediafile"
	"github.com/spoolhq/spool/internal/database"
	"github.com/spoolhq/spool/internal/database/dbtest"
	"github.com/spoolhq/spool/internal/database/sqltx"
	"github.com/spoolhq/spool/internal/httpapi"
	"github.com/spoolhq/spool/internal/progress"
	"github.com/spoolhq/spool/internal/signing"
	"github.com/spoolhq/spool/internal/storage/localfs"
	"github.com/spoolhq/spool/internal/upload"
)

// sqlLog records what a Service sends to its database, through ent's
// debug driver: statements, and the transactions they run in.
type sqlLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *sqlLog) record(_ context.Context, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprint(v...))
}

// take returns what was recorded since the last take.
func (l *sqlLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := l.lines
	l.lines = nil
	return lines
}

// sqlCost counts a log's statements and transactions.
func sqlCost(lines []string) (statements, txs int) {
	for _, line := range lines {
		switch {
		case strings.Contains(line, "): started"):
			txs++
		case strings.Contains(line, "query="):
			statements++
		}
	}
	return statements, txs
}

// newRecordedEnv is a Service whose every statement lands in log, on
// the database at dbURL (or a SQLite file in a temporary directory)
// migrated as spool migrates it.
func newRecordedEnv(t *testing.T, dbURL string, log *sqlLog, cfg upload.Config) *testEnv {
	t.Helper()
	dir := t.TempDir()
	db, err := database.Open(context.Background(), dbURL, filepath.Join(dir, "spool.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	// Over sqltx, as spool's client is, so that jobs join transactions.
	client := ent.NewClient(ent.Driver(dialect.DebugWithContext(sqltx.Wrap(entsql.OpenDB(db.Dialect, db.SQL())), log.record)))
	return newEnvOver(t, client, db.SQL(), db.Dialect, dir, cfg)
}

// newEnvOver is a Service over client, whose pool (for the job queue) is
// sqldb, with its files under dir.
func newEnvOver(t *testing.T, client *ent.Client, sqldb *sql.DB, d, dir string, cfg upload.Config) *testEnv {
	t.Helper()
	return newEnvOverWith(t, client, sqldb, d, dir, cfg, nil)
}

// newEnvOverWith is newEnvOver whose processing derives with processor
// (nil checks the bytes only).
func newEnvOverWith(t *testing.T, client *ent.Client, sqldb *sql.DB, d, dir string, cfg upload.Config, processor upload.Processor) *testEnv {
	t.Helper()
	store, err := localfs.New(filepath.Join(dir, "files"))
	if err != nil {
		t.Fatal(err)
	}
	secret, err := signing.New(bytes.Repeat([]byte("k"), 32))
	if err != nil {
		t.Fatal(err)
	}
	broker := &recordingBroker{Hub: progress.NewHub()}
	svc, err := upload.NewService(upload.Deps{
		DB: client, Dialect: d, Store: store, Broker: broker, Processor: processor,
		Queue:  newTestQueue(t, sqldb, d),
		Signer: httpapi.NewURLSigner("http://spool.test", secret),
	}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &testEnv{svc: svc, db: client, sql: sqldb, broker: broker, dir: dir, cfg: svc.Config()}
}

// onRecordedEngines runs test on SQLite and on PostgreSQL, each with a
// Service whose statements land in a log.
func onRecordedEngines(t *testing.T, test func(t *testing.T, e *testEnv, log *sqlLog)) {
	onRecordedEnginesWith(t, testConfig(), test)
}

// onRecordedEnginesWith is onRecordedEngines with the Services' config.
func onRecordedEnginesWith(t *testing.T, cfg upload.Config, test func(t *testing.T, e *testEnv, log *sqlLog)) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			dbURL := ""
			if engine == "postgres" {
				dbURL = dbtest.Postgres(t)
			}
			log := &sqlLog{}
			test(t, newRecordedEnv(t, dbURL, log, cfg), log)
		})
	}
}

// checkSQLCost fails the test if what log recorded since its last take
// is more than maxStatements statements in maxTxs transactions, or none.
func checkSQLCost(t *testing.T, log *sqlLog, what string, maxStatements, maxTxs int) {
	t.Helper()
	lines := log.take()
	statements, txs := sqlCost(lines)
	if statements > maxStatements || txs > maxTxs || statements == 0 {
		t.Errorf("%s: %d statements in %d transactions, want at most %d in %d:\n%s",
			what, statements, txs, maxStatements, maxTxs, strings.Join(lines, "\n"))
	}
}

// TestChunkReceiptStatements holds a chunk's control cost to what
// docs/DESIGN.md promises, whatever the upload's size: one read, then on
// SQLite one transaction of two statements, on PostgreSQL one statement
// and no transaction block; a re-sent chunk costs one more of those (its
// invalidation). confirmChunk is one read.
func TestChunkReceiptStatements(t *testing.T) {
	t.Parallel()
	onRecordedEngines(t, func(t *testing.T, e *testEnv, log *sqlLog) {
		owner := e.user(t, "alice")
		data := mp4Bytes(21*MiB, 9) // 5 chunks of 5 MiB, the last short
		sess := e.initOne(t, owner, mp4Spec("a.mp4", data))
		ctx := context.Background()

		check := func(what string, maxStatements, maxTxs int) { checkSQLCost(t, log, what, maxStatements, maxTxs) }
		receipt, receiptTxs := 2, 1 // statements and transactions
		if strings.HasSuffix(t.Name(), "/postgres") {
			receipt, receiptTxs = 1, 0
		}
		log.take()
		for i := range sess.TotalChunks {
			e.mustSend(t, sess.ID, i, data)
			check(fmt.Sprintf("receiving chunk %d", i), 1+receipt, receiptTxs)
		}
		e.mustSend(t, sess.ID, 2, data)
		check("re-sending chunk 2", 1+2*receipt, 2*receiptTxs)

		size := int64(len(e.chunk(data, 1)))
		if _, err := e.svc.ConfirmChunk(ctx, owner, sess.ID, 1, size, nil); err != nil {
			t.Fatal(err)
		}
		check("confirming chunk 1", 1, 0)

		// The counts the receipts kept are what the rows say.
		s, err := e.svc.Session(ctx, owner, sess.ID)
		if err != nil {
			t.Fatal(err)
		}
		checkCounts(t, s.Progress, int64(len(data)), sess.TotalChunks, []int{})
		if u := s.UploadSession; u.ReceivedChunks != sess.TotalChunks || u.ReceivedBytes != int64(len(data)) || u.FailedChunks != 0 {
			t.Errorf("session counts = %d chunks, %d bytes, %d failed; want %d, %d, 0",
				u.ReceivedChunks, u.ReceivedBytes, u.FailedChunks, sess.TotalChunks, len(data))
		}
	})
}

// chunkRead matches a logged read of chunk rows, in either database's quoting.
var chunkRead = regexp.MustCompile(`SELECT .* FROM .upload_chunks. `)

// sessionRead matches a logged read of upload rows.
var sessionRead = regexp.MustCompile(`SELECT .* FROM .upload_sessions. `)

// TestInitBatchStatements holds initBatch to the same statements whatever
// the number of files, up to the 100 sessions one INSERT takes: the
// quota row is updated once, the sessions are inserted in one statement
// and read back in one: new uploads have no chunk rows to look for. 120
// files take one INSERT more, and files that name their sha256 and
// fingerprint two reads, however many they are.
func TestInitBatchStatements(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxBatchFiles = 120
	onRecordedEnginesWith(t, cfg, func(t *testing.T, e *testEnv, log *sqlLog) {
		owner := e.user(t, "alice")
		initBatch := func(n int, named bool) (statements, txs int) {
			t.Helper()
			files := make([]upload.FileSpec, n)
			for i := range files {
				files[i] = upload.FileSpec{FileName: fmt.Sprintf("%d-%d.mp3", n, i), Size: 2, MimeType: "audio/mpeg"}
				if named {
					sum := fmt.Sprintf("%032x%032x", n, i) // no file of an earlier batch
					files[i].SHA256, files[i].Fingerprint = &sum, ptr(files[i].FileName)
				}
			}
			log.take()
			b, err := e.svc.InitBatch(context.Background(), owner, upload.BatchSpec{Files: files})
			if err != nil {
				t.Fatalf("InitBatch of %d: %v", n, err)
			}
			lines := log.take()
			if len(b.Uploads) != n {
				t.Fatalf("InitBatch of %d returned %d uploads", n, len(b.Uploads))
			}
			for i, u := range b.Uploads {
				if u.FileName != files[i].FileName || u.Progress.Status != upload.StatusInitialized {
					t.Fatalf("upload %d of %d: %s %s, want %s INITIALIZED", i, n, u.FileName, u.Progress.Status, files[i].FileName)
				}
			}
			for _, line := range lines {
				if chunkRead.MatchString(line) {
					t.Errorf("InitBatch of %d new files looked for their chunk rows: %s", n, line)
				}
				if !named && sessionRead.MatchString(line) {
					t.Errorf("InitBatch of %d new files read uploads back: %.160s", n, line)
				}
			}
			if quotaUpdates := userRowUpdates(lines); quotaUpdates != 1 {
				t.Errorf("InitBatch of %d updated the quota row %d times, want once:\n%s", n, quotaUpdates, strings.Join(lines, "\n"))
			}
			return sqlCost(lines)
		}
		oneStatements, oneTxs := initBatch(1, false)
		if s, txs := initBatch(100, false); s != oneStatements || txs != oneTxs {
			t.Errorf("InitBatch of 100: %d statements in %d transactions, want %d in %d as for one file", s, txs, oneStatements, oneTxs)
		}
		if s, txs := initBatch(120, false); s != oneStatements+1 || txs != oneTxs {
			t.Errorf("InitBatch of 120: %d statements in %d transactions, want %d in %d", s, txs, oneStatements+1, oneTxs)
		}
		// Files naming their sha256 and fingerprint cost two reads for the
		// whole batch: their READY copies to share, their unfinished
		// uploads to resume. Before lookUpEarlier each file cost two.
		if s, txs := initBatch(10, true); s != oneStatements+2 || txs != oneTxs {
			t.Errorf("InitBatch of 10 files with sha256 and fingerprint: %d statements in %d transactions, want %d in %d", s, txs, oneStatements+2, oneTxs)
		}
		if s, txs := initBatch(120, true); s != oneStatements+1+2 || txs != oneTxs {
			t.Errorf("InitBatch of 120 files with sha256 and fingerprint: %d statements in %d transactions, want %d in %d", s, txs, oneStatements+3, oneTxs)
		}
	})
}

// readyOriginal adds a READY media file of owner's holding data as an
// MP3, orig.mp3 stored at <owner>/orig and made an hour ago, without an
// upload: the original that files naming data's sha256 copy.
func (e *testEnv) readyOriginal(t *testing.T, owner string, data []byte) *ent.MediaFile {
	t.Helper()
	m, err := e.db.MediaFile.Create().SetOwnerID(owner).SetFileName("orig.mp3").SetMimeType("audio/mpeg").
		SetMediaType("AUDIO").SetFileSize(int64(len(data))).SetStorageKey(owner + "/orig").
		SetStatus(mediafile.StatusREADY).SetContentHash(sha256Hex(data)).SetCreatedAt(time.Now().Add(-time.Hour)).
		Save(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestDedupBatchLocksOnce: a batch of copies of a file the user has READY
// takes the user's row once, however many copies it makes (each lock is
// an UPDATE of that row), reserves nothing, and costs the statements of
// one copy: every copy shares the earliest READY file's bytes.
func TestDedupBatchLocksOnce(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxBatchFiles = 10
	onRecordedEnginesWith(t, cfg, func(t *testing.T, e *testEnv, log *sqlLog) {
		ctx := context.Background()
		owner := e.user(t, "alice")
		data := []byte{0xFF, 0xFB}
		sum := sha256Hex(data)
		e.readyOriginal(t, owner, data)
		reserved := e.reserved(t, owner)
		copies := func(n int) (statements int) {
			t.Helper()
			files := make([]upload.FileSpec, n)
			for i := range files {
				files[i] = upload.FileSpec{FileName: fmt.Sprintf("copy-%d-%d.mp3", n, i), Size: int64(len(data)), MimeType: "audio/mpeg", SHA256: &sum}
			}
			log.take()
			b, err := e.svc.InitBatch(ctx, owner, upload.BatchSpec{Files: files})
			if err != nil {
				t.Fatal(err)
			}
			lines := log.take()
			for _, u := range b.Uploads {
				if !u.Deduplicated || u.Progress.Status != upload.StatusCompleted || u.Progress.MediaID == nil {
					t.Fatalf("upload %s: deduplicated %v, %s; want a COMPLETED copy", u.FileName, u.Deduplicated, u.Progress.Status)
				}
				if m := e.mediaRow(t, *u.Progress.MediaID); m.StorageKey != owner+"/orig" || m.FileName != u.FileName {
					t.Errorf("media of %s: %s stored at %s, want its own name and the original's bytes", u.FileName, m.FileName, m.StorageKey)
				}
			}
			if userUpdates := userRowUpdates(lines); userUpdates != 1 {
				t.Errorf("a batch of %d copies updated the user's row %d times, want once:\n%s", n, userUpdates, strings.Join(lines, "\n"))
			}
			statements, _ = sqlCost(lines)
			return statements
		}
		one := copies(1)
		if five := copies(5); five != one {
			t.Errorf("a batch of 5 copies: %d statements, want %d as for one", five, one)
		}
		if got := e.reserved(t, owner); got != reserved {
			t.Errorf("reserved = %d after the copies, want %d", got, reserved)
		}
	})
}

// userRowUpdates counts a log's updates of the users table: of a quota
// reservation, or the lock of a user's stored bytes.
func userRowUpdates(lines []string) int {
	n := 0
	for _, line := range lines {
		if strings.Contains(line, "UPDATE") && strings.Contains(line, "users") {
			n++
		}
	}
	return n
}

// TestTusAppendStatements holds a tus PATCH to the chunk path's cost: one
// read of the session, then per chunk it fills one transaction of two
// statements (and one of a single statement for the tail where it ends),
// on either database; reading a tus upload is one statement, not a scan
// of its chunks.
func TestTusAppendStatements(t *testing.T) {
	t.Parallel()
	onRecordedEngines(t, func(t *testing.T, e *testEnv, log *sqlLog) {
		owner := e.user(t, "alice")
		data := mp4Bytes(21*MiB, 10) // 5 chunks of 5 MiB, the last short
		sess := e.createTus(t, owner, data)
		ctx := context.Background()
		check := func(what string, maxStatements, maxTxs int) { checkSQLCost(t, log, what, maxStatements, maxTxs) }
		log.take()
		if _, err := e.appendBytes(owner, sess.ID, 0, data[:5*MiB]); err != nil {
			t.Fatal(err)
		}
		check("a PATCH of one whole chunk", 3, 1)
		if _, err := e.appendBytes(owner, sess.ID, 5*MiB, data[5*MiB:7*MiB]); err != nil {
			t.Fatal(err)
		}
		check("a PATCH that ends inside a chunk", 2, 1)
		if _, err := e.appendBytes(owner, sess.ID, 7*MiB, data[7*MiB:18*MiB]); err != nil {
			t.Fatal(err)
		}
		check("a PATCH that fills two chunks and ends inside a third", 1+2*2+1, 3)
		if _, err := e.svc.TusUpload(ctx, owner, sess.ID); err != nil {
			t.Fatal(err)
		}
		check("reading the upload", 1, 0)
	})
}

// TestSmallFileStatements holds a one-chunk file's complete and its
// processing to their statements: complete reads the upload and its
// chunks, moves it to ASSEMBLING, and completes it in one transaction
// (the media row and its job); each of the two publishes the row its
// UPDATE returned instead of reading it again, and so does processing's
// save (TestEventsAreTheCommittedRows checks what they publish).
func TestSmallFileStatements(t *testing.T) {
	t.Parallel()
	onRecordedEngines(t, func(t *testing.T, e *testEnv, log *sqlLog) {
		ctx := context.Background()
		owner := e.user(t, "alice")
		data := pngBytes(4 * KiB)
		sess := e.initOne(t, owner, upload.FileSpec{FileName: "a.png", MimeType: "image/png", Size: int64(len(data))})
		e.sendAll(t, sess, data)
		log.take()
		m, err := e.svc.Complete(ctx, owner, sess.ID)
		if err != nil {
			t.Fatal(err)
		}
		checkSQLCost(t, log, "complete", 5, 1)
		if err := e.svc.ProcessMedia(ctx, m.ID, semaphore.NewWeighted(1)); err != nil {
			t.Fatal(err)
		}
		checkSQLCost(t, log, "processing", 8, 1)
	})
}
