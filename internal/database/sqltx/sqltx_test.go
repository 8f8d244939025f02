package sqltx_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	_ "modernc.org/sqlite"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/internal/database/sqltx"
)

// opsSeen records the operations OnError is told of.
type opsSeen struct {
	mu  sync.Mutex
	ops []string
}

func (o *opsSeen) record(op string, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ops = append(o.ops, op)
}

func (o *opsSeen) take() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	ops := o.ops
	o.ops = nil
	return ops
}

func openClient(t *testing.T, opts ...sqltx.Option) (*ent.Client, *sql.DB) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "t.db")+"?_pragma=foreign_keys(1)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	client := ent.NewClient(ent.Driver(sqltx.Wrap(entsql.OpenDB(dialect.SQLite, db), opts...)))
	t.Cleanup(func() { client.Close() })
	if err := client.Schema.Create(context.Background()); err != nil {
		t.Fatal(err)
	}
	return client, db
}

// TestOnError: every failing call through the driver, in a transaction or
// not, is reported once with its operation; successes, cancelled calls
// and a rollback of a finished transaction are not.
func TestOnError(t *testing.T) {
	seen := &opsSeen{}
	client, db := openClient(t, sqltx.OnError(seen.record))
	ctx := context.Background()

	u, err := client.User.Create().SetSubject("alice").SetQuotaBytes(10).Save(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.User.Get(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := client.User.Get(ctx, "nobody"); !ent.IsNotFound(err) {
		t.Fatalf("Get of a missing user: %v, want not found", err)
	}
	if ops := seen.take(); len(ops) != 0 {
		t.Fatalf("reported %v for calls that worked (or found nothing), want none", ops)
	}

	// A unique constraint refuses the second alice: a failed exec.
	if err := client.User.Create().SetSubject("alice").SetQuotaBytes(10).Exec(ctx); err == nil {
		t.Fatal("a second user with the same subject: no error")
	}
	if ops := seen.take(); !slices.Equal(ops, []string{"exec"}) {
		t.Errorf("after a refused insert: reported %v, want [exec]", ops)
	}

	// In a transaction: raw SQL that fails, then a rollback.
	tx, err := client.Tx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.QueryContext(ctx, "SELECT nothing FROM nowhere"); err == nil {
		t.Fatal("a query of a missing table: no error")
	}
	if _, err := tx.ExecContext(ctx, "UPDATE nowhere SET x = 1"); err == nil {
		t.Fatal("an update of a missing table: no error")
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err == nil {
		t.Fatal("a second rollback: no error")
	}
	if ops := seen.take(); !slices.Equal(ops, []string{"query", "exec"}) {
		t.Errorf("in a transaction: reported %v, want [query exec] (a second rollback is no database failure)", ops)
	}

	// A cancelled call is the caller's doing.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := client.User.Query().All(cancelled); err == nil {
		t.Fatal("a query with a cancelled context: no error")
	}
	if ops := seen.take(); len(ops) != 0 {
		t.Errorf("a cancelled query: reported %v, want none", ops)
	}

	// The database is gone: beginning fails, and so does a read.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Tx(ctx); err == nil {
		t.Fatal("a transaction on a closed database: no error")
	}
	if _, err := client.User.Query().All(ctx); err == nil {
		t.Fatal("a query on a closed database: no error")
	}
	if ops := seen.take(); !slices.Equal(ops, []string{"begin", "query"}) {
		t.Errorf("on a closed database: reported %v, want [begin query]", ops)
	}
}

// TestSlotWithOnError: a transaction observed for errors still lands in
// its context's slot, and commits.
func TestSlotWithOnError(t *testing.T) {
	seen := &opsSeen{}
	client, _ := openClient(t, sqltx.OnError(seen.record))
	ctx, slot := sqltx.WithSlot(context.Background())
	tx, err := client.Tx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if slot.Tx() == nil {
		t.Fatal("the slot holds no *sql.Tx")
	}
	if _, err := slot.Tx().ExecContext(ctx, "INSERT INTO users (id, subject, quota_bytes, reserved_bytes, created_at, updated_at) VALUES ('usr1', 'bob', 1, 0, datetime(), datetime())"); err != nil {
		t.Fatalf("writing through the slot's transaction: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if n, err := client.User.Query().Count(context.Background()); err != nil || n != 1 {
		t.Errorf("users after commit: %d, %v; want 1", n, err)
	}
	if ops := seen.take(); len(ops) != 0 {
		t.Errorf("reported %v, want none", ops)
	}
}
