package upload_test

import (
	"context"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/spoolhq/spool/ent/mediafile"
	"github.com/spoolhq/spool/internal/database"
	"github.com/spoolhq/spool/internal/database/dbtest"
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
