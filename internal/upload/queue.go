package upload

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/internal/database/sqltx"
)

// Queue is the durable job queue that runs the work a committed change
// leaves to do: processing a completed file (ProcessMedia) and removing
// a deleted file's bytes (PurgeMedia). internal/jobs implements it with
// River, shared by every replica (docs/DESIGN.md §Jobs).
//
// A job enqueued with a transaction is part of it: it exists if and only
// if the transaction commits, so no crash or database failure between
// the change and its job can lose the job. With tx nil the job is
// enqueued at once. Enqueueing a job for a media file that already has
// one waiting, retrying or running adds nothing.
type Queue interface {
	EnqueueProcessing(ctx context.Context, tx *sql.Tx, mediaID string) error
	EnqueuePurge(ctx context.Context, tx *sql.Tx, mediaID string) error
	// TxDone is told that tx, which may have enqueued jobs, has ended:
	// committed, its jobs are this replica's to take at once rather
	// than at its next look for jobs. Every tx given to the Enqueue
	// methods must be followed by TxDone, which forgets it.
	TxDone(tx *sql.Tx, committed bool)
}

// jobTx enqueues jobs into one transaction of the service's.
type jobTx struct {
	q  Queue
	tx *sql.Tx
}

func (j jobTx) process(ctx context.Context, mediaID string) error {
	if err := j.q.EnqueueProcessing(ctx, j.tx, mediaID); err != nil {
		return fmt.Errorf("queueing the processing of %s: %w", mediaID, err)
	}
	return nil
}

func (j jobTx) purge(ctx context.Context, mediaID string) error {
	if err := j.q.EnqueuePurge(ctx, j.tx, mediaID); err != nil {
		return fmt.Errorf("queueing the purge of %s: %w", mediaID, err)
	}
	return nil
}

// errNoSQLTx is returned when the ent client does not record its
// transactions (it is not built over sqltx.Wrap), so jobs cannot join
// them.
var errNoSQLTx = errors.New("upload: the ent client's driver must be wrapped with sqltx.Wrap so that jobs join its transactions")

// withJobTx runs fn in a transaction, as withTx does, giving it the means
// to enqueue jobs in that same transaction.
func (s *Service) withJobTx(ctx context.Context, fn func(tx *ent.Tx, jobs jobTx) error) error {
	slotCtx, slot := sqltx.WithSlot(ctx)
	tx, err := s.db.Tx(slotCtx)
	if err != nil {
		return fmt.Errorf("starting transaction: %w", err)
	}
	if slot.Tx() == nil {
		_ = tx.Rollback()
		return errNoSQLTx
	}
	if err := recovered(func() error { return fn(tx, jobTx{q: s.queue, tx: slot.Tx()}) }); err != nil {
		_ = tx.Rollback()
		s.queue.TxDone(slot.Tx(), false)
		return err
	}
	err = tx.Commit()
	s.queue.TxDone(slot.Tx(), err == nil)
	if err != nil {
		return fmt.Errorf("committing: %w", err)
	}
	return nil
}
