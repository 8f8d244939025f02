package database_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/database"
	"github.com/spoolhq/spool/internal/database/dbtest"
)

// Unavailable tells a database that cannot be reached from a statement
// that failed, with errors the real drivers return: a refused
// connection, a connection the server killed mid-session, a statement
// the server ended (statement_timeout, an operator's cancel), a
// transaction rolled back for a deadlock or a concurrent update, and
// SQLite busy beyond its timeout are unavailable; a constraint
// violation, a syntax error, no rows and a caller's cancellation, before
// or during a statement, are not.
func TestUnavailableClassifiesDriverErrors(t *testing.T) {
	ctx := context.Background()
	pgURL := dbtest.Postgres(t)
	pg, err := sql.Open("pgx", pgURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Close() })

	// A port nothing listens on: connect refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String()
	_ = ln.Close()
	refused, err := sql.Open("pgx", "postgres://postgres@"+closedAddr+"/test?connect_timeout=5")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = refused.Close() })

	// A session the server terminates (what a failover or restart does).
	killed, err := pg.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if err := killed.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := pg.ExecContext(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
		t.Fatal(err)
	}

	// SQLite: one connection holds the write lock, another waits 10 ms.
	dir := t.TempDir()
	lite := func() *sql.DB {
		db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "busy.db")+"?_pragma=busy_timeout(10)&_pragma=journal_mode(WAL)")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		return db
	}
	holder, waiter := lite(), lite()
	if _, err := holder.Exec("CREATE TABLE t (x INTEGER PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	tx, err := holder.Begin()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback() })
	if _, err := tx.Exec("INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()

	// A statement past the session's statement_timeout, and one an
	// operator cancels from another session: both 57014 from the server.
	timedOut := func() error {
		tx, err := pg.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback() }()
		if _, err := tx.ExecContext(ctx, "SET LOCAL statement_timeout = 50"); err != nil {
			t.Fatal(err)
		}
		return tx.QueryRowContext(ctx, "SELECT pg_sleep(5)").Scan(new(any))
	}
	operatorCancel := func() error {
		conn, err := pg.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := conn.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatal(err)
		}
		go func() {
			time.Sleep(100 * time.Millisecond)
			_, _ = pg.ExecContext(ctx, "SELECT pg_cancel_backend($1)", pid)
		}()
		return conn.QueryRowContext(ctx, "SELECT pg_sleep(5)").Scan(new(any))
	}
	// Two transactions that each hold a row the other wants: PostgreSQL
	// rolls one back (40P01), and which one is its choice.
	deadlock := func() error {
		if _, err := pg.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS spool_unavailable_test (id int PRIMARY KEY, n int);
			INSERT INTO spool_unavailable_test VALUES (1, 0), (2, 0) ON CONFLICT DO NOTHING`); err != nil {
			t.Fatal(err)
		}
		first, second := make(chan struct{}), make(chan struct{})
		lockBoth := func(mine, theirs int, locked, other chan struct{}) error {
			tx, err := pg.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer func() { _ = tx.Rollback() }()
			if _, err := tx.ExecContext(ctx, "UPDATE spool_unavailable_test SET n = n + 1 WHERE id = $1", mine); err != nil {
				return err
			}
			close(locked)
			<-other
			_, err = tx.ExecContext(ctx, "UPDATE spool_unavailable_test SET n = n + 1 WHERE id = $1", theirs)
			return err
		}
		errs := make(chan error, 2)
		go func() { errs <- lockBoth(1, 2, first, second) }()
		go func() { errs <- lockBoth(2, 1, second, first) }()
		a, b := <-errs, <-errs
		if a == nil {
			return b
		}
		return a
	}
	// A row updated by another transaction since this REPEATABLE READ
	// one's snapshot (40001).
	concurrentUpdate := func() error {
		tx, err := pg.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback() }()
		if err := tx.QueryRowContext(ctx, "SELECT n FROM spool_unavailable_test WHERE id = 1").Scan(new(int)); err != nil {
			t.Fatal(err)
		}
		if _, err := pg.ExecContext(ctx, "UPDATE spool_unavailable_test SET n = n + 1 WHERE id = 1"); err != nil {
			t.Fatal(err)
		}
		_, err = tx.ExecContext(ctx, "UPDATE spool_unavailable_test SET n = n + 1 WHERE id = 1")
		return err
	}

	// The caller gives up while the statement runs: pgx ends it by the
	// connection's deadline, never a cancel request, so it is not 57014.
	callerCancel := func() error {
		mid, stop := context.WithCancel(ctx)
		defer stop()
		time.AfterFunc(100*time.Millisecond, stop)
		return pg.QueryRowContext(mid, "SELECT pg_sleep(5)").Scan(new(any))
	}
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", refused.PingContext(ctx), true},
		{"session terminated by the server", killed.QueryRowContext(ctx, "SELECT 1").Scan(new(int)), true},
		{"sqlite busy", func() error { _, err := waiter.Exec("INSERT INTO t VALUES (2)"); return err }(), true},
		{"wrapped", fmt.Errorf("looking up user: %w", refused.PingContext(ctx)), true},
		{"syntax error", pg.QueryRowContext(ctx, "SELEC 1").Scan(new(int)), false},
		{"unique violation", func() error {
			_, err := tx.Exec("INSERT INTO t VALUES (1)")
			return err
		}(), false},
		{"no rows", pg.QueryRowContext(ctx, "SELECT 1 WHERE false").Scan(new(int)), false},
		{"statement_timeout", timedOut(), true},
		{"cancelled by an operator", operatorCancel(), true},
		{"deadlock", deadlock(), true},
		{"concurrent update", concurrentUpdate(), true},
		{"cancelled by the caller", pg.QueryRowContext(cancelled, "SELECT 1").Scan(new(int)), false},
		{"cancelled by the caller mid-statement", callerCancel(), false},
		{"nil", nil, false},
		{"other", errors.New("boom"), false},
	} {
		if c.err == nil && c.want {
			t.Errorf("%s: the driver returned no error", c.name)
			continue
		}
		if got := database.Unavailable(c.err); got != c.want {
			t.Errorf("%s: Unavailable(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
