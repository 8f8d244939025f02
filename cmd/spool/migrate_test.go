package main

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spoolhq/spool/internal/database"
	"github.com/spoolhq/spool/internal/database/dbtest"
)

// runMigrate runs `spool migrate args…` and returns what it printed.
func runMigrate(t *testing.T, getenv func(string) string, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), append([]string{"migrate"}, args...), getenv, &stdout, &stderr)
	return stdout.String() + stderr.String(), err
}

func TestMigrateSQLite(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	out, err := runMigrate(t, env(), "--data-dir", dir)
	if err != nil || !strings.Contains(out, "applied 00001_init.sql (version 1)") || !strings.Contains(out, "applied job queue migration 001") {
		t.Fatalf("first migrate: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, database.SQLiteFile)); err != nil {
		t.Fatalf("no database file: %v", err)
	}
	// The data dir may come from the environment too.
	out, err = runMigrate(t, env("SPOOL_DATA_DIR", dir))
	if err != nil || strings.Contains(out, "applied") || !strings.Contains(out, upToDate(t)) {
		t.Fatalf("second migrate: %v\n%s", err, out)
	}
}

func TestMigratePostgres(t *testing.T) {
	t.Parallel()
	dbURL := dbtest.Postgres(t)
	// DATABASE_URL names the database; SPOOL_DATABASE_URL wins over it.
	out, err := runMigrate(t, env("DATABASE_URL", dbURL))
	if err != nil || !strings.Contains(out, "applied 00001_init.sql") || !strings.Contains(out, "applied job queue migration 001") {
		t.Fatalf("migrate with DATABASE_URL: %v\n%s", err, out)
	}
	out, err = runMigrate(t, env("DATABASE_URL", "mysql://elsewhere/x", "SPOOL_DATABASE_URL", dbURL))
	if err != nil || !strings.Contains(out, upToDate(t)) {
		t.Fatalf("migrate with SPOOL_DATABASE_URL: %v\n%s", err, out)
	}
	_, err = runMigrate(t, env("SPOOL_DATABASE_URL", dbURL), "--database-url", "mysql://elsewhere/x")
	if err == nil || !strings.Contains(err.Error(), `"mysql"`) {
		t.Fatalf("the flag did not win over the environment: %v", err)
	}
}

// upToDate is what migrate prints once every embedded migration is applied.
func upToDate(t *testing.T) string {
	t.Helper()
	files, err := fs.Glob(database.Migrations(), "sqlite/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("embedded migrations: %v, %v", files, err)
	}
	return fmt.Sprintf("is up to date at version %d", len(files))
}
