package upload

import "time"

// UnfinishedOnPostgresSQL is the resume lookup's statement on PostgreSQL,
// for the tests that ask PostgreSQL how it runs it.
const UnfinishedOnPostgresSQL = unfinishedOnPostgresSQL

// FirstCopiesOnPostgresSQL and FirstCopiesOnSQLiteSQL are the copies
// lookup's statements, for the tests that ask the databases how they
// run them.
const (
	FirstCopiesOnPostgresSQL = firstCopiesOnPostgresSQL
	FirstCopiesOnSQLiteSQL   = firstCopiesOnSQLiteSQL
)

// SetProcessingSlotWait shortens how long s's ProcessMedia waits for a
// processing slot, for the test of its giving up.
func SetProcessingSlotWait(s *Service, d time.Duration) { s.slotWait = d }
