package database

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"

	"entgo.io/ent/dialect"
	"github.com/pressly/goose/v3"
	goosedb "github.com/pressly/goose/v3/database"

	"github.com/spoolhq/spool/ent/user"
)

// embedded holds the migrations, one directory per dialect. They are
// generated from ent/schema by `make migrations` (gen_migration.go), and
// the drift test fails when they and ent/schema disagree.
//
//go:embed migrations/postgres/*.sql migrations/sqlite/*.sql
var embedded embed.FS

// Migrations returns the embedded migrations: a directory per dialect,
// "sqlite" and "postgres", of goose SQL files.
func Migrations() fs.FS {
	sub, err := fs.Sub(embedded, "migrations")
	if err != nil {
		panic(err) // "migrations" is a valid path
	}
	return sub
}

// migrationDir is the directory of a dialect's migrations.
func migrationDir(d string) string {
	if d == dialect.Postgres {
		return "postgres"
	}
	return "sqlite"
}

// checkMigrationNames fails on a .sql file of fsys whose name has no
// version goose reads (NNNNN_what.sql, NNNNN at least 1), since goose
// skips such a file without a word and the schema would silently lack it,
// and on two files of one version.
func checkMigrationNames(fsys fs.FS) error {
	files, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return err
	}
	seen := make(map[int64]string, len(files))
	for _, f := range files {
		v, err := goose.NumericComponent(f)
		if err != nil {
			return fmt.Errorf("database: migration %s: %w; name it NNNNN_what_it_does.sql", f, err)
		}
		if other, ok := seen[v]; ok {
			return fmt.Errorf("database: migrations %s and %s have the same version", other, f)
		}
		seen[v] = f
	}
	return nil
}

// PostgreSQL advisory lock keys (they are per database): one for goose's
// migrations, one for adopting a database from before migrations.
const (
	migrateLockID int64 = 0x73706f6f6c01 // "spool" 1
	adoptLockID   int64 = 0x73706f6f6c02 // "spool" 2
)

// Applied is one migration that Up applied.
type Applied struct {
	Version  int64
	Name     string // the file, e.g. 00001_init.sql
	Duration time.Duration
}

// Up applies the pending migrations in order, each in its own
// transaction, and returns those it applied (none when the schema is up
// to date). On PostgreSQL it holds an advisory lock while it works
// (MigrationLock), so replicas starting at once apply each migration
// once; the others wait (up to 5 minutes) and then find nothing to do. A database
// made by a spool release from before versioned migrations is adopted
// first (see adoptUnversioned). It returns the failing migration's error;
// the migrations before it stay applied.
func (db *DB) Up(ctx context.Context) ([]Applied, error) {
	p, err := db.provider()
	if errors.Is(err, goose.ErrNoMigrations) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if err := db.adoptUnversioned(ctx, p); err != nil {
		return nil, fmt.Errorf("adopting %s: %w", db.where, err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrating %s: %w", db.where, err)
	}
	applied := make([]Applied, 0, len(results))
	for _, r := range results {
		a := Applied{Version: r.Source.Version, Name: path.Base(r.Source.Path), Duration: r.Duration}
		db.log.Info("migration applied", "database", db.where, "version", a.Version, "file", a.Name, "took", a.Duration)
		applied = append(applied, a)
	}
	return applied, nil
}

// Version returns the highest migration version applied to the
// database, 0 when none is.
func (db *DB) Version(ctx context.Context) (int64, error) {
	p, err := db.provider()
	if errors.Is(err, goose.ErrNoMigrations) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	current, _, err := p.GetVersions(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading the schema version of %s: %w", db.where, err)
	}
	return current, nil
}

// Drift returns the DDL that ent's auto-migration would run to bring the
// database to ent/schema as compiled in: empty when the two agree, which
// after Up means the migrations match ent/schema. It changes nothing.
// `make migrations` turns a non-empty drift into the next migration.
func (db *DB) Drift(ctx context.Context) (string, error) {
	entSchemaMu.Lock()
	defer entSchemaMu.Unlock()
	var b strings.Builder
	if err := db.Client.Schema.WriteTo(ctx, &b); err != nil {
		return "", fmt.Errorf("comparing %s with ent/schema: %w", db.where, err)
	}
	return b.String(), nil
}

// provider returns a goose provider over the database's migrations.
func (db *DB) provider() (*goose.Provider, error) {
	opts := []goose.ProviderOption{
		goose.WithDisableGlobalRegistry(true),
		goose.WithLogger(goose.NopLogger()),
	}
	d := goose.DialectSQLite3
	if db.Dialect == dialect.Postgres {
		d = goose.DialectPostgres
		opts = append(opts, goose.WithLocker(&migrationLocker{id: migrateLockID}))
	}
	return goose.NewProvider(d, db.sql, db.migrations, opts...)
}

// adoptUnversioned takes over a database that a spool release from
// before versioned migrations created: it has spool's tables but no goose
// version table. Those releases auto-migrated with ent at start; this
// does so one last time, which brings the schema to ent/schema as
// compiled in, the very schema the embedded migrations build (the drift
// test holds them equal), and then records every embedded migration as
// applied. Data is kept; a fresh or already versioned database is left to
// goose.
func (db *DB) adoptUnversioned(ctx context.Context, p *goose.Provider) error {
	return db.withAdoptLock(ctx, func() error {
		versioned, err := db.tableExists(ctx, goose.DefaultTablename)
		if err != nil || versioned {
			return err
		}
		legacy, err := db.tableExists(ctx, user.Table)
		if err != nil || !legacy {
			return err
		}
		entSchemaMu.Lock()
		err = db.Client.Schema.Create(ctx)
		entSchemaMu.Unlock()
		if err != nil {
			return fmt.Errorf("bringing the schema up to date: %w", err)
		}
		d := goosedb.DialectSQLite3
		if db.Dialect == dialect.Postgres {
			d = goosedb.DialectPostgres
		}
		store, err := goosedb.NewStore(d, goose.DefaultTablename)
		if err != nil {
			return err
		}
		tx, err := db.sql.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback() }()
		if err := store.CreateVersionTable(ctx, tx); err != nil {
			return fmt.Errorf("creating the version table: %w", err)
		}
		// goose records version 0 when it creates its table.
		versions := []int64{0}
		for _, s := range p.ListSources() {
			versions = append(versions, s.Version)
		}
		for _, v := range versions {
			if err := store.Insert(ctx, tx, goosedb.InsertRequest{Version: v}); err != nil {
				return fmt.Errorf("recording version %d: %w", v, err)
			}
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		db.log.Info("database from before versioned migrations adopted", "database", db.where, "version", versions[len(versions)-1])
		return nil
	})
}

// withAdoptLock runs fn holding, on PostgreSQL, an advisory lock that
// keeps replicas starting at once from adopting the same database
// twice (MigrationLock, on a connection of its own; fn uses the pool).
// SQLite needs none: one process owns the file.
func (db *DB) withAdoptLock(ctx context.Context, fn func() error) error {
	if db.Dialect != dialect.Postgres {
		return fn()
	}
	release, err := MigrationLock(ctx, db.sql, adoptLockID)
	if err != nil {
		return fmt.Errorf("taking the adoption lock: %w", err)
	}
	return errors.Join(fn(), release())
}

// tableExists reports whether the database has a table of that name (in
// the current schema, on PostgreSQL).
func (db *DB) tableExists(ctx context.Context, name string) (bool, error) {
	q := "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
	if db.Dialect == dialect.Postgres {
		q = "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1"
	}
	var n int // count(*) always returns a row
	if err := db.sql.QueryRowContext(ctx, q, name).Scan(&n); err != nil {
		return false, fmt.Errorf("looking for table %s: %w", name, err)
	}
	return n > 0, nil
}
