package jobs

import (
	"context"
	"database/sql"
	"fmt"

	"entgo.io/ent/dialect"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/spoolhq/spool/internal/database"
)

// migrateLockID is the PostgreSQL advisory lock that keeps replicas
// starting at once from applying River's migrations twice ("spool" 3;
// internal/database holds 1 and 2).
const migrateLockID int64 = 0x73706f6f6c03

// Applied is one of River's migrations that Migrate applied.
type Applied struct {
	Version int
	Name    string
}

// Migrate brings River's tables in db (of ent's dialect d) up to the
// version this build of River needs, and returns the migrations it
// applied (none when up to date). Each migration runs in a transaction
// of its own: on PostgreSQL one adds an enum value that the next uses,
// which one transaction cannot do. There it holds an advisory lock on a
// connection of its own (database.MigrationLock), so replicas starting
// at once apply each migration once. It returns the failing migration's error;
// the migrations before it stay applied.
func Migrate(ctx context.Context, db *sql.DB, d string) ([]Applied, error) {
	driver, err := driverFor(db, d, Config{}, newWakes())
	if err != nil {
		return nil, err
	}
	m, err := rivermigrate.New(driver, nil)
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	if d == dialect.Postgres {
		release, err := database.MigrationLock(ctx, db, migrateLockID)
		if err != nil {
			return nil, fmt.Errorf("taking the job queue's migration lock: %w", err)
		}
		defer func() { _ = release() }()
	}
	res, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil)
	if err != nil {
		return nil, fmt.Errorf("migrating the job queue: %w", err)
	}
	applied := make([]Applied, 0, len(res.Versions))
	for _, v := range res.Versions {
		applied = append(applied, Applied{Version: v.Version, Name: v.Name})
	}
	return applied, nil
}
