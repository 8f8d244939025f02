package jobs_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/spoolhq/spool/internal/database"
	"github.com/spoolhq/spool/internal/jobs"
	"github.com/spoolhq/spool/internal/upload"
)

// failingService fails every purge: with an error, or a panic for the
// media "panics". It stands in for the upload service, whose purges do
// not fail on demand; the queue and its database are real.
type failingService struct {
	mu    sync.Mutex
	calls map[string]int // purges attempted, by media id
}

func (s *failingService) attempts(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[id]
}

func (s *failingService) PurgeMedia(_ context.Context, id string) error {
	s.mu.Lock()
	s.calls[id]++
	s.mu.Unlock()
	if id == "panics" {
		panic("purging " + id)
	}
	return errors.New("storage unavailable")
}

func (s *failingService) ProcessMedia(context.Context, string, *semaphore.Weighted) error { return nil }
func (s *failingService) FailProcessing(context.Context, string, string) error            { return nil }
func (s *failingService) Sweep(context.Context) (upload.SweepResult, error) {
	return upload.SweepResult{}, nil
}
func (s *failingService) RemoveOrphans(context.Context) (int, error) { return 0, nil }

// failures records OnFailure's calls by kind.
type failures struct {
	mu     sync.Mutex
	byKind map[string]int
}

func (f *failures) record(kind string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.byKind[kind]++
}

func (f *failures) of(kind string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.byKind[kind]
}

// migratedSQLite is an embedded database with the job queue's tables,
// closed when the test ends.
func migratedSQLite(t *testing.T) *database.DB {
	t.Helper()
	return migrated(t, "", filepath.Join(t.TempDir(), database.SQLiteFile))
}

// migrated opens the database at dbURL (SQLite at path if empty), as
// database.Open does, with the job queue's tables, closed when the test
// ends.
func migrated(t *testing.T, dbURL, path string) *database.DB {
	t.Helper()
	db, err := database.Open(context.Background(), dbURL, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := jobs.Migrate(context.Background(), db.SQL(), db.Dialect); err != nil {
		t.Fatal(err)
	}
	return db
}

// TestQueueMetrics: CountUnfinished counts the jobs waiting, and
// OnFailure hears of every failed attempt, by kind, panics included.
func TestQueueMetrics(t *testing.T) {
	ctx := context.Background()
	db := migratedSQLite(t)
	failed := &failures{byKind: map[string]int{}}
	q, err := jobs.New(db.SQL(), db.Dialect, jobs.Config{
		PollInterval: 20 * time.Millisecond, ManualSweeps: true, OnFailure: failed.record,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}

	counts, err := q.CountUnfinished(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(counts) != 0 {
		t.Errorf("unfinished jobs of an empty queue: %v, want none", counts)
	}
	for _, id := range []string{"fails", "panics"} {
		if err := q.EnqueuePurge(ctx, nil, id); err != nil {
			t.Fatal(err)
		}
	}
	counts, err = q.CountUnfinished(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts["available"] != 2 || len(counts) != 1 {
		t.Errorf("unfinished jobs before the queue starts: %v, want available: 2", counts)
	}

	svc := &failingService{calls: map[string]int{}}
	if err := q.Start(ctx, svc); err != nil {
		t.Fatal(err)
	}
	// Hang guard: both purges are tried within the first poll or two.
	deadline := time.Now().Add(30 * time.Second)
	for svc.attempts("fails") == 0 || svc.attempts("panics") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("purges attempted: fails %d, panics %d; want both", svc.attempts("fails"), svc.attempts("panics"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := q.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	attempts := svc.attempts("fails") + svc.attempts("panics")
	if got := failed.of(jobs.PurgeArgs{}.Kind()); got != attempts {
		t.Errorf("failures of %s: %d, want one per attempt (%d)", jobs.PurgeArgs{}.Kind(), got, attempts)
	}
	counts, err = q.CountUnfinished(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if total := counts["available"] + counts["running"] + counts["retryable"] + counts["scheduled"]; total != 2 {
		t.Errorf("unfinished jobs after failed attempts: %v, want both purges, to retry", counts)
	}
}
