package database

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// checkpointEvery is how often the checkpointer copies the SQLite WAL
// back into the database file.
const checkpointEvery = time.Second

// autoCheckpointPages is SQLite's own checkpoint threshold on spool's
// connection, in 4 KiB pages: a backstop for when the checkpointer falls
// behind, far above what it lets the WAL reach.
const autoCheckpointPages = 16384

// checkpointer runs SQLite's WAL checkpoints on a connection of its own.
//
// A checkpoint copies committed pages from the WAL into the database
// file and fsyncs both. Left to SQLite (every 1000 pages by default) it
// runs inside whichever commit crosses the threshold, on spool's single
// connection, and every request waits behind its fsyncs: a chunk receipt
// measured 415/s at a quarter of a CPU that way. A PASSIVE checkpoint on
// another connection never blocks writers or readers, so commits go on
// while it syncs.
//
// A checkpoint that finds nothing to copy still takes the WAL's locks,
// and an idle server ran one a second: the checkpointer first asks
// whether another connection committed since its last checkpoint copied
// the whole WAL (PRAGMA data_version, which changes exactly then), and
// skips it if not.
type checkpointer struct {
	db *sql.DB
	// version reads PRAGMA data_version on the checkpointer's connection.
	version *sql.Stmt
	// copied is data_version when the last checkpoint copied every frame
	// of the WAL; valid only when clean.
	copied int64
	clean  bool
	log    *slog.Logger
	stop   chan struct{}
	done   sync.WaitGroup
	// closed makes close idempotent, like DB.Close.
	closed sync.Once
	err    error
}

// startCheckpointer opens a second connection to the file at dsn and
// checkpoints on it every checkpointEvery until close.
func startCheckpointer(ctx context.Context, open func() (*sql.DB, error), log *slog.Logger) (*checkpointer, error) {
	c, err := newCheckpointer(ctx, open, log)
	if err != nil {
		return nil, err
	}
	c.done.Go(c.run)
	return c, nil
}

// newCheckpointer opens the checkpointer's connection; checkpoint runs
// one, and run every checkpointEvery.
func newCheckpointer(ctx context.Context, open func() (*sql.DB, error), log *slog.Logger) (*checkpointer, error) {
	db, err := open()
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	version, err := db.PrepareContext(ctx, "PRAGMA data_version")
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return &checkpointer{db: db, version: version, log: log, stop: make(chan struct{})}, nil
}

func (c *checkpointer) run() {
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			if _, err := c.checkpoint(context.Background()); err != nil {
				c.log.Warn("checkpointing the SQLite WAL failed; SQLite's own checkpoints remain", "err", err)
			}
		}
	}
}

// checkpoint runs one PASSIVE checkpoint, unless nothing was committed
// since the last one copied the whole WAL, and reports whether it ran:
// it copies what no reader still needs and returns at once if a writer
// holds the lock.
func (c *checkpointer) checkpoint(ctx context.Context) (bool, error) {
	var version int64
	if err := c.version.QueryRowContext(ctx).Scan(&version); err != nil {
		return false, fmt.Errorf("data_version: %w", err)
	}
	if c.clean && version == c.copied {
		return false, nil
	}
	var busy, logFrames, done int
	if err := c.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logFrames, &done); err != nil {
		c.clean = false
		return true, fmt.Errorf("wal_checkpoint: %w", err)
	}
	// A commit between the two reads changed data_version: the next
	// tick sees it differ and checkpoints again.
	c.clean, c.copied = busy == 0 && done == logFrames, version
	return true, nil
}

// close stops the checkpoints and closes the connection; calling it
// again returns the first call's result.
func (c *checkpointer) close() error {
	c.closed.Do(func() {
		close(c.stop)
		c.done.Wait()
		_ = c.version.Close()
		c.err = c.db.Close()
	})
	return c.err
}
