package jobs

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"entgo.io/ent/dialect"
	"github.com/riverqueue/river/riverdriver"

	"github.com/spoolhq/spool/internal/database"
)

// wokenListener is the SQLite listener of a freshly migrated database,
// connected and listening to topic, which reads the notification table
// only when woken (its fallback is an hour), and the driver it came
// from.
func wokenListener(t *testing.T, topic string) (*database.DB, *sqliteDriver, riverdriver.Listener) {
	t.Helper()
	ctx := context.Background()
	db := migratedSQLite(t)
	d, err := driverFor(db.SQL(), dialect.SQLite, WithListenerFallback(Config{}, time.Hour), newWakes())
	if err != nil {
		t.Fatal(err)
	}
	driver, ok := d.(*sqliteDriver)
	if !ok {
		t.Fatalf("River's driver over spool's SQLite writer pool is a %T, want the waking *sqliteDriver", d)
	}
	l := driver.GetListener(&riverdriver.GetListenenerParams{})
	if err := l.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(ctx) })
	if err := l.Listen(ctx, topic); err != nil {
		t.Fatal(err)
	}
	return db, driver, l
}

// migratedSQLite is an embedded database with the job queue's tables,
// closed when the test ends.
func migratedSQLite(tb testing.TB) *database.DB {
	tb.Helper()
	ctx := context.Background()
	db, err := database.Open(ctx, "", filepath.Join(tb.TempDir(), database.SQLiteFile))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	if _, err := Migrate(ctx, db.SQL(), db.Dialect); err != nil {
		tb.Fatal(err)
	}
	return db
}

// delivered runs WaitForNotification until the test ends, and passes on
// the payloads it returns.
func delivered(t *testing.T, l riverdriver.Listener) <-chan string {
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan string, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			n, err := l.WaitForNotification(ctx)
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("waiting for a notification: %v", err)
				}
				return
			}
			got <- n.Payload
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return got
}

func notify(t *testing.T, e riverdriver.Executor, topic, payload string) {
	t.Helper()
	if err := e.NotifyMany(context.Background(), &riverdriver.NotifyManyParams{Topic: topic, Payload: []string{payload}}); err != nil {
		t.Fatal(err)
	}
}

func expect(t *testing.T, got <-chan string, want string) {
	t.Helper()
	select {
	case p := <-got:
		if p != want {
			t.Errorf("delivered %q, want %q", p, want)
		}
	case <-time.After(30 * time.Second): // hang guard; the fallback is an hour
		t.Fatalf("%q was never delivered: the listener was not woken by its write", want)
	}
}

func expectNothing(t *testing.T, got <-chan string, when string) {
	t.Helper()
	select {
	case p := <-got:
		t.Errorf("delivered %q %s", p, when)
	case <-time.After(200 * time.Millisecond):
	}
}

// A notification written in a transaction (as a job inserted with one of
// spool's transactions writes it) wakes the listener, which delivers it
// once the transaction commits, and not before: its read waits for the
// one connection the transaction holds. One rolled back is never
// delivered.
func TestSQLiteListenerIsWokenByWritesAndSeesCommits(t *testing.T) {
	ctx := context.Background()
	db, driver, l := wokenListener(t, "insert")
	got := delivered(t, l)

	tx, err := db.SQL().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	notify(t, driver.UnwrapExecutor(tx), "insert", "committed")
	expectNothing(t, got, "before its transaction committed")
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	expect(t, got, "committed")

	tx, err = db.SQL().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	notify(t, driver.UnwrapExecutor(tx), "insert", "rolled back")
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	// River's own transactions, and a write outside any.
	rtx, err := driver.GetExecutor().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	notify(t, rtx, "insert", "river's transaction")
	if err := rtx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	expect(t, got, "river's transaction")
	notify(t, driver.GetExecutor(), "insert", "alone")
	expect(t, got, "alone")
	expectNothing(t, got, "after the last write")
}

// A topic hears what was written after it was listened to, and only
// that; a notification of a topic nobody listens to is skipped.
func TestSQLiteListenerDeliversOnlyWhatItListensTo(t *testing.T) {
	ctx := context.Background()
	_, driver, l := wokenListener(t, "insert")
	exec := driver.GetExecutor()
	notify(t, exec, "leadership", "before its Listen")
	if err := l.Listen(ctx, "leadership"); err != nil {
		t.Fatal(err)
	}
	got := delivered(t, l)
	notify(t, exec, "control", "nobody listens")
	notify(t, exec, "leadership", "after its Listen")
	expect(t, got, "after its Listen")
	expectNothing(t, got, "of a topic before its Listen, or of one not listened to")
}

// River's transactions under the waking executors unwrap to their
// *sql.Tx, as River's driver API requires.
func TestSQLiteDriverUnwrapsItsTransactions(t *testing.T) {
	ctx := context.Background()
	db, driver, _ := wokenListener(t, "insert")
	tx, err := db.SQL().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if got := driver.UnwrapTx(driver.UnwrapExecutor(tx)); got != tx {
		t.Errorf("UnwrapTx(UnwrapExecutor(tx)) = %p, want tx %p", got, tx)
	}
}
