package database

import (
	"context"
	"crypto/rand"
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
