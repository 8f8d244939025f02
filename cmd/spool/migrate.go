package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spoolhq/spool/internal/app"
	"github.com/spoolhq/spool/internal/database"
	"github.com/spoolhq/spool/internal/jobs"
)

// migrate applies the database's pending schema migrations and says
// which it applied. serve applies them at start too; this is for
// upgrading ahead of a rollout, or checking what a release would do.
//
// The database is --database-url (SPOOL_DATABASE_URL, else DATABASE_URL);
// without one, the SQLite file in --data-dir.
func migrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	dataDir := app.DefaultConfig().DataDir
	fs := flag.NewFlagSet("spool migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	// DATABASE_URL is the variable operators already set for their
	// PostgreSQL; SPOOL_DATABASE_URL (read by parseFlags) wins over it.
	dbURL := fs.String("database-url", getenv("DATABASE_URL"), "PostgreSQL `URL` (postgres://…); empty means the SQLite file in --data-dir")
	fs.StringVar(&dataDir, "data-dir", dataDir, "`DIR` of the embedded SQLite database")
	if err := parseFlags(fs, args, getenv); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	db, err := database.Open(ctx, *dbURL, filepath.Join(dataDir, database.SQLiteFile), database.WithoutMigrate())
	if err != nil {
		return err
	}
	defer db.Close()
	applied, err := db.Up(ctx)
	for _, a := range applied {
		fmt.Fprintf(stdout, "applied %s (version %d) in %s\n", a.Name, a.Version, a.Duration.Round(1e6))
	}
	if err != nil {
		return err
	}
	queued, err := jobs.Migrate(ctx, db.SQL(), db.Dialect)
	for _, a := range queued {
		fmt.Fprintf(stdout, "applied job queue migration %03d %s\n", a.Version, a.Name)
	}
	if err != nil {
		return err
	}
	version, err := db.Version(ctx)
	if err != nil {
		return err
	}
	if len(applied) == 0 && len(queued) == 0 {
		fmt.Fprintf(stdout, "%s is up to date at version %d\n", db, version)
	} else {
		fmt.Fprintf(stdout, "%s is now at version %d\n", db, version)
	}
	return nil
}
