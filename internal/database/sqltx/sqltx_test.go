package sqltx_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

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

// TestReadsOn: SELECTs outside a transaction run on the read pool, so
// they answer while a transaction holds the writer's one connection;
// ent's INSERT … RETURNING, which ent runs as a query, and reads inside
// a transaction stay on the writer (the read pool cannot write).
func TestReadsOn(t *testing.T) {
	client, readers := openWithReaders(t)
	ctx := context.Background()

	// A create outside a transaction is a query (INSERT … RETURNING):
	// on the read pool it would fail with "readonly database".
	alice, err := client.User.Create().SetSubject("alice").SetQuotaBytes(10).Save(ctx)
	if err != nil {
		t.Fatalf("creating a user outside a transaction: %v", err)
	}

	tx, err := client.Tx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if err := tx.User.UpdateOneID(alice.ID).SetQuotaBytes(20).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	// The writer's one connection is the transaction's: a read that
	// waited for it would never come back before the commit below, so it
	// gives up after a while (a deadlock guard, not a speed limit).
	waiting, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	got, err := client.User.Get(waiting, alice.ID)
	if err != nil {
		t.Fatalf("reading while a transaction holds the writer: %v", err)
	}
	if got.QuotaBytes != 10 {
		t.Errorf("read outside the transaction sees quota %d, want the committed 10", got.QuotaBytes)
	}
	// Inside the transaction, its own write shows: the read ran on the
	// writer's connection, in the transaction.
	if in, err := tx.User.Get(ctx, alice.ID); err != nil || in.QuotaBytes != 20 {
		t.Errorf("read in the transaction: quota %v, %v; want 20", in, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if got, err := client.User.Get(ctx, alice.ID); err != nil || got.QuotaBytes != 20 {
		t.Errorf("read after the commit: %v, %v; want quota 20", got, err)
	}
	if n := readers.Stats().OpenConnections; n == 0 {
		t.Error("the read pool opened no connection: reads did not go to it")
	}

	// Raw SQL outside a transaction: a SELECT goes to the readers, a
	// write through QueryContext stays on the writer.
	rows, err := client.QueryContext(ctx, "  select count(*) from users")
	if err != nil {
		t.Fatal(err)
	}
	rows.Close()
	rows, err = client.QueryContext(ctx, "UPDATE users SET quota_bytes = 30 RETURNING id")
	if err != nil {
		t.Fatalf("an UPDATE … RETURNING outside a transaction: %v", err)
	}
	rows.Close()
}

// openWithReaders opens a SQLite file as spool does: one writing
// connection in WAL mode, and read-only connections that the client's
// SELECTs outside a transaction go to (ReadsOn).
func openWithReaders(t *testing.T) (client *ent.Client, readers *sql.DB) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "t.db")
	writer, err := sql.Open("sqlite", "file:"+path+"?_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	writer.SetMaxOpenConns(1)
	readers, err = sql.Open("sqlite", "file:"+path+"?_pragma=query_only(1)&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { readers.Close() })
	client = ent.NewClient(ent.Driver(sqltx.Wrap(entsql.OpenDB(dialect.SQLite, writer), sqltx.ReadsOn(entsql.OpenDB(dialect.SQLite, readers)))))
	t.Cleanup(func() { client.Close() })
	if err := client.Schema.Create(context.Background()); err != nil {
		t.Fatal(err)
	}
	return client, readers
}
