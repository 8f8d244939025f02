package database

import (
	"context"
	"database/sql"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"modernc.org/sqlite"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/uploadchunk"
	"github.com/spoolhq/spool/ent/uploadsession"
)

// rawCached opens a SQLite file through the statement cache alone (no
// migrations, no ent), with one connection as spool uses.
func rawCached(t *testing.T, size int) (*sql.DB, *stmtCacheStats) {
	t.Helper()
	base, err := sqlite.NewConnector("file:" + filepath.Join(t.TempDir(), "c.db") + "?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	c := newStmtCacheConnector(base, size)
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db, c.stats
}

func mustExec(t *testing.T, db *sql.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.Exec(query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func count(t *testing.T, db *sql.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// chunkFixture makes a user, a batch and a session for chunk rows to
// belong to, and returns the session's id.
func chunkFixture(tb testing.TB, c *ent.Client) string {
	tb.Helper()
	ctx := context.Background()
	u, err := c.User.Create().SetSubject("bench").SetQuotaBytes(1 << 40).Save(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := c.UploadBatch.Create().SetOwnerID(u.ID).Save(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := c.UploadSession.Create().SetOwnerID(u.ID).SetBatchID(b.ID).
		SetFileName("f.mp4").SetOriginalName("f.mp4").SetMimeType("video/mp4").
		SetMediaType(uploadsession.MediaTypeVIDEO).SetTotalSize(1 << 40).
		SetStrategy(uploadsession.StrategyCHUNKED).SetChunkSize(8 << 20).SetTotalChunks(1 << 17).
		SetStorageKey("k").SetExpiresAt(time.Now().Add(time.Hour)).Save(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return s.ID
}

// receiveChunk is the chunk table's share of a chunk receipt as
// internal/upload does it: in one transaction, ent's insert-or-update of
// the chunk's row, then a read of it.
func receiveChunk(ctx context.Context, c *ent.Client, sessionID string, index int) error {
	tx, err := c.Tx(ctx)
	if err != nil {
		return err
	}
	err = tx.UploadChunk.Create().
		SetSessionID(sessionID).SetIndex(index).SetState(uploadchunk.StateRECEIVED).SetSize(8<<20).
		SetCrc32c(int64(index)).SetUpdatedAt(time.Now()).
		OnConflictColumns(uploadchunk.FieldSessionID, uploadchunk.FieldIndex).
		Update(func(u *ent.UploadChunkUpsert) {
			u.UpdateState().UpdateSize().UpdateCrc32c().UpdateUpdatedAt().AddAttempts(1).
				ClearDigest().ClearErrorCode().ClearError()
		}).Exec(ctx)
	if err != nil {
		_ = tx.Rollback()
		return err
	}
	if _, err := tx.UploadChunk.Query().
		Where(uploadchunk.SessionID(sessionID), uploadchunk.Index(index)).Only(ctx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Through ent, as spool runs: once a chunk has been received, receiving
// more prepares no statement; each is served from the cache.
func TestStatementsArePreparedOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := Open(ctx, "", filepath.Join(t.TempDir(), SQLiteFile))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sid := chunkFixture(t, db.Client)
	if err := receiveChunk(ctx, db.Client, sid, 0); err != nil { // prepares BEGIN, the insert-or-update, the read and COMMIT
		t.Fatal(err)
	}
	prepares, hits := db.stmts.prepares.Load(), db.stmts.hits.Load()
	const n = 20
	for i := range n {
		if err := receiveChunk(ctx, db.Client, sid, i%3); err != nil {
			t.Fatal(err)
		}
	}
	if got := db.stmts.prepares.Load() - prepares; got != 0 {
		t.Errorf("%d chunks prepared %d statements, want 0 (each was prepared before)", n, got)
	}
	// BEGIN and COMMIT are statements of the connection too: SQLite's
	// transactions whose context cannot be cancelled run on a connection
	// (sqltx.TxOnConn), not as database/sql transactions.
	if got := db.stmts.hits.Load() - hits; got != 4*n {
		t.Errorf("%d chunks ran %d cached statements, want %d (BEGIN, an insert-or-update, a read and COMMIT each)", n, got, 4*n)
	}
	rows, err := db.Client.UploadChunk.Query().All(ctx)
	if err != nil || len(rows) != 3 {
		t.Fatalf("chunk rows: %d, %v; want 3", len(rows), err)
	}
	want := map[int]int{0: 1} // receipts per index: the one above, then i%3
	for i := range n {
		want[i%3]++
	}
	for _, r := range rows {
		if r.Attempts != want[r.Index] {
			t.Errorf("chunk %d: %d attempts, want %d", r.Index, r.Attempts, want[r.Index])
		}
	}
}

// The same text run again while its rows are still open (a nested query)
// gets a statement of its own; both read their own rows.
func TestStatementCacheNestedQuery(t *testing.T) {
	t.Parallel()
	db, stats := rawCached(t, 16)
	mustExec(t, db, "CREATE TABLE t (x INTEGER)")
	for i := range 3 {
		mustExec(t, db, "INSERT INTO t (x) VALUES (?)", i)
	}
	const q = "SELECT x FROM t WHERE x >= ? ORDER BY x"
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	outer, err := conn.QueryContext(context.Background(), q, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for outer.Next() {
		var x int
		if err := outer.Scan(&x); err != nil {
			t.Fatal(err)
		}
		bypasses := stats.bypasses.Load()
		var inner []int
		rows, err := conn.QueryContext(context.Background(), q, x+1)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var y int
			if err := rows.Scan(&y); err != nil {
				t.Fatal(err)
			}
			inner = append(inner, y)
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
		if stats.bypasses.Load() != bypasses+1 {
			t.Errorf("the nested query did not bypass the busy statement")
		}
		if len(inner) != 2-x {
			t.Errorf("nested rows after %d: %v", x, inner)
		}
		got = append(got, x)
	}
	if err := outer.Close(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("outer rows %v", got)
	}
	conn.Close() // the pool's one connection, for db below
	// Closed, the statement serves again.
	hits := stats.hits.Load()
	if n := count(t, db, "SELECT count(*) FROM t WHERE x >= ?", 1); n != 2 {
		t.Fatalf("count %d", n)
	}
	rows, err := db.Query(q, 2)
	if err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if stats.hits.Load() != hits+1 {
		t.Errorf("the statement was not reused once its rows closed")
	}
}

// Scripts (goose's migrations) run whole and are not cached.
func TestStatementCacheLeavesScriptsAlone(t *testing.T) {
	t.Parallel()
	db, stats := rawCached(t, 16)
	mustExec(t, db, "CREATE TABLE a (x INTEGER); CREATE TABLE b (y INTEGER);\nINSERT INTO a VALUES (1);")
	if stats.prepares.Load() != 0 || stats.bypasses.Load() != 1 {
		t.Errorf("a script was cached: %d prepares, %d bypasses", stats.prepares.Load(), stats.bypasses.Load())
	}
	if n := count(t, db, "SELECT count(*) FROM a"); n != 1 {
		t.Errorf("a has %d rows", n)
	}
	if n := count(t, db, "SELECT count(*) FROM b;  "); n != 0 { // one trailing ';' is one statement
		t.Errorf("b has %d rows", n)
	}
	if stats.prepares.Load() != 2 {
		t.Errorf("%d statements prepared, want the two single ones", stats.prepares.Load())
	}
	// One statement whose comment holds a ';' (as River's completion of
	// a job does) is prepared once and then reused.
	hits := stats.hits.Load()
	for range 2 {
		mustExec(t, db, "-- the list once; then the rows\nINSERT INTO b VALUES (1)")
	}
	if stats.prepares.Load() != 3 || stats.hits.Load() != hits+1 {
		t.Errorf("a statement with a ';' in a comment: %d prepares (want 3), %d hits (want %d)", stats.prepares.Load(), stats.hits.Load(), hits+1)
	}
	for _, q := range []string{
		"SELECT 1;", "SELECT 1 ; \n", "SELECT 1", "SELECT ';'", "SELECT 'it''s; fine'", `SELECT "a;b" FROM t`,
		"SELECT `a;b`, [c;d] FROM t", "-- the list once; then\nSELECT 1", "SELECT /* a; b */ 1;", "SELECT 1; -- done",
		"SELECT 1; /* done */\n", "SELECT 1 -- no newline; at the end",
	} {
		if !cacheable(q) {
			t.Errorf("%q not cacheable", q)
		}
	}
	for _, q := range []string{
		"SELECT 1; SELECT 2", "SELECT 1;;", "SELECT ';'; SELECT 2", "-- a\nSELECT 1;\n-- b\nSELECT 2",
		"SELECT /* ; */ 1; SELECT 2", "SELECT 1;'x'", strings.Repeat(" ", maxCachedQuery) + "SELECT 1",
	} {
		if cacheable(q) {
			t.Errorf("%.40q cacheable", q)
		}
	}
}

// A cached statement follows schema changes: SQLite prepares it again
// when a migration changed what it was planned against.
func TestStatementCacheAcrossSchemaChanges(t *testing.T) {
	t.Parallel()
	db, stats := rawCached(t, 16)
	mustExec(t, db, "CREATE TABLE t (x INTEGER)")
	mustExec(t, db, "INSERT INTO t VALUES (1)")
	cols := func() []string {
		rows, err := db.Query("SELECT * FROM t")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		c, err := rows.Columns()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := cols(); len(c) != 1 {
		t.Fatalf("columns %v", c)
	}
	mustExec(t, db, "ALTER TABLE t ADD COLUMN y TEXT")
	if c := cols(); len(c) != 2 {
		t.Fatalf("after ADD COLUMN: columns %v", c)
	}
	// The table rebuilt, as SQLite migrations do it.
	mustExec(t, db, "CREATE TABLE t2 (x INTEGER, y TEXT, z INTEGER DEFAULT 7)")
	mustExec(t, db, "INSERT INTO t2 (x, y) SELECT x, y FROM t")
	mustExec(t, db, "DROP TABLE t")
	mustExec(t, db, "ALTER TABLE t2 RENAME TO t")
	if c := cols(); len(c) != 3 {
		t.Fatalf("after the rebuild: columns %v", c)
	}
	if hits := stats.hits.Load(); hits < 2 {
		t.Errorf("%d hits: the statement was not reused across the changes", hits)
	}
	// A dropped table fails the statement, which leaves the cache; the
	// table made again, it works again.
	mustExec(t, db, "DROP TABLE t")
	if _, err := db.Query("SELECT * FROM t"); err == nil {
		t.Fatal("query of a dropped table succeeded")
	}
	mustExec(t, db, "CREATE TABLE t (w INTEGER)")
	if c := cols(); len(c) != 1 || c[0] != "w" {
		t.Fatalf("after re-creating: columns %v", c)
	}
}

// A statement that fails leaves the cache and is prepared afresh; a
// failure changes nothing for the next use.
func TestStatementCacheAfterErrors(t *testing.T) {
	t.Parallel()
	db, stats := rawCached(t, 16)
	mustExec(t, db, "CREATE TABLE u (k TEXT PRIMARY KEY)")
	const ins = "INSERT INTO u (k) VALUES (?)"
	mustExec(t, db, ins, "a")
	prepares := stats.prepares.Load()
	if _, err := db.Exec(ins, "a"); err == nil {
		t.Fatal("duplicate key accepted")
	}
	mustExec(t, db, ins, "b")
	if got := stats.prepares.Load() - prepares; got != 1 {
		t.Errorf("%d prepares after the failure, want 1", got)
	}
	if n := count(t, db, "SELECT count(*) FROM u"); n != 2 {
		t.Errorf("%d rows", n)
	}
	// Wrong argument counts fail as the driver fails them.
	if _, err := db.Exec(ins); err == nil {
		t.Error("missing argument accepted")
	}
	// A syntax error reports the driver's error.
	if _, err := db.Exec("INSERT INTO u (k VALUES (?)", "c"); err == nil || !strings.Contains(err.Error(), "syntax") {
		t.Errorf("syntax error: %v", err)
	}
	// A cancelled query: the next one works.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := db.ExecContext(ctx, ins, "c"); err == nil {
		t.Error("cancelled insert succeeded")
	}
	mustExec(t, db, ins, "d")
	if n := count(t, db, "SELECT count(*) FROM u"); n != 3 {
		t.Errorf("%d rows, want 3", n)
	}
}

// The cache is bounded; the least recently used statement leaves first,
// and one evicted while its rows are open is closed with them.
func TestStatementCacheEvicts(t *testing.T) {
	t.Parallel()
	db, stats := rawCached(t, 2)
	mustExec(t, db, "CREATE TABLE t (x INTEGER)")
	for i := range 5 {
		mustExec(t, db, "INSERT INTO t VALUES (?)", i)
	}
	q := func(n int) string { return "SELECT x FROM t WHERE x < " + string(rune('0'+n)) }
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	open, err := conn.QueryContext(ctx, q(5))
	if err != nil {
		t.Fatal(err)
	}
	if !open.Next() {
		t.Fatal("no row")
	}
	for i := 1; i <= 3; i++ { // pushes q(5), busy, out of the cache
		var x int
		if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM ("+q(i)+")").Scan(&x); err != nil || x != i {
			t.Fatalf("%d: %d, %v", i, x, err)
		}
	}
	n := 1
	for open.Next() {
		n++
	}
	if err := open.Close(); err != nil || n != 5 {
		t.Fatalf("the evicted statement's rows: %d, %v", n, err)
	}
	var size int
	if err := conn.Raw(func(dc any) error { size = dc.(*stmtCacheConn).lru.Len(); return nil }); err != nil {
		t.Fatal(err)
	}
	if size != 2 {
		t.Errorf("%d cached statements, want 2", size)
	}
	prepares := stats.prepares.Load()
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM ("+q(1)+")").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if stats.prepares.Load() != prepares+1 {
		t.Errorf("the least recently used statement was still cached")
	}
}

// Column types read through the cache as from the driver.
func TestStatementCacheColumnTypes(t *testing.T) {
	t.Parallel()
	db, _ := rawCached(t, 16)
	mustExec(t, db, "CREATE TABLE t (i INTEGER NOT NULL, s TEXT, d DATETIME)")
	mustExec(t, db, "INSERT INTO t VALUES (1, 'a', '2026-01-02 03:04:05')")
	plain, _ := rawCached(t, 0)
	mustExec(t, plain, "CREATE TABLE t (i INTEGER NOT NULL, s TEXT, d DATETIME)")
	mustExec(t, plain, "INSERT INTO t VALUES (1, 'a', '2026-01-02 03:04:05')")
	describe := func(db *sql.DB) string {
		rows, err := db.Query("SELECT i, s, d FROM t")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		types, err := rows.ColumnTypes()
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, ct := range types {
			n, nok := ct.Nullable()
			l, lok := ct.Length()
			b.WriteString(ct.Name() + " " + ct.DatabaseTypeName() + " " + ct.ScanType().String())
			b.WriteString(" " + map[bool]string{true: "null", false: "notnull"}[n] + map[bool]string{true: "?", false: ""}[nok])
			b.WriteString(" " + map[bool]string{true: "len", false: ""}[lok] + string(rune('0'+l%10)) + "\n")
		}
		return b.String()
	}
	if got, want := describe(db), describe(plain); got != want {
		t.Errorf("column types through the cache:\n%s\nwithout:\n%s", got, want)
	}
}

// Transactions run on the connection's cache and roll back as usual.
func TestStatementCacheInTransactions(t *testing.T) {
	t.Parallel()
	db, stats := rawCached(t, 16)
	mustExec(t, db, "CREATE TABLE t (x INTEGER)")
	for _, commit := range []bool{false, true, true} {
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec("INSERT INTO t VALUES (?)", 1); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := tx.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if commit {
			err = tx.Commit()
		} else {
			err = tx.Rollback()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := count(t, db, "SELECT count(*) FROM t"); n != 2 {
		t.Errorf("%d rows, want 2 (one transaction rolled back)", n)
	}
	if h := stats.hits.Load(); h != 5 {
		t.Errorf("%d hits, want 5 (the insert and the count, second and third time, and the count after)", h)
	}
}

// The parameters of a text's LIMITs, numbered as SQLite numbers them;
// a LIMIT in a comment or a string is none.
func TestLimitParams(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		query string
		want  []int
	}{
		{"SELECT x FROM t WHERE y = ?", nil},
		{"SELECT x FROM t LIMIT 2", nil},
		{"SELECT x FROM t WHERE y = ? ORDER BY x LIMIT ?", []int{2}},
		{"SELECT x FROM t WHERE y = ? LIMIT ? OFFSET ?", []int{2}},
		{"select x from t where y = ? limit\n\t?", []int{2}},
		{"UPDATE t SET a = ?1 WHERE id IN (SELECT id FROM t WHERE q = ?2 ORDER BY p LIMIT ?5) RETURNING id", []int{5}},
		{"SELECT x FROM t WHERE a = ?3 AND b = ? LIMIT ?", []int{5}}, // a bare ? follows the largest so far
		{"SELECT x FROM t WHERE a = :a AND b = @b AND c = :a LIMIT $n", []int{3}},
		{"SELECT (SELECT y FROM u LIMIT ?6 - 1) FROM t LIMIT ?5", []int{6, 5}},
		{"SELECT x FROM t -- LIMIT ?\nWHERE y = ?", nil},
		{"SELECT x FROM t /* LIMIT ? */ WHERE y = ?", nil},
		{"SELECT 'LIMIT ?', x FROM t WHERE y = ?", nil},
		{`SELECT "LIMIT" FROM t WHERE y = ?`, nil},
		{"SELECT x FROM t WHERE nolimit = ? LIMIT ?", []int{2}},
		{"SELECT x FROM t LIMIT (?)", nil}, // an expression: left to one statement
	} {
		if got := limitParams(c.query); !slices.Equal(got, c.want) {
			t.Errorf("limitParams(%q) = %v, want %v", c.query, got, c.want)
		}
	}
}

// A statement whose LIMIT is a parameter is prepared once for each value
// bound there, and each is served from the cache after: SQLite would
// prepare it again whenever the value changed.
func TestStatementCacheKeepsOneStatementPerLimit(t *testing.T) {
	t.Parallel()
	db, stats := rawCached(t, stmtCacheSize)
	mustExec(t, db, "CREATE TABLE t (x INTEGER)")
	for i := range 5 {
		mustExec(t, db, "INSERT INTO t VALUES (?)", i)
	}
	const q = "SELECT count(*) FROM (SELECT x FROM t WHERE x >= ? ORDER BY x LIMIT ?)"
	prepares, hits := stats.prepares.Load(), stats.hits.Load()
	for i := range 10 {
		limit := 2 + 2*(i%2) // 2, 4, 2, 4, …
		if n := count(t, db, q, 0, limit); n != limit {
			t.Fatalf("LIMIT %d: %d rows", limit, n)
		}
	}
	if got := stats.prepares.Load() - prepares; got != 2 {
		t.Errorf("10 runs alternating two LIMITs prepared %d statements, want 2", got)
	}
	if got := stats.hits.Load() - hits; got != 8 {
		t.Errorf("10 runs alternating two LIMITs were served %d times from the cache, want 8", got)
	}
	// A named argument leaves the text to one statement for all values.
	prepares = stats.prepares.Load()
	for i := range 4 {
		limit := 1 + i%2
		if n := count(t, db, "SELECT count(*) FROM (SELECT x FROM t WHERE x >= :lo LIMIT :n)", sql.Named("lo", 0), sql.Named("n", limit)); n != limit {
			t.Fatalf("named LIMIT %d: %d rows", limit, n)
		}
	}
	if got := stats.prepares.Load() - prepares; got != 1 {
		t.Errorf("4 runs with named arguments prepared %d statements, want 1", got)
	}
}
