package sqltx_test

import (
	"context"
	"database/sql"
	"errors"
	"runtime/metrics"
	"slices"
	"testing"
	"time"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/internal/database/sqltx"
)

// goroutinesCreated is how many goroutines this process has started.
func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func countUsers(t *testing.T, client *ent.Client) int {
	t.Helper()
	n, err := client.User.Query().Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestTxOnConn: a transaction whose context cannot be cancelled commits
// and rolls back as a database/sql one does, without starting a
// goroutine, and a COMMIT that fails leaves the connection outside any
// transaction and the writes undone.
func TestTxOnConn(t *testing.T) {
	seen := &opsSeen{}
	client, _ := openClient(t, sqltx.TxOnConn(), sqltx.OnError(seen.record))
	ctx := context.Background()

	tx, err := client.Tx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.User.Create().SetSubject("kept").SetQuotaBytes(1).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); !errors.Is(err, sql.ErrTxDone) {
		t.Errorf("a rollback after the commit: %v, want sql.ErrTxDone", err)
	}
	tx, err = client.Tx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.User.Create().SetSubject("undone").SetQuotaBytes(1).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if n := countUsers(t, client); n != 1 {
		t.Fatalf("users after a commit and a rollback: %d, want 1", n)
	}

	// No goroutine a transaction: database/sql starts one for each, and
	// one for each query in it, and the SQLite driver one for BEGIN and
	// one for COMMIT (at least 2 a transaction here).
	const n = 50
	before := goroutinesCreated()
	for range n {
		tx, err := client.Tx(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.User.Query().Count(ctx); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	if got := goroutinesCreated() - before; got >= n/2 {
		t.Errorf("%d transactions started %d goroutines, want none", n, got)
	}

	// A deferred foreign key fails the COMMIT, and SQLite then keeps
	// the transaction open. The pool's one connection must come back
	// outside it: a transaction begun next would fail on it ("cannot
	// start a transaction within a transaction"), or wait for ever for
	// a connection never handed back.
	if _, err := client.ExecContext(ctx, `CREATE TABLE parents (id INTEGER PRIMARY KEY);
		CREATE TABLE children (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED)`); err != nil {
		t.Fatal(err)
	}
	seen.take()
	tx, err = client.Tx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO children (id, parent_id) VALUES (1, 42)"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err == nil {
		t.Fatal("committing a child without its parent: no error")
	}
	if ops := seen.take(); !slices.Equal(ops, []string{"commit"}) {
		t.Errorf("the failed commit: reported %v, want [commit]", ops)
	}
	// The guard's deadline only ends a wait for a connection never
	// handed back; the transaction on a connection, which cannot be
	// cancelled, comes after it.
	guard, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for _, c := range []struct {
		name string
		ctx  context.Context
	}{{"as a database/sql transaction", guard}, {"on a connection", ctx}} {
		tx, err := client.Tx(c.ctx)
		if err != nil {
			t.Fatalf("beginning a transaction %s after the failed commit: %v", c.name, err)
		}
		rows, err := tx.QueryContext(c.ctx, "SELECT count(*) FROM children")
		if err != nil {
			t.Fatal(err)
		}
		var children int
		for rows.Next() {
			if err := rows.Scan(&children); err != nil {
				t.Fatal(err)
			}
		}
		rows.Close()
		if children != 0 {
			t.Errorf("%s after the failed commit: %d children, want 0 (the transaction rolled back)", c.name, children)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTxOnConnLeavesCancellableAlone: a transaction whose context can be
// cancelled stays a database/sql one, rolled back when it is cancelled,
// and a Slot's transaction stays a *sql.Tx.
func TestTxOnConnLeavesCancellableAlone(t *testing.T) {
	client, _ := openClient(t, sqltx.TxOnConn())
	ctx, cancel := context.WithCancel(context.Background())
	tx, err := client.Tx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.User.Create().SetSubject("cancelled").SetQuotaBytes(1).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := tx.Commit(); err == nil {
		t.Error("committing a transaction whose context was cancelled: no error")
	}
	if n := countUsers(t, client); n != 0 {
		t.Errorf("users after the cancelled transaction: %d, want 0", n)
	}

	slotted, slot := sqltx.WithSlot(context.Background())
	tx, err = client.Tx(slotted)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if slot.Tx() == nil {
		t.Error("a Slot's transaction is not a *sql.Tx")
	}
}

// TestReadsOnRunToTheirEnd: a read on the read pool runs to its end
// when its context is cancelled, starting no goroutine, unless the
// context's deadline has passed; other queries keep their context.
func TestReadsOnRunToTheirEnd(t *testing.T) {
	client, _ := openWithReaders(t)
	ctx := context.Background()
	if err := client.User.Create().SetSubject("alice").SetQuotaBytes(1).Exec(ctx); err != nil {
		t.Fatal(err)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if n, err := client.User.Query().Count(cancelled); err != nil || n != 1 {
		t.Errorf("a read with a cancelled context: %d users, %v; want 1 and no error", n, err)
	}
	if err := client.User.Create().SetSubject("bob").SetQuotaBytes(1).Exec(cancelled); err == nil {
		t.Error("a write with a cancelled context: no error")
	}
	expired, cancelExpired := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancelExpired()
	if _, err := client.User.Query().Count(expired); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a read past its deadline: %v, want context.DeadlineExceeded", err)
	}

	live, stop := context.WithCancel(ctx)
	defer stop()
	const n = 50
	before := goroutinesCreated()
	for range n {
		if _, err := client.User.Query().Count(live); err != nil {
			t.Fatal(err)
		}
	}
	if got := goroutinesCreated() - before; got >= n/2 {
		t.Errorf("%d reads with a cancellable context started %d goroutines, want none", n, got)
	}
}
