package jobs_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/spoolhq/spool/internal/eventually"
	"github.com/spoolhq/spool/internal/jobs"
	"github.com/spoolhq/spool/internal/upload"
)

// purgeRecorder counts purges by media id; the purge of "slow" waits
// for release.
type purgeRecorder struct {
	mu      sync.Mutex
	calls   map[string]int
	release chan struct{}
}

func (s *purgeRecorder) PurgeMedia(_ context.Context, id string) error {
	s.mu.Lock()
	s.calls[id]++
	s.mu.Unlock()
	if id == "slow" {
		<-s.release
	}
	return nil
}

func (s *purgeRecorder) purges(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[id]
}

func (s *purgeRecorder) ProcessMedia(context.Context, string, *semaphore.Weighted) error { return nil }
func (s *purgeRecorder) FailProcessing(context.Context, string, string) error            { return nil }
func (s *purgeRecorder) Sweep(context.Context) (upload.SweepResult, error) {
	return upload.SweepResult{}, nil
}
func (s *purgeRecorder) RemoveOrphans(context.Context) (int, error) { return 0, nil }

// TestLostFetchTakenBack plays the state a lost fetch leaves on
// PostgreSQL (a job running, attempted by this replica, that no worker
// of it has: the fetch committed, its answer never came) and one a dead
// replica leaves (attempted by another). The replica must take back its
// own within a few LostFetchAfter and work it, leave the other's to
// River's rescue, and never take back a job one of its workers holds,
// however long that runs.
func TestLostFetchTakenBack(t *testing.T) {
	ctx := context.Background()
	db := migratedPostgres(t)
	const lostAfter = time.Second
	q, err := jobs.New(db.SQL(), db.Dialect, jobs.Config{
		PollInterval: 50 * time.Millisecond, ManualSweeps: true, LostFetchAfter: lostAfter,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"lost", "dead replica's"} {
		if err := q.EnqueuePurge(ctx, nil, id); err != nil {
			t.Fatal(err)
		}
	}
	// What the fetch's UPDATE would have left, a minute ago.
	lose := func(mediaID, by string) {
		t.Helper()
		res, err := db.SQL().ExecContext(ctx, `UPDATE river_job SET state = 'running', attempt = 1,
			attempted_at = now() - interval '1 minute', attempted_by = ARRAY[$1]
			WHERE args->>'media_id' = $2`, by, mediaID)
		if n, _ := res.RowsAffected(); err != nil || n != 1 {
			t.Fatalf("marking %s running: %d rows, %v", mediaID, n, err)
		}
	}
	lose("lost", q.ID())
	lose("dead replica's", "another-replica")
	state := func(mediaID string) string {
		t.Helper()
		var s string
		if err := db.SQL().QueryRowContext(ctx, `SELECT state FROM river_job WHERE args->>'media_id' = $1`, mediaID).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}

	svc := &purgeRecorder{calls: map[string]int{}, release: make(chan struct{})}
	if err := q.Start(ctx, svc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Stop(ctx) })
	eventually.Holds(t, "the lost job to be taken back and worked", func() bool { return state("lost") == "completed" })
	if n := svc.purges("lost"); n != 1 {
		t.Errorf("the lost job was worked %d times, want once", n)
	}
	if s, n := state("dead replica's"), svc.purges("dead replica's"); s != "running" || n != 0 {
		t.Errorf("another replica's running job: %s, worked %d times; want running, left to River's rescue", s, n)
	}

	// A job a worker holds for several LostFetchAfter stays its own.
	if err := q.EnqueuePurge(ctx, nil, "slow"); err != nil {
		t.Fatal(err)
	}
	eventually.Holds(t, "the slow purge to start", func() bool { return svc.purges("slow") == 1 })
	time.Sleep(4 * lostAfter)
	if s, n := state("slow"), svc.purges("slow"); s != "running" || n != 1 {
		t.Errorf("a job held by a worker for 4 × LostFetchAfter: %s, worked %d times; want running, once", s, n)
	}
	close(svc.release)
	eventually.Holds(t, "the slow purge to complete", func() bool { return state("slow") == "completed" })
	if n := svc.purges("slow"); n != 1 {
		t.Errorf("the slow purge ran %d times, want once", n)
	}
}
