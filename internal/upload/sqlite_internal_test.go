package upload

import (
	"context"
	"testing"

	"github.com/spoolhq/spool/internal/database"
)

// openSQLite opens a fresh embedded database, migrated, for the test.
func openSQLite(t *testing.T) *database.DB {
	t.Helper()
	db, err := database.Open(context.Background(), "", t.TempDir()+"/spool.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
