package database

import "github.com/jackc/pgx/v5"

// PlannedEachRun, given to a statement on PostgreSQL as its first
// argument, has pgx send it unprepared: PostgreSQL plans it at each run,
// for its arguments and for the tables as they are then. Every other
// statement is prepared once per connection (pgx's statement cache), and
// after five runs PostgreSQL may keep one generic plan for good, made
// for the tables as they were: made while a young database's table was
// nearly empty, when every index costs the same, it can go on walking
// the table through the wrong one once the table is large. A statement
// whose plan must follow its table's growth takes this, at the price of
// its planning at every run. SQLite's statements take no such argument.
// A statement ent's builders write takes it through its context
// (sqltx.WithStatementOption).
const PlannedEachRun = pgx.QueryExecModeExec
