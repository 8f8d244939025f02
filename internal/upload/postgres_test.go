package upload_test

// The domain's concurrency under real contention on PostgreSQL: several
// Services ("replicas", as separate processes would be: each its own
// connection pool, store and broker) share one database and one file
// directory, and race on the same upload. Each test gets a database of
// its own (dbtest.Postgres), so they run in parallel and leave nothing
// behind; without a server they skip, and in CI they fail.

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/spoolhq/spool/ent/uploadchunk"
	"github.com/spoolhq/spool/internal/database"
	"github.com/spoolhq/spool/internal/database/dbtest"
	"github.com/spoolhq/spool/internal/httpapi"
	"github.com/spoolhq/spool/internal/progress"
	"github.com/spoolhq/spool/internal/signing"
	"github.com/spoolhq/spool/internal/storage/localfs"
	"github.com/spoolhq/spool/internal/upload"
)

// newEnvOn returns a Service on the database at dbURL (or the SQLite file
// sqlitePath), storing files under dir, with clock as its clock (nil: the
// real one). It opens a pool of its own, as a replica would, with opts.
func newEnvOn(tb testing.TB, dbURL, sqlitePath, dir string, clock *fakeClock, cfg upload.Config, opts ...database.Option) (*testEnv, error) {
	db, err := database.Open(context.Background(), dbURL, sqlitePath, append([]database.Option{database.WithMaxOpenConns(16)}, opts...)...)
	if err != nil {
		return nil, err
	}
	tb.Cleanup(func() { db.Close() })
	store, err := localfs.New(dir)
	if err != nil {
		return nil, err
	}
	secret, err := signing.New(bytes.Repeat([]byte("k"), 32))
	if err != nil {
		return nil, err
	}
	broker := &recordingBroker{Hub: progress.NewHub()}
	queue := newTestQueue(tb, db.SQL(), db.Dialect)
	deps := upload.Deps{
		DB: db.Client, Dialect: db.Dialect, Store: store, Broker: broker, Queue: queue,
		Signer: httpapi.NewURLSigner("http://spool.test", secret),
	}
	if clock != nil {
		deps.Now = clock.Now
	}
	svc, err := upload.NewService(deps, cfg)
	if err != nil {
		return nil, err
	}
	// Cleanups run last-in first-out: the queue and the service stop
	// before their database closes, and the database is dropped after.
	tb.Cleanup(svc.Close)
	startQueue(tb, queue, svc)
	return &testEnv{svc: svc, db: db.Client, sql: db.SQL(), clock: clock, broker: broker, dir: dir, cfg: svc.Config()}, nil
}

// newReplicas returns n Services sharing a fresh PostgreSQL database, a
// file directory and a clock.
func newReplicas(t *testing.T, n int, cfg upload.Config) []*testEnv {
	t.Helper()
	dbURL := dbtest.Postgres(t)
	dir := filepath.Join(t.TempDir(), "files")
	clock := newFakeClock()
	replicas := make([]*testEnv, n)
	for i := range replicas {
		e, err := newEnvOn(t, dbURL, "", dir, clock, cfg)
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		replicas[i] = e
	}
	return replicas
}

// race runs fn(i) for i in [0, n) at once and waits for all of them.
func race(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			fn(i)
		})
	}
	close(start)
	wg.Wait()
}

// twoChunks is a chunked file of a full 5 MiB chunk and a 64 KiB one.
var twoChunks = mp4Bytes(5*MiB+64*KiB, 7)

// The same chunk arriving at two replicas at once, again and again, is
// counted once: progress comes from the chunk rows, and each receipt is
// one conditional transaction.
func TestPostgresSameChunkOnTwoReplicas(t *testing.T) {
	t.Parallel()
	rs := newReplicas(t, 2, testConfig())
	alice := rs[0].user(t, "alice")
	sess := rs[0].initOne(t, alice, mp4Spec("a.mp4", twoChunks))
	if sess.TotalChunks != 2 {
		t.Fatalf("planned %d chunks, want 2", sess.TotalChunks)
	}

	for _, c := range []struct{ index, senders int }{{1, 32}, {0, 6}, {1, 32}} {
		race(c.senders, func(i int) {
			p, err := rs[i%2].send(sess.ID, c.index, twoChunks)
			if err != nil {
				t.Errorf("sending chunk %d on replica %d: %v", c.index, i%2, err)
				return
			}
			if p.UploadedBytes > int64(len(twoChunks)) || p.UploadedChunks > 2 {
				t.Errorf("progress after a send: %d bytes in %d chunks, more than the file", p.UploadedBytes, p.UploadedChunks)
			}
		})
	}
	if t.Failed() {
		return
	}
	for i, e := range rs {
		s, err := e.svc.Session(context.Background(), alice, sess.ID)
		if err != nil {
			t.Fatal(err)
		}
		checkCounts(t, s.Progress, int64(len(twoChunks)), 2, []int{})
		if s.Status != upload.StatusUploading {
			t.Errorf("replica %d: status %s, want UPLOADING", i, s.Status)
		}
	}
	rows, err := rs[0].db.UploadChunk.Query().Where(uploadchunk.SessionID(sess.ID)).All(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 {
		t.Fatalf("%d chunk rows, want 2 (one per index)", len(rows))
	}
	checkRowCounts(t, rs[0].db, sess.ID)
	m, err := rs[1].svc.Complete(context.Background(), alice, sess.ID)
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if got := readMedia(t, rs[1], m.ID); !bytes.Equal(got, twoChunks) {
		t.Error("the completed file differs from what was sent")
	}
}

// complete called at once on both replicas makes one MediaFile, and every
// caller gets it.
func TestPostgresConcurrentComplete(t *testing.T) {
	t.Parallel()
	rs := newReplicas(t, 2, testConfig())
	alice := rs[0].user(t, "alice")
	for round := range 4 {
		data := mp4Bytes(5*MiB+64*KiB, uint64(100+round))
		sess := rs[0].initOne(t, alice, mp4Spec(fmt.Sprintf("r%d.mp4", round), data))
		rs[0].sendAll(t, sess, data)

		const callers = 8
		ids := make([]string, callers)
		errs := make([]error, callers)
		race(callers, func(i int) {
			m, err := rs[i%2].svc.Complete(context.Background(), alice, sess.ID)
			errs[i] = err
			if err == nil {
				ids[i] = m.ID
			}
		})
		for i := range callers {
			if errs[i] != nil {
				t.Fatalf("round %d: Complete #%d on replica %d: %v", round, i, i%2, errs[i])
			}
			if ids[i] != ids[0] {
				t.Errorf("round %d: Complete #%d returned media %s, want %s like #0", round, i, ids[i], ids[0])
			}
		}
		if n := rs[0].mediaCount(t, sess.ID); n != 1 {
			t.Errorf("round %d: %d media files, want exactly 1", round, n)
		}
		if st := rs[0].stored(t, sess.ID).Status; st != upload.StatusCompleted {
			t.Errorf("round %d: status %s, want COMPLETED", round, st)
		}
		if got := readMedia(t, rs[1], ids[0]); !bytes.Equal(got, data) {
			t.Errorf("round %d: the completed file differs from what was sent", round)
		}
	}
}

// Concurrent inits on both replicas never reserve more than the quota:
// the reservation is a conditional UPDATE, re-checked by PostgreSQL
// against the row as the previous writer left it.
func TestPostgresConcurrentInitsWithinQuota(t *testing.T) {
	t.Parallel()
	const (
		callers = 20
		size    = 2 * MiB
	)
	for _, tc := range []struct {
		name          string
		filesPerBatch int
		fits          int // batches the quota holds
	}{
		{"one file per batch", 1, 7},
		{"three files per batch", 3, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rs := newReplicas(t, 2, testConfig())
			alice := rs[0].user(t, "alice")
			quota := int64(tc.fits*tc.filesPerBatch)*size + size/2
			rs[0].setQuota(t, alice, quota)

			errs := make([]error, callers)
			race(callers, func(i int) {
				files := make([]upload.FileSpec, tc.filesPerBatch)
				for f := range files {
					files[f] = upload.FileSpec{FileName: fmt.Sprintf("%d-%d.mp4", i, f), Size: size, MimeType: "video/mp4"}
				}
				_, errs[i] = rs[i%2].svc.InitBatch(context.Background(), alice, upload.BatchSpec{Files: files})
			})
			succeeded := 0
			for i, err := range errs {
				switch {
				case err == nil:
					succeeded++
				case upload.ErrorCode(err) != upload.CodeQuotaExceeded:
					t.Errorf("InitBatch #%d on replica %d = %v, want success or QUOTA_EXCEEDED", i, i%2, err)
				}
			}
			if succeeded != tc.fits {
				t.Errorf("%d of %d inits succeeded, want exactly %d", succeeded, callers, tc.fits)
			}
			want := int64(succeeded*tc.filesPerBatch) * size
			if got := rs[1].reserved(t, alice); got > quota || got != want {
				t.Errorf("reserved = %d, want %d and at most the quota %d", got, want, quota)
			}
			if n := rs[0].countSessions(t, alice); n != succeeded*tc.filesPerBatch {
				t.Errorf("%d upload sessions, want %d: a refused batch must create nothing", n, succeeded*tc.filesPerBatch)
			}
			if n := rs[0].countBatches(t, alice); n != succeeded {
				t.Errorf("%d batches, want %d", n, succeeded)
			}
		})
	}
}

// cancel racing a chunk's receipt on the other replica leaves one of two
// consistent states: the chunk recorded before the cancel, or refused
// after it; never a chunk recorded on a cancelled upload. The bytes are
// given back to the quota exactly once, however many cancels race.
func TestPostgresCancelRacesChunk(t *testing.T) {
	t.Parallel()
	rs := newReplicas(t, 2, testConfig())
	alice := rs[0].user(t, "alice")
	recordedFirst, refused := 0, 0
	for round := range 12 {
		sess := rs[0].initOne(t, alice, mp4Spec(fmt.Sprintf("r%d.mp4", round), twoChunks))
		rs[0].mustSend(t, sess.ID, 0, twoChunks)

		var (
			sendProgress upload.Progress
			sendErr      error
			cancelErrs   [2]error
		)
		race(3, func(i int) {
			switch i {
			case 0:
				sendProgress, sendErr = rs[0].send(sess.ID, 1, twoChunks)
			default:
				_, cancelErrs[i-1] = rs[i-1].svc.Cancel(context.Background(), alice, sess.ID)
			}
		})

		cancelled := 0
		for i, err := range cancelErrs {
			switch {
			case err == nil:
				cancelled++
			case upload.ErrorCode(err) != upload.CodeAlreadyFinished:
				t.Errorf("round %d: Cancel on replica %d = %v, want success or ALREADY_FINISHED", round, i, err)
			}
		}
		if cancelled != 1 {
			t.Errorf("round %d: %d cancels succeeded, want exactly 1", round, cancelled)
		}
		final := rs[1].stored(t, sess.ID)
		if final.Status != upload.StatusCancelled {
			t.Fatalf("round %d: status %s, want CANCELLED", round, final.Status)
		}
		chunk1, err := rs[0].db.UploadChunk.Query().
			Where(uploadchunk.SessionID(sess.ID), uploadchunk.Index(1), uploadchunk.StateEQ(uploadchunk.StateRECEIVED)).
			Exist(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case sendErr == nil:
			// Recorded before the cancel, which then moved the version on.
			recordedFirst++
			if !chunk1 || sendProgress.Status != upload.StatusUploading || sendProgress.Version >= final.Version {
				t.Errorf("round %d: the send succeeded (status %s, version %d) but chunk 1 recorded=%v, final version %d",
					round, sendProgress.Status, sendProgress.Version, chunk1, final.Version)
			}
		case upload.ErrorCode(sendErr) == upload.CodeAlreadyFinished:
			refused++
			if chunk1 {
				t.Errorf("round %d: the send was refused (%v) but chunk 1 is recorded", round, sendErr)
			}
		default:
			t.Errorf("round %d: send = %v, want success or ALREADY_FINISHED", round, sendErr)
		}
	}
	if got := rs[0].reserved(t, alice); got != 0 {
		t.Errorf("reserved = %d after cancelling everything, want 0", got)
	}
	t.Logf("chunk recorded before the cancel %d times, refused after it %d times", recordedFirst, refused)
}

// A batch that resumes one upload and starts another, racing a cancel of
// the resumed one, must not deadlock: both lock the session row before
// the user's quota row. Before that order was kept, PostgreSQL aborted one
// of them as a deadlock (INTERNAL) now and then.
func TestPostgresResumeRacesCancel(t *testing.T) {
	t.Parallel()
	rs := newReplicas(t, 2, testConfig())
	alice := rs[0].user(t, "alice")
	for round := range 40 {
		fp := fmt.Sprintf("fp-%d", round)
		resumable := mp4Spec(fmt.Sprintf("r%d.mp4", round), twoChunks)
		resumable.Fingerprint = &fp
		first := rs[0].initOne(t, alice, resumable)

		// The new file comes first, so a batch that locked as it went
		// would take the quota row before the resumed session's.
		fresh := mp4Spec(fmt.Sprintf("n%d.mp4", round), twoChunks)
		var (
			batch     *upload.Batch
			initErr   error
			cancelErr error
		)
		race(2, func(i int) {
			if i == 0 {
				batch, initErr = rs[0].svc.InitBatch(context.Background(), alice,
					upload.BatchSpec{Files: []upload.FileSpec{fresh, resumable}})
				return
			}
			_, cancelErr = rs[1].svc.Cancel(context.Background(), alice, first.ID)
		})
		if initErr != nil {
			t.Fatalf("round %d: InitBatch = %v, want success", round, initErr)
		}
		if cancelErr != nil && upload.ErrorCode(cancelErr) != upload.CodeAlreadyFinished {
			t.Fatalf("round %d: Cancel = %v, want success or ALREADY_FINISHED", round, cancelErr)
		}
		// Either the cancel came first and the batch started the file
		// afresh, or the batch resumed it and the cancel stopped it.
		if cancelErr == nil && batch.Uploads[1].ID == first.ID && rs[1].stored(t, first.ID).Status != upload.StatusCancelled {
			t.Fatalf("round %d: cancel succeeded but the resumed upload is %s", round, rs[1].stored(t, first.ID).Status)
		}
		for _, up := range batch.Uploads {
			if _, err := rs[0].svc.Cancel(context.Background(), alice, up.ID); err != nil && upload.ErrorCode(err) != upload.CodeAlreadyFinished {
				t.Fatalf("round %d: cleaning up %s: %v", round, up.ID, err)
			}
		}
	}
	if got := rs[0].reserved(t, alice); got != 0 {
		t.Errorf("reserved = %d after cancelling everything, want 0", got)
	}
}
