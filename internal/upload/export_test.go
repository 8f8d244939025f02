package upload

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
