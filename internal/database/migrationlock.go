package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pressly/goose/v3/lock"
)

// migrationLockWait is how long a replica waits for another's migrations
// (MigrationLock) before it gives up starting: longer than any of spool's
// migrations takes on a large database (docs/OPERATIONS.md, "Schema
// migrations in a deploy").
const migrationLockWait = 5 * time.Minute

// MigrationLock takes the PostgreSQL advisory lock id on db, waiting up to
// migrationLockWait for a replica that holds it, and returns what lets it
// go. It is for work that replicas starting at once must do one at a time
// (migrations), on other connections of db's pool meanwhile.
//
// The lock belongs to a transaction of its own, open on a connection of
// its own until release, rather than to a session: behind a pooler in
// transaction mode (PgBouncer) a session's statements go to whichever
// server connection is free, so a session's lock could be taken on one
// and its unlock sent to another. The lock then stayed with the pooled
// connection for good, and every later start waited on it; or a second
// replica's statement reached the same server connection, took the lock
// again as its own, and migrated beside the first. A transaction keeps
// one server connection for as long as it is open, whatever the pooler,
// and its lock goes with it when the holder dies or its connection is
// dropped (the server's keepalive finds a vanished one: dial.go).
func MigrationLock(ctx context.Context, db *sql.DB, id int64) (release func() error, err error) {
	return migrationLock(ctx, db, id, migrationLockWait)
}

// migrationLock is MigrationLock waiting up to wait.
func migrationLock(ctx context.Context, db *sql.DB, id int64, wait time.Duration) (release func() error, err error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	// The wait is bounded by the server, as lock_timeout: a context's
	// deadline would end the transaction, and with it the lock, if it
	// passed while the work under the lock still ran.
	if _, err = tx.ExecContext(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d", wait.Milliseconds())); err == nil {
		_, err = tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", id)
	}
	if err != nil {
		_ = tx.Rollback()
		_ = conn.Close()
		if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == lockNotAvailable {
			return nil, fmt.Errorf("another replica's migrations held PostgreSQL advisory lock %#x for longer than %v: %w", id, wait, err)
		}
		return nil, err
	}
	return func() error {
		err := tx.Commit()
		return errors.Join(err, conn.Close())
	}, nil
}

// migrationLocker is goose's lock.Locker over MigrationLock.
type migrationLocker struct {
	id      int64
	release func() error
}

var _ lock.Locker = (*migrationLocker)(nil)

func (l *migrationLocker) Lock(ctx context.Context, db *sql.DB) error {
	release, err := MigrationLock(ctx, db, l.id)
	if err != nil {
		return err
	}
	l.release = release
	return nil
}

func (l *migrationLocker) Unlock(context.Context, *sql.DB) error {
	if l.release == nil {
		return errors.New("database: the migration lock is not held")
	}
	release := l.release
	l.release = nil
	return release()
}
