package jobs

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/riverqueue/river"

	"github.com/spoolhq/spool/internal/upload"
)

// ProcessArgs is the job that processes one completed media file
// (upload.Service.ProcessMedia); one per file waits or runs at a time.
type ProcessArgs struct {
	MediaID string `json:"media_id"`
}

// Kind names the job in River's table.
func (ProcessArgs) Kind() string { return "spool_process_media" }

// InsertOpts makes the job unique per media file among live jobs.
func (ProcessArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: queueProcess, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: liveStates}}
}

// PurgeArgs is the job that removes a deleted media file's bytes
// (upload.Service.PurgeMedia).
type PurgeArgs struct {
	MediaID string `json:"media_id"`
}

// Kind names the job in River's table.
func (PurgeArgs) Kind() string { return "spool_purge_media" }

// InsertOpts makes the job unique per media file among live jobs.
func (PurgeArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: liveStates}}
}

// SweepArgs is the periodic sweep (upload.Service.Sweep). River's leader
// inserts it, so one replica sweeps at a time.
type SweepArgs struct{}

// Kind names the job in River's table.
func (SweepArgs) Kind() string { return "spool_sweep" }

// InsertOpts keeps one sweep live at a time, and gives up on a failed
// one quickly: the next period brings another.
func (SweepArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: 3, UniqueOpts: river.UniqueOpts{ByState: liveStates}}
}

// OrphansArgs is the periodic removal of stored bytes that no record
// owns (upload.Service.RemoveOrphans). It reads every media row, so it
// runs less often than the sweep; River's leader inserts it.
type OrphansArgs struct{}

// Kind names the job in River's table.
func (OrphansArgs) Kind() string { return "spool_remove_orphans" }

// InsertOpts keeps one pass live at a time; a failed one waits for the
// next period after a few quick retries.
func (OrphansArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: 3, UniqueOpts: river.UniqueOpts{ByState: liveStates}}
}

// retryDelay is the wait before attempt n+1 after n failed: 0.5 s
// doubling, capped at 5 s, with ±20 % jitter. The cap is low so that a
// database or storage blip of a few seconds costs seconds, not minutes;
// MaxAttempts (25 by default) then spans about two minutes of trouble.
func retryDelay(attempt int) time.Duration {
	d := 500 * time.Millisecond << min(attempt-1, 4)
	d = min(d, 5*time.Second)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// processingBusySnooze is how long a processing job that found every
// slot busy waits in the queue before it is fetched again.
const processingBusySnooze = 5 * time.Second

type processWorker struct {
	river.WorkerDefaults[ProcessArgs]
	q *Queue
}

// rideOutFor is how long an attempt retries its work in place while the
// database or storage is unavailable, before it ends with the error.
// River records an attempt's end in the database; during an outage that
// write fails too, and after three tries (~7 s) River gives up and leaves
// the job running: on SQLite until --job-rescue-after (35 minutes by
// default), a media file PROCESSING all that time, or no sweep, since a
// running one blocks the next; on PostgreSQL until the replica takes it
// back (lostfetch.go), to run it again. An attempt that outlasts a short
// outage ends once the database answers again, and its end is recorded.
const rideOutFor = 30 * time.Second

// rideOut runs work, and again on retryDelay's delays while it fails for
// an outage, for up to rideOutFor or until ctx ends.
func rideOut(ctx context.Context, work func() error) error {
	err := work()
	for deadline, n := time.Now().Add(rideOutFor), 1; err != nil && outage(err) && time.Now().Before(deadline); n++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(retryDelay(n)):
		}
		err = work()
	}
	return err
}

func (w *processWorker) Work(ctx context.Context, job *river.Job[ProcessArgs]) error {
	err := rideOut(ctx, func() error { return w.q.svc.ProcessMedia(ctx, job.Args.MediaID, w.q.processingSlots) })
	if errors.Is(err, upload.ErrProcessingBusy) {
		// Larger files held every slot: run again soon, as the same
		// attempt (a snooze counts none).
		return river.JobSnooze(processingBusySnooze)
	}
	if err == nil || ctx.Err() != nil {
		// A cancelled context is a stop (River makes the job available
		// again without counting the attempt) or the job's timeout.
		return err
	}
	if job.Attempt < job.MaxAttempts {
		w.q.log.Warn("processing failed; will retry", "media_id", job.Args.MediaID, "attempt", job.Attempt, "err", err)
		return err
	}
	w.q.log.Error("processing failed on its last attempt", "media_id", job.Args.MediaID, "attempt", job.Attempt, "err", err)
	problem := fmt.Sprintf("spool could not process the file after %d attempts (storage or database unavailable); upload it again", job.Attempt)
	if ferr := w.q.svc.FailProcessing(ctx, job.Args.MediaID, problem); ferr != nil {
		// The job is discarded still PROCESSING; the sweeper queues it again.
		return fmt.Errorf("%w; marking it FAILED: %w", err, ferr)
	}
	return nil
}

// outage reports whether err is the database's or storage's being
// unreachable, which passes, rather than something about the file.
func outage(err error) bool {
	switch upload.ErrorCode(err) {
	case upload.CodeUnavailable, upload.CodeStorageUnavailable:
		return true
	}
	return false
}

func (w *processWorker) NextRetry(job *river.Job[ProcessArgs]) time.Time {
	return time.Now().Add(retryDelay(job.Attempt))
}

func (w *processWorker) Timeout(*river.Job[ProcessArgs]) time.Duration { return w.q.cfg.JobTimeout }

type purgeWorker struct {
	river.WorkerDefaults[PurgeArgs]
	q *Queue
}

func (w *purgeWorker) Work(ctx context.Context, job *river.Job[PurgeArgs]) error {
	return rideOut(ctx, func() error { return w.q.svc.PurgeMedia(ctx, job.Args.MediaID) })
}

// NextRetry waits longer than processing does (up to 5 minutes): nobody
// waits on a purge, and the sweeper queues a discarded one again.
func (w *purgeWorker) NextRetry(job *river.Job[PurgeArgs]) time.Time {
	return time.Now().Add(min(retryDelay(job.Attempt)<<min(job.Attempt, 6), 5*time.Minute))
}

type sweepWorker struct {
	river.WorkerDefaults[SweepArgs]
	q *Queue
}

func (w *sweepWorker) Work(ctx context.Context, _ *river.Job[SweepArgs]) error {
	return rideOut(ctx, func() error {
		_, err := w.q.svc.Sweep(ctx)
		return err
	})
}

func (w *sweepWorker) NextRetry(job *river.Job[SweepArgs]) time.Time {
	return time.Now().Add(retryDelay(job.Attempt))
}

type orphansWorker struct {
	river.WorkerDefaults[OrphansArgs]
	q *Queue
}

func (w *orphansWorker) Work(ctx context.Context, _ *river.Job[OrphansArgs]) error {
	var n int
	err := rideOut(ctx, func() error {
		removed, err := w.q.svc.RemoveOrphans(ctx)
		n += removed
		return err
	})
	if n > 0 {
		w.q.log.Info("removed orphaned bytes", "items", n)
	}
	return err
}

func (w *orphansWorker) NextRetry(job *river.Job[OrphansArgs]) time.Time {
	return time.Now().Add(retryDelay(job.Attempt))
}
