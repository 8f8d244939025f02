package jobs

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spoolhq/spool/internal/database"
	"github.com/spoolhq/spool/internal/database/dbtest"
)

// TestFrequentReadsPlannedEachRun: on PostgreSQL the two statements on
// River's table that run every few seconds, the metrics' count of
// unfinished jobs and the look for lost ones, are planned at each run,
// not left prepared: a prepared statement keeps the plan made while the
// table held a few jobs (a sequential scan), and River keeps a day of
// finished jobs. A statement run on the same connection the usual way
// is prepared there, which shows the check looks at the right one.
func TestFrequentReadsPlannedEachRun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := database.Open(ctx, dbtest.Postgres(t), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := Migrate(ctx, db.SQL(), db.Dialect); err != nil {
		t.Fatal(err)
	}
	db.SQL().SetMaxOpenConns(1) // every statement below on one connection
	q, err := New(db.SQL(), db.Dialect, Config{ManualSweeps: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// pgx prepares a statement the first time its connection sees it.
	if _, err := q.CountUnfinished(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := q.lostJobs(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	const control = "SELECT count(*) FROM river_job WHERE id = $1"
	var n int
	if err := db.SQL().QueryRowContext(ctx, control, 1).Scan(&n); err != nil {
		t.Fatal(err)
	}
	rows, err := db.SQL().QueryContext(ctx, "SELECT statement FROM pg_prepared_statements")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	controlPrepared := false
	for rows.Next() {
		var statement string
		if err := rows.Scan(&statement); err != nil {
			t.Fatal(err)
		}
		controlPrepared = controlPrepared || statement == control
		for name, s := range map[string]string{"the count of unfinished jobs": countUnfinished, "the look for lost jobs": lostRunning} {
			if strings.TrimSpace(statement) == strings.TrimSpace(s) {
				t.Errorf("%s is prepared on the connection:\n%s", name, statement)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if !controlPrepared {
		t.Fatal("the control statement is not prepared on the connection: the check looks at another one")
	}
}
