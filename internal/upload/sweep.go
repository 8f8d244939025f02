package upload

import (
	"context"
	"fmt"
	"time"

	"github.com/spoolhq/spool/ent/mediafile"
	"github.com/spoolhq/spool/ent/uploadsession"
)

// SweepResult counts what one sweep did.
type SweepResult struct {
	Expired   int // sessions past their expiry, now EXPIRED with bytes freed
	Freed     int // stopped sessions whose bytes a failed free left behind
	Processed int // media files stuck PROCESSING whose job was re-queued (or found queued)
	Purged    int // deleted media files whose purge was re-queued (or found queued)
}

// sweepBatch bounds how much one sweep takes on, so a backlog is worked
// off over several passes instead of in one long one.
const sweepBatch = 500

// stuckAfter is how long a media file stays PROCESSING before the
// sweeper makes sure it has a job. Its job is queued with it, so only a
// job that gave up without settling the media (or a database from
// before jobs) leaves one stuck.
const stuckAfter = time.Minute

// Sweep expires unfinished uploads whose time is up, frees the bytes of
// stopped uploads that a failure left behind (and says their progress
// again: afterStop), re-queues the processing of media files stuck
// PROCESSING and the purge of deleted media whose bytes are still stored
// (docs/DESIGN.md, invariant 7). It runs as a periodic job
// (internal/jobs); several sweeps at once are safe: every step is
// conditional and idempotent, and a job is queued only if the media file
// has none waiting or running.
func (s *Service) Sweep(ctx context.Context) (SweepResult, error) {
	var r SweepResult
	// Its four reads by status, time or flag, planned at each run on
	// PostgreSQL; their writes are by id.
	reads := s.plannedEachRun(ctx)
	due, err := s.db.UploadSession.Query().
		Where(uploadsession.StatusIn(StatusInitialized, StatusUploading, StatusAssembling),
			uploadsession.ExpiresAtLTE(s.now())).
		Limit(sweepBatch).IDs(reads)
	if err != nil {
		return r, err
	}
	for _, id := range due {
		ok, err := s.stop(ctx, id, StatusExpired, StatusInitialized, StatusUploading, StatusAssembling)
		if err != nil {
			return r, err
		}
		if ok {
			r.Expired++
		}
	}
	leftovers, err := s.db.UploadSession.Query().
		Where(uploadsession.StatusIn(StatusCancelled, StatusExpired, StatusFailed),
			uploadsession.BytesFreed(false)).
		Limit(sweepBatch).All(reads)
	if err != nil {
		return r, err
	}
	for _, sess := range leftovers {
		s.afterStop(ctx, sess)
		r.Freed++
	}
	stuck, err := s.db.MediaFile.Query().
		Where(mediafile.StatusEQ(mediafile.StatusPROCESSING), mediafile.DeletedAtIsNil(),
			mediafile.CreatedAtLT(s.now().Add(-stuckAfter))).
		Limit(sweepBatch).IDs(reads)
	if err != nil {
		return r, err
	}
	for _, id := range stuck {
		if err := s.queue.EnqueueProcessing(ctx, nil, id); err != nil {
			return r, fmt.Errorf("re-queueing the processing of %s: %w", id, err)
		}
		r.Processed++
	}
	deleted, err := s.db.MediaFile.Query().
		Where(mediafile.DeletedAtNotNil(), mediafile.PurgedAtIsNil()).
		Limit(sweepBatch).IDs(reads)
	if err != nil {
		return r, err
	}
	for _, id := range deleted {
		if err := s.queue.EnqueuePurge(ctx, nil, id); err != nil {
			return r, fmt.Errorf("re-queueing the purge of %s: %w", id, err)
		}
		r.Purged++
	}
	if r != (SweepResult{}) {
		s.log.InfoContext(ctx, "swept", "expired", r.Expired, "freed", r.Freed, "processing_queued", r.Processed, "purges_queued", r.Purged)
	}
	return r, nil
}
