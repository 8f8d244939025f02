package database

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// execModeParam is the URL parameter that names pgx's way of sending
// statements (pgx.QueryExecMode).
const execModeParam = "default_query_exec_mode"

// pooler is what stands between spool and PostgreSQL, as findPooler
// found it when the database was opened.
type pooler int

const (
	// direct is PostgreSQL itself, or a pooler that neither names
	// backends of its own nor is pgpool-II.
	direct pooler = iota
	// transactionPooler names backends of its own (PgBouncer, and others
	// like it): statements go unprepared, and LISTEN cannot be kept.
	transactionPooler
	// pgpoolII is pgpool-II, which pools sessions: statements go by the
	// simple protocol (pgpoolNote says why).
	pgpoolII
)

// findPooler connects once as cfg says and reports what stands between
// spool and PostgreSQL: a pooler that names backends of its own
// (PgBouncer, and others like it), pgpool-II, or nothing.
//
// It matters because a pooler in transaction mode, the usual one for an
// application's connections, hands a client a server connection for a
// transaction at a time. A statement prepared on one server connection
// is then not there for the client's next transaction, and another
// client meets it as one it did not prepare: pgx's statement cache
// failed with "prepared statement … does not exist" (26000) or "already
// exists" (42P05), spool's requests and River's job fetches with it, and
// a start could fail too. No message tells the pooler's mode, but a
// pooler is told apart for certain: a connection's start names the
// backend that serves it (its cancel key, BackendKeyData), and a pooler
// names one of its own making there, since a client's cancel must reach
// it, not a server connection the client may no longer hold. So the
// backend the start names and the one that answers pg_backend_pid()
// differ only through a pooler. The statement goes by the simple
// protocol, which prepares nothing.
//
// pgpool-II passes its backend's name on, so it is asked instead: it
// answers SHOW pool_version itself, which PostgreSQL refuses (an ERROR
// line in its log as each replica starts, whose statement's comment says
// whose it is).
func findPooler(ctx context.Context, cfg *pgx.ConnConfig) (pooler, error) {
	conn, err := pgconn.ConnectConfig(ctx, &cfg.Config)
	if err != nil {
		return direct, err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	results, err := conn.Exec(ctx, "SELECT pg_backend_pid()").ReadAll()
	if err != nil {
		return direct, err
	}
	if len(results) != 1 || len(results[0].Rows) != 1 || len(results[0].Rows[0]) != 1 {
		return direct, fmt.Errorf("SELECT pg_backend_pid() answered %d results", len(results))
	}
	if answering := string(results[0].Rows[0][0]); answering != strconv.FormatUint(uint64(conn.PID()), 10) {
		return transactionPooler, nil
	}
	_, err = conn.Exec(ctx, pgpoolQuestion).ReadAll()
	if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) {
		return direct, nil // PostgreSQL has no such setting
	}
	if err != nil {
		return direct, err
	}
	return pgpoolII, nil
}

// pgpoolQuestion is what only pgpool-II answers.
const pgpoolQuestion = "/* spool asks whether pgpool-II stands in between: PostgreSQL itself refuses this */ SHOW pool_version"

// pgpoolNote is what the log says of a database reached through
// pgpool-II.
func pgpoolNote(where string) string {
	return fmt.Sprintf("%s is reached through pgpool-II: statements are sent by the simple protocol (%s=simple_protocol), since "+
		"pgpool-II (4.3 to 4.8 at least, in raw mode) leaves a write sent by the extended protocol outside a transaction inside one "+
		"it never ends, and loses it (pgpool-II issue #172); a URL naming %[2]s keeps what it says", where, execModeParam)
}

// poolerNote is what the log says of a database reached through a
// pooler: what it costs, and how to keep statements prepared where the
// pooler allows it (docs/BENCHMARKS.md, "Statements unprepared").
func poolerNote(where string) string {
	return fmt.Sprintf("%s is reached through a pooler: statements are sent unprepared (%s=exec), which a pooler in transaction mode needs, "+
		"and which costs PostgreSQL 3 to 4 times the CPU of prepared ones; behind a pooler that keeps prepared statements "+
		"(session mode, PgBouncer 1.21+ with max_prepared_statements) name %[2]s=cache_statement in the URL, which keeps what it says. "+
		"In transaction mode the job queue finds new jobs by polling", where, execModeParam)
}
