package upload

import (
	"context"
	"time"

	"github.com/spoolhq/spool/ent/mediafile"
	"github.com/spoolhq/spool/ent/uploadsession"
)

// SweepResult counts what one sweep did.
type SweepResult struct {
	Expired   int // sessions past their expiry, now EXPIRED with bytes freed
	Freed     int // stopped sessions whose bytes a failed free left behind
	Processed int // media files whose processing was (re)started
	Purged    int // deleted media files whose bytes were removed
}

// sweepBatch bounds how much one sweep takes on, so a backlog is worked
// off over several passes instead of in one long one.
const sweepBatch = 500

// Sweep expires unfinished uploads whose time is up, frees the bytes of
// stopped uploads that a failure left behind, restarts processing cut off
// by a crash and removes deleted media's bytes (docs/DESIGN.md,
// invariant 7). Several replicas may sweep at once: every step is
// conditional and idempotent.
func (s *Service) Sweep(ctx context.Context) (SweepResult, error) {
	var r SweepResult
	due, err := s.db.UploadSession.Query().
		Where(uploadsession.StatusIn(StatusInitialized, StatusUploading, StatusAssembling),
			uploadsession.ExpiresAtLTE(s.now())).
		Limit(sweepBatch).IDs(ctx)
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
		Limit(sweepBatch).All(ctx)
	if err != nil {
		return r, err
	}
	for _, sess := range leftovers {
		s.freeBytes(ctx, sess)
		r.Freed++
	}
	stuck, err := s.db.MediaFile.Query().
		Where(mediafile.StatusEQ(mediafile.StatusPROCESSING), mediafile.DeletedAtIsNil(),
			mediafile.CreatedAtLT(s.now().Add(-time.Minute))).
		Limit(sweepBatch).IDs(ctx)
	if err != nil {
		return r, err
	}
	for _, id := range stuck {
		s.process(ctx, id)
		r.Processed++
	}
	deleted, err := s.db.MediaFile.Query().
		Where(mediafile.DeletedAtNotNil(), mediafile.PurgedAtIsNil()).
		Limit(sweepBatch).All(ctx)
	if err != nil {
		return r, err
	}
	for _, m := range deleted {
		s.deleteObject(ctx, m)
		r.Purged++
	}
	return r, nil
}

// RunSweeper sweeps every interval until ctx is done.
func (s *Service) RunSweeper(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r, err := s.Sweep(ctx)
			if err != nil && ctx.Err() == nil {
				s.log.Warn("sweep failed", "err", err)
			}
			if r != (SweepResult{}) {
				s.log.Info("swept", "expired", r.Expired, "freed", r.Freed, "processed", r.Processed, "purged", r.Purged)
			}
		}
	}
}
