package upload

// UnfinishedOnPostgresSQL is the resume lookup's statement on PostgreSQL,
// for the tests that ask PostgreSQL how it runs it.
const UnfinishedOnPostgresSQL = unfinishedOnPostgresSQL
