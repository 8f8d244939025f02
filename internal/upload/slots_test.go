package upload_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/mediafile"
	"github.com/spoolhq/spool/internal/database"
	"github.com/spoolhq/spool/internal/media"
	"github.com/spoolhq/spool/internal/upload"
)

// TestProcessingTakesASlotForTheBytes: ProcessMedia reads a file's bytes
// only under one of its slots. With every slot taken it gives up after
// its wait, ErrProcessingBusy, the media untouched; with a slot freed
// while it waits it goes on, and gives the slot back when done.
func TestProcessingTakesASlotForTheBytes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e, owner, m := completedUnprocessed(t, nil)
	status := func() mediafile.Status {
		t.Helper()
		got, err := e.svc.Media(ctx, owner, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got.Status
	}

	slots := semaphore.NewWeighted(1)
	if err := slots.Acquire(ctx, 1); err != nil { // another file's
		t.Fatal(err)
	}
	upload.SetProcessingSlotWait(e.svc, 50*time.Millisecond)
	if err := e.svc.ProcessMedia(ctx, m.ID, slots); !errors.Is(err, upload.ErrProcessingBusy) {
		t.Fatalf("processing with every slot taken: %v, want ErrProcessingBusy", err)
	}
	if got := status(); got != mediafile.StatusPROCESSING {
		t.Fatalf("media after giving up = %s, want PROCESSING", got)
	}

	upload.SetProcessingSlotWait(e.svc, time.Minute)
	done := make(chan error, 1)
	go func() { done <- e.svc.ProcessMedia(ctx, m.ID, slots) }()
	select {
	case err := <-done:
		t.Fatalf("processing ended (%v) while every slot was taken", err)
	case <-time.After(100 * time.Millisecond):
	}
	slots.Release(1)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("processing once a slot was free: %v", err)
		}
	case <-time.After(30 * time.Second): // hang guard
		t.Fatal("processing did not end once a slot was free")
	}
	if got := status(); got != mediafile.StatusREADY {
		t.Errorf("media = %s, want READY", got)
	}
	if !slots.TryAcquire(1) {
		t.Error("processing kept its slot after it ended")
	}
}

// completedUnprocessed is a Service whose job queue is not worked (the
// test runs ProcessMedia), deriving with processor, and a completed
// upload of alice's whose media is PROCESSING.
func completedUnprocessed(t *testing.T, processor upload.Processor) (e *testEnv, owner string, m *ent.MediaFile) {
	t.Helper()
	ctx := context.Background()
	db, err := database.Open(ctx, "", filepath.Join(t.TempDir(), "spool.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e = newEnvOverWith(t, db.Client, db.SQL(), db.Dialect, t.TempDir(), testConfig(), processor)
	owner = e.user(t, "alice")
	sess := e.initOne(t, owner, mp4Spec("a.mp4", file11))
	e.sendAll(t, sess, file11)
	if m, err = e.svc.Complete(ctx, owner, sess.ID); err != nil {
		t.Fatal(err)
	}
	return e, owner, m
}

// panickingProcessor stands in for a decoder that panics on a file.
type panickingProcessor struct{}

func (panickingProcessor) Process(context.Context, string, string, string) (*media.Result, error) {
	panic("a decoder's bug")
}

// TestProcessingPanicGivesTheSlotBack: a panic while deriving (River
// recovers it and fails the attempt) still gives the slot back. A slot
// kept would stop processing on the replica for good.
func TestProcessingPanicGivesTheSlotBack(t *testing.T) {
	t.Parallel()
	e, _, m := completedUnprocessed(t, panickingProcessor{})
	slots := semaphore.NewWeighted(1)
	func() {
		defer func() {
			if r := recover(); r == nil {
				t.Error("ProcessMedia did not panic with a panicking processor")
			}
		}()
		_ = e.svc.ProcessMedia(context.Background(), m.ID, slots)
	}()
	if !slots.TryAcquire(1) {
		t.Error("the slot was kept after a panic while processing")
	}
}
