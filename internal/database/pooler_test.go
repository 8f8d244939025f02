package database

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/spoolhq/spool/internal/database/dbtest"
)

// Statements from many connections at once, each with an argument (so
// sent by the extended protocol, prepared unless the mode says not):
// behind a transaction pooler in pgx's default mode, one in how many
// failed for a statement prepared elsewhere, and the errors' codes.
func concurrentStatements(t *testing.T, db *DB) (failed int, codes map[string]int) {
	t.Helper()
	ctx := context.Background()
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	codes = map[string]int{}
	for g := range 8 {
		wg.Go(func() {
			for i := range 40 {
				var n int
				err := db.SQL().QueryRowContext(ctx, "SELECT $1::int + 1", g*100+i).Scan(&n)
				if err == nil && n == g*100+i+1 {
					continue
				}
				var pgErr *pgconn.PgError
				mu.Lock()
				failed++
				if errors.As(err, &pgErr) {
					codes[pgErr.Code]++
				} else {
					codes[err.Error()]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return failed, codes
}

// Open finds a pooler in transaction mode in front of PostgreSQL and
// sends statements unprepared through it, so nothing fails for a
// statement prepared on another server connection; reaching PostgreSQL
// itself it keeps pgx's prepared statements. A URL that names the mode
// is taken at its word: behind the pooler, pgx's default mode then fails
// as the detection keeps it from failing.
func TestOpenFindsAPooler(t *testing.T) {
	t.Parallel()
	direct := dbtest.Postgres(t)
	pooled := dbtest.PgBouncer(t, direct)
	ctx := context.Background()
	for _, c := range []struct {
		name       string
		url        string
		wantPooled bool
		wantFail   bool
	}{
		{"PostgreSQL itself", direct, false, false},
		{"through PgBouncer", pooled, true, false},
		{"through PgBouncer, the URL naming pgx's default mode", dbtest.Rewrite(t, pooled, "", execModeParam, "cache_statement"), false, true},
	} {
		db, err := Open(ctx, c.url, "", WithoutMigrate())
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		failed, codes := concurrentStatements(t, db)
		if db.pooled != c.wantPooled || (failed > 0) != c.wantFail {
			t.Errorf("%s: pooled = %v, %d of 320 statements failed (%v); want pooled %v and failures %v",
				c.name, db.pooled, failed, codes, c.wantPooled, c.wantFail)
		}
		t.Logf("%s: pooled = %v, %d of 320 statements failed %v", c.name, db.pooled, failed, codes)
		db.Close()
	}
}

// TestOpenFindsPgpool: pgpool-II names its server connections' own
// backends, so only asking finds it; Open then sends statements by the
// simple protocol, and a write outside a transaction is there at once
// for another connection to read. A URL that names pgx's default mode
// is taken at its word, and shows why: pgpool-II (its issue #172) holds
// such a write, sent by the extended protocol, inside a transaction of
// its own that it does not end, so another connection does not see it.
func TestOpenFindsPgpool(t *testing.T) {
	t.Parallel()
	itself := dbtest.Postgres(t)
	ctx := context.Background()
	pgpool := dbtest.Pgpool(t, itself)
	for name, want := range map[string]pooler{itself: direct, dbtest.PgBouncer(t, itself): transactionPooler, pgpool: pgpoolII} {
		cfg, err := pgConnConfig(name, transactionPooler)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := findPooler(ctx, cfg); err != nil || got != want {
			t.Errorf("findPooler(%s) = %v, %v; want %v", name, got, err, want)
		}
	}

	reader, err := Open(ctx, itself, "", WithoutMigrate())
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	if _, err := reader.SQL().ExecContext(ctx, "CREATE TABLE written (n int)"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		url     string
		visible bool
	}{
		{"found", pgpool, true},
		{"the URL naming pgx's default mode", dbtest.Rewrite(t, pgpool, "", execModeParam, "cache_statement"), false},
	} {
		db, err := Open(ctx, c.url, "", WithoutMigrate())
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		mark := len(c.name)
		if _, err := db.SQL().ExecContext(ctx, "INSERT INTO written VALUES ($1)", mark); err != nil {
			t.Fatalf("%s: INSERT: %v", c.name, err)
		}
		var n int
		if err := reader.SQL().QueryRowContext(ctx, "SELECT count(*) FROM written WHERE n = $1", mark).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if (n == 1) != c.visible {
			t.Errorf("through pgpool-II, %s: a write another connection sees %d times, want it seen: %v", c.name, n, c.visible)
		}
		db.Close()
	}
}
