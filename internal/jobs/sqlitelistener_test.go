package jobs_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"golang.org/x/sync/semaphore"

	"github.com/spoolhq/spool/internal/database"
	"github.com/spoolhq/spool/internal/database/dbtest"
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

// startWorking starts q working jobs with svc until the test ends.
func startWorking(t *testing.T, q *jobs.Queue, svc jobs.Service) {
	t.Helper()
	ctx := context.Background()
	if err := q.Start(ctx, svc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := q.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
}

// taken fails the test unless the next job processed is id's, within a
// hang guard: the tests' queues poll once an hour.
func (s *processedService) taken(t *testing.T, id, how string) {
	t.Helper()
	select {
	case got := <-s.done:
		if got != id {
			t.Fatalf("processed %s, want %s", got, id)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the job for %s, %s, was not taken", id, how)
	}
}

// On SQLite a job inserted with a transaction is taken as soon as the
// transaction commits: the notification River writes with it wakes the
// queue. Here nothing else could, after the first job: the queue polls
// for jobs once an hour, its listener reads when nothing woke it once an
// hour, and the queue is not told of the commits (TxDone). River writes
// a queue's insert notification at most once per its fetch cooldown,
// 100 ms, hence the sleeps; TestSQLiteJobsOfABurstAreTakenAsTheyCommit
// has the jobs inserted sooner.
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
	startWorking(t, q, svc)
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
		svc.taken(t, id, "inserted with a committed transaction")
	}
}

// Jobs inserted one after another, each with a transaction of its own,
// are each taken as their transaction commits once the queue is told
// (TxDone), though River writes an insert notification for at most one
// of them: its limiter lets one a queue through every 100 ms, and here
// the next job is inserted as soon as the last one is done (after a
// rolled-back one, whose notification River counted). The queue polls
// once an hour; on SQLite its listener reads the notification table once
// an hour when nothing wakes it.
func TestSQLiteJobsOfABurstAreTakenAsTheyCommit(t *testing.T) {
	db := migratedSQLite(t)
	burstTakenAsCommitted(t, db, jobs.WithListenerFallback(jobs.Config{}, time.Hour))
}

// TestPostgresJobsOfABurstAreTakenAsTheyCommit is the same on
// PostgreSQL, where River LISTENs on a connection of ListenPool's.
func TestPostgresJobsOfABurstAreTakenAsTheyCommit(t *testing.T) {
	db := migratedPostgres(t)
	burstTakenAsCommitted(t, db, jobs.Config{ListenPool: db.ListenPool()})
}

func burstTakenAsCommitted(t *testing.T, db *database.DB, cfg jobs.Config) {
	cfg.PollInterval, cfg.ManualSweeps = time.Hour, true
	q, err := jobs.New(db.SQL(), db.Dialect, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	svc := &processedService{done: make(chan string, 8)}
	startWorking(t, q, svc)
	for _, id := range []string{"m1", "m2", "m3", "m4", "m5"} {
		enqueueIn(t, db, q, id+"-rolled-back", false)
		enqueueIn(t, db, q, id, true)
		svc.taken(t, id, "inserted with a committed transaction")
	}
}

// enqueueIn enqueues the processing of id in a transaction of its own,
// which it commits or rolls back, and tells q.
func enqueueIn(t *testing.T, db *database.DB, q *jobs.Queue, id string, commit bool) {
	t.Helper()
	ctx := context.Background()
	tx, err := db.SQL().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.EnqueueProcessing(ctx, tx, id); err != nil {
		t.Fatal(err)
	}
	if commit {
		err = tx.Commit()
	} else {
		err = tx.Rollback()
	}
	if err != nil {
		t.Fatal(err)
	}
	q.TxDone(tx, commit)
}

// On PostgreSQL a replica that LISTENs is woken by another replica's
// insert, which it was not told of: the notification River sends with it.
func TestPostgresReplicaWokenByAnothersInsert(t *testing.T) {
	db := migratedPostgres(t)
	worker, inserter := replicas(t, db)
	svc := &processedService{done: make(chan string, 4)}
	startWorking(t, worker, svc)
	for i, id := range []string{"m1", "m2"} {
		if i > 0 {
			time.Sleep(river.FetchCooldownDefault + 50*time.Millisecond) // River's limiter
		}
		enqueueIn(t, db, inserter, id, true)
		svc.taken(t, id, "inserted by another replica")
	}
}

// When River's LISTEN connection is lost (PostgreSQL restarted, a proxy
// between cut), River connects again and LISTENs once more: another
// replica's insert wakes the replica again. Both queues poll once an
// hour, so only the notification can.
func TestPostgresListenerBackAfterItsConnectionIsLost(t *testing.T) {
	db := migratedPostgres(t)
	worker, inserter := replicas(t, db)
	svc := &processedService{done: make(chan string, 256)}
	startWorking(t, worker, svc)
	enqueueIn(t, db, inserter, "m1", true)
	svc.taken(t, "m1", "inserted by another replica before the LISTEN connection was lost")

	lost := listenerBackend(t, db, 0)
	var cut bool
	if err := db.SQL().QueryRowContext(context.Background(), "SELECT pg_terminate_backend($1)", lost).Scan(&cut); err != nil || !cut {
		t.Fatalf("terminating the LISTEN connection (pid %d): %t, %v", lost, cut, err)
	}
	listenerBackend(t, db, lost)
	// River LISTENs to its topics one after another: an insert notified
	// before it listens to inserts again is not heard (and, with the
	// hourly poll, never taken). So the other replica inserts until one
	// is taken, each after River's limiter lets its notification through.
	deadline := time.Now().Add(30 * time.Second) // a hang guard
	for i := 0; ; i++ {
		enqueueIn(t, db, inserter, fmt.Sprint("m2-", i), true)
		select {
		case <-svc.done:
			return
		case <-time.After(river.FetchCooldownDefault + 100*time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("none of %d jobs inserted by another replica after the LISTEN connection came back was taken", i+1)
		}
	}
}

// replicas are two job queues on db that poll once an hour: one that
// LISTENs (to work), one that does not (to insert).
func replicas(t *testing.T, db *database.DB) (worker, inserter *jobs.Queue) {
	t.Helper()
	cfg := jobs.Config{PollInterval: time.Hour, ManualSweeps: true, ListenPool: db.ListenPool()}
	worker, err := jobs.New(db.SQL(), db.Dialect, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ListenPool = nil
	inserter, err = jobs.New(db.SQL(), db.Dialect, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return worker, inserter
}

// listenerBackend waits for the job queue's LISTEN connection, other
// than the backend not, to have LISTENed, and returns its backend's pid.
func listenerBackend(t *testing.T, db *database.DB, not int) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // a hang guard
	for {
		var pid int
		err := db.SQL().QueryRowContext(context.Background(), `SELECT pid FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = $1 AND pid <> $2 AND query LIKE 'LISTEN%'`,
			database.ListenApplicationName, not).Scan(&pid)
		if err == nil {
			return pid
		}
		if !errors.Is(err, sql.ErrNoRows) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no LISTEN connection but pid %d after 30 s", not)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// migratedPostgres is a scratch PostgreSQL database with the job queue's
// tables, closed when the test ends.
func migratedPostgres(t *testing.T) *database.DB {
	t.Helper()
	return migrated(t, dbtest.Postgres(t), "")
}
