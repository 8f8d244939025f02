package database_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spoolhq/spool/internal/database"
	"github.com/spoolhq/spool/internal/database/dbtest"
	"github.com/spoolhq/spool/internal/tmpfs"
	"github.com/spoolhq/spool/internal/upload"
)

// A database whose disk is full undid the statement: clients are told
// UNAVAILABLE and why, not "internal error" (what initBatch answered on a
// full disk before), and the database takes writes again once space is
// freed.
func TestFullDiskIsUnavailableAndSaysSo(t *testing.T) {
	ctx := context.Background()
	dir := tmpfs.Mount(t, 8<<20)
	db, err := database.Open(ctx, "", filepath.Join(dir, "spool.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if _, err := db.SQL().ExecContext(ctx, "CREATE TABLE pad (b BLOB)"); err != nil {
		t.Fatal(err)
	}
	filler := fill(t, filepath.Join(dir, "filler"))

	var full error
	for i := 0; i < 64 && full == nil; i++ {
		_, full = db.SQL().ExecContext(ctx, "INSERT INTO pad VALUES (randomblob(256 * 1024))")
	}
	if full == nil {
		t.Fatal("64 inserts of 256 KiB fitted on a full 8 MiB disk")
	}
	checkFull(t, "SQLite on a full disk", full)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if _, err := db.SQL().ExecContext(ctx, "INSERT INTO pad VALUES (randomblob(256 * 1024))"); err != nil {
		t.Fatalf("an insert once space was freed: %v", err)
	}

	pg, err := sql.Open("pgx", dbtest.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Close() })
	// What PostgreSQL says when it cannot extend a file.
	_, err = pg.ExecContext(ctx, "DO $$ BEGIN RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; END $$")
	checkFull(t, "PostgreSQL's disk_full", err)
	_, err = pg.ExecContext(ctx, "DO $$ BEGIN RAISE EXCEPTION 'out of memory' USING ERRCODE = 'out_of_memory'; END $$")
	if err == nil || database.Full(err) {
		t.Errorf("PostgreSQL's out_of_memory: Full(%v) is true, want false", err)
	}
	if err := errors.New("boom"); database.Full(err) {
		t.Errorf("Full(%v) is true, want false", err)
	}
}

// fill writes zeros to path until its filesystem is full, and returns path.
func fill(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zeros := make([]byte, 64<<10)
	for {
		if _, err := f.Write(zeros); err != nil {
			return path
		}
	}
}

func checkFull(t *testing.T, what string, err error) {
	t.Helper()
	if !database.Full(err) || !database.Unavailable(err) {
		t.Errorf("%s: Full(%v) = %v and Unavailable = %v, want both true", what, err, database.Full(err), database.Unavailable(err))
	}
	if got := upload.ErrorCode(err); got != upload.CodeUnavailable {
		t.Errorf("%s: code %s, want %s", what, got, upload.CodeUnavailable)
	}
	if got := upload.ErrorMessage(err); !strings.Contains(got, "no space left") {
		t.Errorf("%s: clients are told %q; want it to say there is no space left", what, got)
	}
	if got := upload.RetryAfter(err); got != upload.FullRetryAfter {
		t.Errorf("%s: clients are asked to wait %v, want %v: the disk stays full until space is freed", what, got, upload.FullRetryAfter)
	}
}
