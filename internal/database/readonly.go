package database

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// readOnlySQLState is PostgreSQL's read_only_sql_transaction: a write
// sent to a server that takes none, such as a primary demoted to a
// standby by a failover, or one the pool reached while DNS still named
// the old primary.
const readOnlySQLState = "25006"

// readOnlyCloser closes every connection a statement was refused on for
// being read-only, so that its pool drops it. Such a connection stays on
// a server that takes no writes: kept, it failed every write it was
// handed for as long as the pool kept it (up to an hour), while new
// connections would reach the new primary. Closed, the next write dials
// again. The statement's own error is returned as it was.
//
// It is a pgx tracer, which sees each statement's end on its connection,
// on the goroutine that ran it, with the connection no longer busy.
type readOnlyCloser struct{}

var _ pgx.QueryTracer = readOnlyCloser{}

// TraceQueryStart implements pgx.QueryTracer.
func (readOnlyCloser) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

// TraceQueryEnd implements pgx.QueryTracer.
func (readOnlyCloser) TraceQueryEnd(_ context.Context, conn *pgx.Conn, data pgx.TraceQueryEndData) {
	if data.Err == nil || !readOnly(data.Err) {
		return
	}
	// Close says goodbye to the server first; one that answered the
	// statement a moment ago answers that too, and the bound keeps a
	// server that went away meanwhile from holding the caller.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.PgConn().Close(ctx)
}

// readOnly reports whether err is PostgreSQL refusing a statement because
// it takes no writes.
func readOnly(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.SQLState() == readOnlySQLState
}
