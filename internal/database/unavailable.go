package database

import (
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// lockNotAvailable is PostgreSQL's lock_not_available: a statement
// waited for a lock held elsewhere (a manual transaction, a long
// migration) until lock_timeout, which a URL may set. spool takes no lock
// with NOWAIT, so it only ever means that, and a retry later may get it.
const lockNotAvailable = "55P03"

// queryCanceled is PostgreSQL's query_canceled: the server ended a
// statement, because it ran past the URL's statement_timeout or an
// operator cancelled it (pg_cancel_backend). spool's own cancellations
// never send PostgreSQL a cancel request: pgx ends a statement whose
// context is done by the connection's deadline (its default), and the
// caller sees context.Canceled. So the code only ever comes from the
// server, and a retry later, on a less loaded database, may succeed.
const queryCanceled = "57014"

// deadlockDetected (40P01) and serializationFailure (40001) are a
// transaction PostgreSQL rolled back so that another could go on: a
// deadlock with another session (spool takes its own locks in one order,
// docs/DESIGN.md, but a manual transaction or a migration need not), or
// a concurrent update met under an isolation level above READ COMMITTED
// (a URL's default_transaction_isolation). Nothing was decided, and the
// same request again may well succeed.
const (
	deadlockDetected     = "40P01"
	serializationFailure = "40001"
)

// Unavailable reports whether err says the database could not be reached
// or talked to, rather than that a statement was wrong: a retry later, on
// this replica or another, may well succeed. It is the one place that
// knows the drivers' ways of saying so; upload.ErrorCode turns such an
// error into UNAVAILABLE.
//
// Unavailable: a full disk (Full), PostgreSQL unreachable or refusing
// (pgconn.ConnectError, network errors, the connection closed or cut
// mid-statement: io.ErrUnexpectedEOF, driver.ErrBadConn, pgx's "conn
// closed"), server states that say so (SQLSTATE class 08 connection
// exception, 57P01-57P03 shutting down or starting, 53300 too many
// connections, 25006 a write refused by a server that takes none, as
// after a failover: readonly.go, 55P03 a lock held elsewhere past the
// URL's lock_timeout, 57014 a statement the server ended: the URL's
// statement_timeout or an operator's cancel, 40P01 and 40001 a
// transaction rolled back for a deadlock or a concurrent update),
// pgconn's timeouts (a context deadline met while connecting or waiting
// on the server), and SQLite busy or locked beyond its busy timeout. Not
// unavailable: constraint violations, syntax errors, ent's not-found, a
// caller's cancellation.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	if Full(err) {
		return true
	}
	var connect *pgconn.ConnectError
	var netErr *net.OpError
	if errors.As(err, &connect) || errors.As(err, &netErr) || pgconn.Timeout(err) {
		return true
	}
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch state := pgErr.SQLState(); state {
		case "57P01", "57P02", "57P03", "53300", readOnlySQLState, lockNotAvailable, queryCanceled,
			deadlockDetected, serializationFailure:
			return true
		default:
			return strings.HasPrefix(state, "08")
		}
	}
	var liteErr *sqlite.Error
	if errors.As(err, &liteErr) {
		switch liteErr.Code() & 0xff { // the primary code, without the extended bits
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return true
		}
		return false
	}
	// pgx's closed connection is a plain errors.New("conn closed")
	// (pgconn.ErrConnClosed, or an unexported lock error that says the
	// same).
	return errors.Is(err, pgconn.ErrConnClosed) || strings.Contains(err.Error(), "conn closed")
}

// Full reports whether err says the database's disk is full: SQLite's
// SQLITE_FULL, PostgreSQL's SQLSTATE 53100 (disk_full), or ENOSPC or
// EDQUOT from below either. The statement was undone, so it is
// Unavailable too, but no retry succeeds until someone frees space, and
// clients are told so (upload.ErrorMessage).
func Full(err error) bool {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.SQLState() == "53100"
	}
	var liteErr *sqlite.Error
	return errors.As(err, &liteErr) && liteErr.Code()&0xff == sqlite3.SQLITE_FULL
}
