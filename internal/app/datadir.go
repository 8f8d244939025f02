package app

import (
	"fmt"
	"path/filepath"

	"github.com/gofrs/flock"
)

// LockFile is the file in the data dir a server holds locked while it
// runs on the embedded database (lockDataDir).
const LockFile = "serve.lock"

// lockDataDir makes a server on the embedded SQLite database the one
// server of its data dir. A second one there would start and seem to
// work, but the two would each fan progress out to their own
// subscribers, commit receipts in groups of their own, and share one
// database file and one storage dir that each believes it alone writes:
// several servers share PostgreSQL, Redis and GCS instead, each with a
// data dir of its own (docs/OPERATIONS.md). The lock is an flock, which
// the kernel drops when the process dies, so a server killed with
// SIGKILL never keeps the next one from starting. With --database-url
// nothing is locked: the data dir then holds only the secret, which
// replicas on one machine may share. It returns nil with nothing to hold.
func lockDataDir(cfg Config) (*flock.Flock, error) {
	if cfg.DatabaseURL != "" {
		return nil, nil
	}
	lock := flock.New(filepath.Join(cfg.DataDir, LockFile))
	held, err := lock.TryLock()
	if err != nil {
		return nil, fmt.Errorf("locking data dir %s: %w", cfg.DataDir, err)
	}
	if !held {
		return nil, fmt.Errorf("data dir %s is in use by another spool server: stop it, or give this one another --data-dir (its SQLite database and files belong to one server; to run several, share PostgreSQL, Redis and GCS, each server with a data dir of its own)", cfg.DataDir)
	}
	return lock, nil
}
