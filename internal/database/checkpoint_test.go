package database

import (
	"context"
	"crypto/rand"
	"database/sql"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCheckpointsOffTheConnection: commits on spool's connection leave
// their pages in the WAL (SQLite's own checkpoint waits for 16384 pages),
// and the checkpointer's connection copies them into the database file
// without a statement on spool's.
func TestCheckpointsOffTheConnection(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), SQLiteFile)
	db, err := Open(ctx, "", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.SQL().ExecContext(ctx, "CREATE TABLE filler (b BLOB)"); err != nil {
		t.Fatal(err)
	}
	before := fileSize(t, path)
	blob := make([]byte, 4096)
	for range 1500 { // about 1500 pages, over SQLite's default threshold of 1000
		_, _ = rand.Read(blob)
		if _, err := db.SQL().ExecContext(ctx, "INSERT INTO filler (b) VALUES (?)", blob); err != nil {
			t.Fatal(err)
		}
	}
	want := before + 1500*4096
	deadline := time.Now().Add(30 * time.Second)
	for fileSize(t, path) < want {
		if time.Now().After(deadline) {
			t.Fatalf("the database file has %d bytes after 30 s, want at least %d: the WAL was not checkpointed (WAL %d bytes)",
				fileSize(t, path), want, fileSize(t, path+"-wal"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Size()
}

// TestDurableCommits: WithDurableCommits is synchronous=FULL (2), the
// default NORMAL (1), on spool's connection.
func TestDurableCommits(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		opts []Option
		want int
	}{{nil, 1}, {[]Option{WithDurableCommits()}, 2}} {
		db, err := Open(ctx, "", filepath.Join(t.TempDir(), SQLiteFile), c.opts...)
		if err != nil {
			t.Fatal(err)
		}
		var got int
		if err := db.SQL().QueryRowContext(ctx, "PRAGMA synchronous").Scan(&got); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if got != c.want {
			t.Errorf("options %d: synchronous = %d, want %d", len(c.opts), got, c.want)
		}
	}
}

// TestCheckpointSkippedWhenNothingWasCommitted: a checkpoint that copied
// the whole WAL is not run again until another connection commits, and
// is run again after a commit.
func TestCheckpointSkippedWhenNothingWasCommitted(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), SQLiteFile)
	// A plain connection in WAL mode: Open's own checkpointer would run
	// beside this one.
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c, err := newCheckpointer(ctx, func() (*sql.DB, error) { return sql.Open("sqlite", "file:"+path) }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	write := func() {
		t.Helper()
		if _, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS filler (b BLOB); INSERT INTO filler (b) VALUES (x'00')"); err != nil {
			t.Fatal(err)
		}
	}
	step := func(want bool, what string) {
		t.Helper()
		ran, err := c.checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ran != want {
			t.Errorf("%s: checkpoint run %v, want %v", what, ran, want)
		}
	}
	write()
	step(true, "after a commit")
	step(false, "with nothing committed since a checkpoint copied the WAL")
	step(false, "still nothing committed")
	write()
	step(true, "after another commit")
	step(false, "with nothing committed since")
}
