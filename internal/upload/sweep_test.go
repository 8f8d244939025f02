package upload_test

import (
	"context"
	"testing"
	"time"

	"entgo.io/ent/dialect"

	"github.com/spoolhq/spool/ent/mediafile"
	"github.com/spoolhq/spool/internal/storage/localfs"
	"github.com/spoolhq/spool/internal/upload"
)

func TestSweepExpiresAndFrees(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	owner := e.user(t, "alice")
	ctx := context.Background()

	fresh := e.initOne(t, owner, mp4Spec("fresh.mp4", file11))
	partial := e.initOne(t, owner, mp4Spec("partial.mp4", file11))
	e.mustSend(t, partial.ID, 0, file11)
	e.mustSend(t, partial.ID, 2, file11)
	done := e.initOne(t, owner, mp4Spec("done.mp4", file11))
	e.sendAll(t, done, file11)
	media, err := e.svc.Complete(ctx, owner, done.ID)
	if err != nil {
		t.Fatal(err)
	}
	if m := e.waitMedia(t, owner, media.ID); m.Status != mediafile.StatusREADY {
		t.Fatalf("media status = %s, want READY", m.Status)
	}
	staging := map[string]string{fresh.ID: e.stagingPath(t, fresh.ID), partial.ID: e.stagingPath(t, partial.ID)}
	for id, p := range staging {
		if !exists(t, p) {
			t.Fatalf("staging file of %s missing before the sweep", id)
		}
	}
	if got, want := e.reserved(t, owner), 33*MiB; got != want {
		t.Fatalf("reserved = %d, want %d", got, want)
	}

	// Before expiry the sweep has nothing to do.
	e.clock.Advance(time.Hour - time.Second)
	r, err := e.svc.Sweep(ctx)
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if r != (upload.SweepResult{}) {
		t.Fatalf("Sweep before expiry = %+v, want nothing done", r)
	}

	e.clock.Advance(time.Second)
	r, err = e.svc.Sweep(ctx)
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if want := (upload.SweepResult{Expired: 2}); r != want {
		t.Fatalf("Sweep = %+v, want %+v", r, want)
	}
	for id, p := range staging {
		s := e.stored(t, id)
		if s.Status != upload.StatusExpired || !s.BytesFreed {
			t.Errorf("upload %s = %s, bytes freed %v; want EXPIRED, true", id, s.Status, s.BytesFreed)
		}
		if exists(t, p) {
			t.Errorf("staging file %s still exists after the sweep", p)
		}
	}
	if got, want := e.reserved(t, owner), 11*MiB; got != want {
		t.Errorf("reserved after the sweep = %d, want %d (only the completed file)", got, want)
	}
	if st := e.stored(t, done.ID).Status; st != upload.StatusCompleted {
		t.Errorf("completed upload = %s after the sweep, want COMPLETED", st)
	}
	if got := readMedia(t, e, media.ID); len(got) != len(file11) {
		t.Errorf("completed file is %d bytes after the sweep, want %d", len(got), len(file11))
	}
	_, err = e.svc.ConfirmChunk(ctx, owner, partial.ID, 0, 5*MiB, nil)
	wantCode(t, err, upload.CodeSessionExpired)

	r, err = e.svc.Sweep(ctx)
	if err != nil {
		t.Fatalf("second Sweep: %v", err)
	}
	if r != (upload.SweepResult{}) {
		t.Errorf("second Sweep = %+v, want nothing done", r)
	}
	if got, want := e.reserved(t, owner), 11*MiB; got != want {
		t.Errorf("reserved after the second sweep = %d, want %d", got, want)
	}
}

// TestSweepFinishesLeftovers: a stopped upload whose bytes were not freed
// (a crash between commit and discard) is freed by the sweeper.
func TestSweepFinishesLeftovers(t *testing.T) {
	t.Parallel()
	e := newTestService(t, testConfig())
	owner := e.user(t, "alice")
	ctx := context.Background()
	sess := e.initOne(t, owner, mp4Spec("a.mp4", file11))
	e.mustSend(t, sess.ID, 0, file11)
	staging := e.stagingPath(t, sess.ID)

	// Simulate the crash: the status moved, the bytes stayed.
	if err := e.db.UploadSession.UpdateOneID(sess.ID).SetStatus(upload.StatusCancelled).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := e.svc.Sweep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := (upload.SweepResult{Freed: 1}); r != want {
		t.Fatalf("Sweep = %+v, want %+v", r, want)
	}
	if exists(t, staging) {
		t.Errorf("staging file %s still exists", staging)
	}
	if !e.stored(t, sess.ID).BytesFreed {
		t.Errorf("bytes_freed = false, want true")
	}
	if r, _ := e.svc.Sweep(ctx); r != (upload.SweepResult{}) {
		t.Errorf("second Sweep = %+v, want nothing done", r)
	}
}

// The job queue sweeps on its own: an upload whose time is up ends
// EXPIRED with its bytes freed without anyone calling Sweep.
func TestPeriodicSweepExpires(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	store, err := localfs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	jobsCfg := testJobs(dialect.SQLite)
	jobsCfg.ManualSweeps = false
	jobsCfg.SweepInterval = 100 * time.Millisecond
	e := newTestServiceJobs(t, testConfig(), store, jobsCfg)
	e.dir = dir
	owner := e.user(t, "alice")
	sess := e.initOne(t, owner, mp4Spec("late.mp4", file11))
	e.mustSend(t, sess.ID, 0, file11)
	e.clock.Advance(time.Hour)

	// A hang guard, not a timing assertion.
	deadline := time.Now().Add(60 * time.Second)
	for {
		s := e.stored(t, sess.ID)
		if s.Status == upload.StatusExpired && s.BytesFreed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("upload still %s (bytes freed %v) 60 s after its expiry", s.Status, s.BytesFreed)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := e.reserved(t, owner); got != 0 {
		t.Errorf("reserved after the periodic sweep = %d, want 0", got)
	}
}
