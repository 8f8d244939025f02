package upload_test

import (
	"context"
	stdsql "database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
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
	"github.com/spoolhq/spool/internal/media"
	"github.com/spoolhq/spool/internal/upload"
)

// TestEventsAreTheCommittedRows: the events of initBatch, of complete, of processing's
// result and of a media file's deletion are built from the rows their
// statements returned, not read again after the commit. Each must be
// exactly what a read at that moment gives (Session), on both engines:
// the status, counts, version, time and media, including a file deleted
// while it was processed, whose upload then names no media.
func TestEventsAreTheCommittedRows(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dbURL, path := "", ""
			if engine == "postgres" {
				dbURL = dbtest.Postgres(t)
			} else {
				path = filepath.Join(t.TempDir(), "spool.db")
			}
			db, err := database.Open(ctx, dbURL, path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			var during sync.Mutex // guards whileProcessing
			var whileProcessing func()
			processor := processorFunc(func() {
				during.Lock()
				f := whileProcessing
				during.Unlock()
				if f != nil {
					f()
				}
			})
			e := newEnvOverWith(t, db.Client, db.SQL(), db.Dialect, t.TempDir(), testConfig(), processor)
			owner := e.user(t, "alice")

			// Every event is compared with a read made as it is published
			// (the test's steps run one at a time, so nothing changes
			// between the commit and the read).
			seen := map[string]int{}
			e.broker.onPublish = func(ev upload.Progress) {
				fresh, err := e.svc.Session(ctx, owner, ev.UploadID)
				if err != nil {
					t.Errorf("reading upload %s at its %s event: %v", ev.UploadID, ev.Status, err)
					return
				}
				if !ev.At.Equal(fresh.Progress.At) {
					t.Errorf("%s event (version %d) at %v, the upload as read at %v", ev.Status, ev.Version, ev.At, fresh.Progress.At)
				}
				if got, want := comparable(ev), comparable(fresh.Progress); !reflect.DeepEqual(got, want) {
					t.Errorf("%s event (version %d) differs from the upload as read:\n got %+v\nwant %+v", ev.Status, ev.Version, got, want)
				}
				key := string(ev.Status)
				if ev.MediaStatus != nil {
					key += "/" + string(*ev.MediaStatus)
				} else if ev.Status == upload.StatusCompleted {
					key += "/no media"
				}
				seen[key]++
			}
			slots := semaphore.NewWeighted(1)

			sess := e.initOne(t, owner, mp4Spec("a.mp4", twoChunks))
			e.sendAll(t, sess, twoChunks)
			m, err := e.svc.Complete(ctx, owner, sess.ID)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.svc.ProcessMedia(ctx, m.ID, slots); err != nil {
				t.Fatal(err)
			}
			if err := e.svc.DeleteMedia(ctx, owner, m.ID); err != nil {
				t.Fatal(err)
			}

			// A second file, deleted while its bytes are processed.
			other := e.initOne(t, owner, mp4Spec("b.mp4", file11))
			e.sendAll(t, other, file11)
			m2, err := e.svc.Complete(ctx, owner, other.ID)
			if err != nil {
				t.Fatal(err)
			}
			during.Lock()
			whileProcessing = func() {
				if err := e.svc.DeleteMedia(ctx, owner, m2.ID); err != nil {
					t.Errorf("deleting the file while it was processed: %v", err)
				}
			}
			during.Unlock()
			if err := e.svc.ProcessMedia(ctx, m2.ID, slots); err != nil {
				t.Fatal(err)
			}
			saved, err := e.db.MediaFile.Get(ctx, m2.ID)
			if err != nil {
				t.Fatal(err)
			}
			if saved.Status != mediafile.StatusREADY || saved.DeletedAt == nil {
				t.Fatalf("the file deleted while processed is %s, deleted %v; want READY and deleted", saved.Status, saved.DeletedAt)
			}

			want := map[string]int{
				"ASSEMBLING": 2, "COMPLETED/PROCESSING": 2, "COMPLETED/READY": 1,
				// built from the rows initBatch inserted
				"INITIALIZED": 2,
				// the deletion of each file, and the second's processing after its deletion
				"COMPLETED/no media": 3,
			}
			for k, n := range want {
				if seen[k] != n {
					t.Errorf("%d %s events, want %d (all: %v)", seen[k], k, n, seen)
				}
			}
		})
	}
}

// comparable is an event without its time (compared apart, as an
// instant) and with no failed chunk as an empty list, for comparison.
func comparable(p upload.Progress) upload.Progress {
	p.At = time.Time{}
	if len(p.FailedChunks) == 0 {
		p.FailedChunks = nil
	}
	return p
}

// processorFunc derives nothing, calling its function first.
type processorFunc func()

func (f processorFunc) Process(context.Context, string, string, string) (*media.Result, error) {
	f()
	return &media.Result{}, nil
}

// TestARunAfterACommitWithoutAnAnswerPublishes: a database that fails
// as a commit goes through leaves the change made with nothing
// published, and the step is run again: processing by River's retry (or
// rideOut's, within the attempt), a cancel by its client, the sweep by
// its next pass (which finds the stopped upload's bytes not freed). The
// second run finds the change made; it must say the upload's progress
// again, or its subscribers wait for the end for ever. Found looking for
// why the fault suite's "PostgreSQL cut mid-chunk" failed once in CI.
func TestARunAfterACommitWithoutAnAnswerPublishes(t *testing.T) {
	t.Parallel()
	slots := semaphore.NewWeighted(1)
	for _, tt := range []struct {
		name     string
		complete bool // the upload is completed before the step
		expired  bool // the upload's time is up before the step
		// run is the step, given the upload and its media, if completed
		run  func(e *testEnv, owner string, sess *upload.Session, m *ent.MediaFile) error
		want string // the event the step publishes, and the subscriber's last
		// again is the second run's error, if any
		again upload.Code
	}{
		{name: "processing", complete: true, want: "COMPLETED/READY",
			run: func(e *testEnv, _ string, _ *upload.Session, m *ent.MediaFile) error {
				return e.svc.ProcessMedia(context.Background(), m.ID, slots)
			}},
		{name: "cancel", want: "CANCELLED", again: upload.CodeAlreadyFinished,
			run: func(e *testEnv, owner string, sess *upload.Session, _ *ent.MediaFile) error {
				_, err := e.svc.Cancel(context.Background(), owner, sess.ID)
				return err
			}},
		{name: "expiry by the sweep", expired: true, want: "EXPIRED",
			run: func(e *testEnv, _ string, _ *upload.Session, _ *ent.MediaFile) error {
				_, err := e.svc.Sweep(context.Background())
				return err
			}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dir := t.TempDir()
			db, err := database.Open(ctx, "", filepath.Join(dir, "spool.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			drv := &unansweredCommits{Driver: sqltx.Wrap(entsql.OpenDB(db.Dialect, db.SQL()))}
			e := newEnvOver(t, ent.NewClient(ent.Driver(drv)), db.SQL(), db.Dialect, dir, testConfig())
			owner := e.user(t, "alice")
			sess := e.initOne(t, owner, mp4Spec("a.mp4", twoChunks))
			e.sendAll(t, sess, twoChunks)
			var m *ent.MediaFile
			if tt.complete {
				if m, err = e.svc.Complete(ctx, owner, sess.ID); err != nil {
					t.Fatal(err)
				}
			}
			watchCtx, cancel := context.WithCancel(ctx)
			defer cancel()
			events, err := e.svc.WatchUpload(watchCtx, owner, sess.ID)
			if err != nil {
				t.Fatal(err)
			}
			seen := make(chan []string, 1)
			go func() {
				var got []string
				for p := range events {
					got = append(got, describeProgress(*p))
				}
				seen <- got
			}()
			if tt.expired {
				if err := e.db.UploadSession.UpdateOneID(sess.ID).SetExpiresAt(time.Now().Add(-time.Minute)).Exec(ctx); err != nil {
					t.Fatal(err)
				}
			}

			drv.failNext.Store(true)
			err = tt.run(e, owner, sess, m)
			if err == nil {
				t.Fatal("the run whose commit had no answer returned no error")
			}
			t.Logf("the run whose commit had no answer: %v", err)
			var published []string
			for _, ev := range e.broker.eventsOf(sess.ID) {
				published = append(published, describeProgress(ev))
			}
			if slices.Contains(published, tt.want) {
				t.Fatalf("the run whose commit had no answer published %s: the fault missed", tt.want)
			}
			fresh, err := e.svc.Session(ctx, owner, sess.ID)
			if err != nil || describeProgress(fresh.Progress) != tt.want {
				t.Fatalf("after the commit without an answer the upload is %v (%v), want %s: the fault missed", fresh, err, tt.want)
			}

			if err := tt.run(e, owner, sess, m); tt.again == "" && err != nil || tt.again != "" && upload.ErrorCode(err) != tt.again {
				t.Fatalf("the second run: %v, want code %q", err, tt.again)
			}
			select {
			case got := <-seen:
				if len(got) == 0 || got[len(got)-1] != tt.want {
					t.Errorf("the subscriber saw %v, want it to end at %s", got, tt.want)
				}
			case <-time.After(time.Minute): // a hang guard
				t.Fatalf("the subscriber did not end after the second run; published: %v", e.broker.eventsOf(sess.ID))
			}
		})
	}
}

// describeProgress is an event's upload and media status.
func describeProgress(p upload.Progress) string {
	if p.MediaStatus == nil {
		return string(p.Status)
	}
	return string(p.Status) + "/" + string(*p.MediaStatus)
}

// unansweredCommits is a driver whose next transaction's commit, once
// failNext is set, goes through and then fails, as when the connection
// to the database drops before the answer comes.
type unansweredCommits struct {
	*sqltx.Driver
	failNext atomic.Bool
}

func (d *unansweredCommits) Tx(ctx context.Context) (dialect.Tx, error) {
	tx, err := d.Driver.Tx(ctx)
	if err != nil || !d.failNext.Swap(false) {
		return tx, err
	}
	raw, ok := tx.(rawSQL)
	if !ok {
		return nil, fmt.Errorf("a transaction of %T has no raw SQL", tx)
	}
	return unansweredCommit{tx, raw}, nil
}

// unansweredCommit keeps the transaction's raw SQL, which the service's
// own statements use.
type unansweredCommit struct {
	dialect.Tx
	rawSQL
}

type rawSQL interface {
	ExecContext(ctx context.Context, query string, args ...any) (stdsql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*stdsql.Rows, error)
}

func (tx unansweredCommit) Commit() error {
	if err := tx.Tx.Commit(); err != nil {
		return err
	}
	return errors.New("the connection closed before the commit's answer")
}
