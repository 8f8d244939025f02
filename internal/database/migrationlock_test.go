package database

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/database/dbtest"
)

// The migration lock is one holder's at a time; a replica waiting longer
// than its bound fails, saying whose lock and how long, and takes it
// once the holder lets go. Lost with its holder's transaction, it is
// left behind nowhere.
func TestMigrationLockIsOneHoldersAtATime(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := Open(ctx, dbtest.Postgres(t), "", WithoutMigrate())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const id = 0x73706f6f6cff

	release, err := MigrationLock(ctx, db.SQL(), id)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = migrationLock(ctx, db.SQL(), id, 200*time.Millisecond)
	if err == nil || !Unavailable(err) || !strings.Contains(err.Error(), "another replica's migrations held PostgreSQL advisory lock 0x73706f6f6cff for longer than 200ms") {
		t.Fatalf("taking a held migration lock: %v after %v; want it to fail, unavailable, after 200 ms, saying whose lock", err, time.Since(start))
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	again, err := migrationLock(ctx, db.SQL(), id, 200*time.Millisecond)
	if err != nil {
		t.Fatalf("taking the migration lock once let go: %v", err)
	}

	// A holder whose connection is gone takes the lock with it.
	var pid int
	if err := db.SQL().QueryRowContext(ctx, "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND (classid::bigint << 32 | objid::bigint) = $1", int64(id)).Scan(&pid); err != nil {
		t.Fatalf("the holder's backend: %v", err)
	}
	if _, err := db.SQL().ExecContext(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
		t.Fatal(err)
	}
	last, err := migrationLock(ctx, db.SQL(), id, 10*time.Second)
	if err != nil {
		t.Fatalf("taking the migration lock its holder's connection lost: %v", err)
	}
	if err := again(); err == nil {
		t.Error("letting go of a lock whose connection was ended succeeded")
	}
	if err := last(); err != nil {
		t.Error(err)
	}
}
