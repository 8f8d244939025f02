package jobs_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/spoolhq/spool/internal/jobs"
	"github.com/spoolhq/spool/internal/upload"
)

// overlappingService stands in for the upload service's processing: each
// call waits until release is closed, and counts how many run at once.
// The first call for "busy" answers ErrProcessingBusy, as ProcessMedia
// does when every slot stayed taken.
type overlappingService struct {
	failingService
	release chan struct{}

	mu       sync.Mutex
	running  int
	most     int
	done     map[string]int
	slots    *semaphore.Weighted
	busySeen bool
}

func (s *overlappingService) ProcessMedia(_ context.Context, id string, slots *semaphore.Weighted) error {
	s.mu.Lock()
	s.slots = slots
	if id == "busy" && !s.busySeen {
		s.busySeen = true
		s.mu.Unlock()
		return upload.ErrProcessingBusy
	}
	s.running++
	s.most = max(s.most, s.running)
	s.mu.Unlock()
	<-s.release
	s.mu.Lock()
	s.running--
	s.done[id]++
	s.mu.Unlock()
	return nil
}

func (s *overlappingService) state() (running, most int, done map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := make(map[string]int, len(s.done))
	for k, v := range s.done {
		d[k] = v
	}
	return s.running, s.most, d
}

// TestProcessingJobsOverlap: a replica with one processing worker runs
// four processing jobs at once, which share that worker's one slot for
// their bytes (upload.Service.ProcessMedia takes it), and a job that
// found the slots busy is snoozed, not failed, and runs again.
func TestProcessingJobsOverlap(t *testing.T) {
	ctx := context.Background()
	db := migratedSQLite(t)
	failed := &failures{byKind: map[string]int{}}
	q, err := jobs.New(db.SQL(), db.Dialect, jobs.Config{
		ProcessingWorkers: 1, PollInterval: 20 * time.Millisecond, ManualSweeps: true, OnFailure: failed.record,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{"m1", "m2", "m3", "m4", "m5", "m6"}
	for _, id := range ids {
		if err := q.EnqueueProcessing(ctx, nil, id); err != nil {
			t.Fatal(err)
		}
	}
	svc := &overlappingService{release: make(chan struct{}), done: map[string]int{}}
	if err := q.Start(ctx, svc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := q.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	wait := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second) // hang guard
		for !ok() {
			if time.Now().After(deadline) {
				running, most, done := svc.state()
				t.Fatalf("%s: running %d, at most %d, done %v", what, running, most, done)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	wait("four jobs running at once", func() bool { running, _, _ := svc.state(); return running == 4 })
	time.Sleep(200 * time.Millisecond) // time enough for a fifth to start, if one could
	if _, most, _ := svc.state(); most != 4 {
		t.Errorf("jobs running at once: at most %d, want 4 for one processing worker", most)
	}
	svc.mu.Lock()
	slots := svc.slots
	svc.mu.Unlock()
	if slots == nil || !slots.TryAcquire(1) {
		t.Fatal("the jobs got no free slot")
	}
	if slots.TryAcquire(1) {
		t.Error("the jobs' slots admit two; want one, the processing workers")
	}
	slots.Release(1)

	if err := q.EnqueueProcessing(ctx, nil, "busy"); err != nil {
		t.Fatal(err)
	}
	close(svc.release)
	wait("every job done", func() bool {
		_, _, done := svc.state()
		for _, id := range append(ids, "busy") {
			if done[id] != 1 {
				return false
			}
		}
		return true
	})
	if n := failed.of(jobs.ProcessArgs{}.Kind()); n != 0 {
		t.Errorf("failed processing attempts: %d, want none (a busy answer is a snooze)", n)
	}
}
