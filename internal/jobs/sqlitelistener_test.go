package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"golang.org/x/sync/semaphore"

	"github.com/spoolhq/spool/internal/jobs"
)

// processedService records the media files it was asked to process.
type processedService struct {
	failingService
	done chan string
}

func (s *processedService) ProcessMedia(_ context.Context, id string, _ *semaphore.Weighted) error {
	s.done <- id
	return nil
}

// On SQLite a job inserted with a transaction is taken as soon as the
// transaction commits: the notification River writes with it wakes the
// queue. Here nothing else could, after the first job: the queue polls
// for jobs once an hour, its listener reads when nothing woke it once an
// hour, and the fetch that follows a finished job is over before the
// next is inserted. (River writes a queue's insert notification at most
// once per its fetch cooldown, 100 ms; a job inserted sooner after
// another is taken by a fetch that follows a finished job, or by the
// poll.)
func TestSQLiteJobWakesTheQueueAtCommit(t *testing.T) {
	ctx := context.Background()
	db := migratedSQLite(t)
	q, err := jobs.New(db.SQL(), db.Dialect, jobs.WithListenerFallback(jobs.Config{
		PollInterval: time.Hour, ManualSweeps: true,
	}, time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	svc := &processedService{done: make(chan string, 4)}
	if err := q.Start(ctx, svc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := q.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	for i, id := range []string{"m1", "m2", "m3"} {
		if i > 0 {
			time.Sleep(river.FetchCooldownDefault + 50*time.Millisecond)
		}
		tx, err := db.SQL().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := q.EnqueueProcessing(ctx, tx, id); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-svc.done:
			if got != id {
				t.Errorf("processed %s, want %s", got, id)
			}
		case <-time.After(30 * time.Second): // hang guard; every poll is an hour away
			t.Fatalf("the job for %s, inserted with a committed transaction, was not taken", id)
		}
	}
}
