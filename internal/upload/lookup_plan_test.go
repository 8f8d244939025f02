package upload_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"entgo.io/contrib/entgql"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/mediafile"
	"github.com/spoolhq/spool/internal/database"
	"github.com/spoolhq/spool/internal/database/dbtest"
	"github.com/spoolhq/spool/internal/upload"
)

// TestResumeLookupReadsOnlyUnfinished: the lookup initBatch makes for an
// unfinished upload of a named file reads the user's unfinished uploads
// of that file and none of the finished ones, however many there are. A
// user who uploads, then cancels, the same file again and again leaves a
// history that the next initBatch of it must not walk.
//
// The test asks the database how it runs the lookup the Service sent
// (found in the recorded log): SQLite for its plan, which must go by the
// two indexes down to their entries of unfinished uploads (finished_at
// NULL); PostgreSQL, with 2,003 cancelled uploads of the file and 2,000
// unfinished uploads of others, analysed, for the scans of its plan and
// the rows they read, for one file and for a full lookup of 200.
func TestResumeLookupReadsOnlyUnfinished(t *testing.T) {
	t.Parallel()
	onRecordedEngines(t, func(t *testing.T, e *testEnv, log *sqlLog) {
		ctx := context.Background()
		postgres := isPostgres(e)
		alice := e.user(t, "alice")
		// Values without spaces: the test reads the lookup's arguments
		// back from the log's text.
		sum := sha256Hex(file11)
		spec := mp4Spec("again.mp4", file11)
		spec.Fingerprint, spec.SHA256 = ptr("again-fp"), &sum
		for range 3 {
			cancelled := e.initOne(t, alice, spec)
			if _, err := e.svc.Cancel(ctx, alice, cancelled.ID); err != nil {
				t.Fatal(err)
			}
		}
		if postgres {
			// Many more cancelled uploads of the file, as copies of the
			// last one's row; as many unfinished uploads of other files;
			// and statistics about them.
			if _, err := e.sql.ExecContext(ctx, `INSERT INTO upload_sessions
				SELECT (jsonb_populate_record(s, jsonb_build_object('id', s.id || '-' || g))).*
				FROM upload_sessions s, generate_series(1, 2000) g
				WHERE s.owner_id = $1 AND s.status = 'CANCELLED' AND s.id = (SELECT max(id) FROM upload_sessions WHERE owner_id = $1)`, alice); err != nil {
				t.Fatal(err)
			}
			if _, err := e.sql.ExecContext(ctx, `INSERT INTO upload_sessions
				SELECT (jsonb_populate_record(s, jsonb_build_object('id', s.id || '-other-' || g, 'status', 'INITIALIZED',
					'finished_at', null, 'fingerprint', 'other-' || g, 'sha256', md5(g::text) || md5(g::text)))).*
				FROM upload_sessions s, generate_series(1, 2000) g
				WHERE s.owner_id = $1 AND s.id = (SELECT max(id) FROM upload_sessions WHERE owner_id = $1 AND status = 'CANCELLED')`, alice); err != nil {
				t.Fatal(err)
			}
			// VACUUM too, cleaning the indexes even for a few dead rows:
			// the cancelled uploads' row versions from before their cancel
			// stay in the indexes as dead entries until it does, and a
			// bitmap scan counts them.
			if _, err := e.sql.ExecContext(ctx, "VACUUM (INDEX_CLEANUP ON, ANALYZE) upload_sessions"); err != nil {
				t.Fatal(err)
			}
		}
		unfinished := e.initOne(t, alice, spec)

		log.take()
		again := e.initOne(t, alice, spec)
		if again.ID != unfinished.ID {
			t.Fatalf("initBatch of the same file again made upload %s, want %s resumed", again.ID, unfinished.ID)
		}
		lines := log.take()
		if !postgres {
			// The tus flag is in the text, as NOT tus.
			query, args := loggedStatement(t, lines, "^SELECT .*[`\"]fingerprint[`\"] IN ")
			plan := dbtest.SQLitePlan(t, e.sql, query, args...)
			for _, want := range []string{
				"uploadsession_fingerprint_owner_id_finished_at (fingerprint=? AND owner_id=? AND finished_at=?)",
				"uploadsession_sha256_owner_id_finished_at (sha256=? AND owner_id=? AND finished_at=?)",
			} {
				if !strings.Contains(plan, want) {
					t.Errorf("the lookup's plan\n%s\ndoes not use %s", plan, want)
				}
			}
			return
		}
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, upload.UnfinishedOnPostgresSQL) }) {
			t.Fatalf("the lookup did not run as UnfinishedOnPostgresSQL:\n%s", strings.Join(lines, "\n"))
		}
		// The one unfinished upload is found by its fingerprint and by
		// its sha256: two index entries, two rows at most. So too among
		// a full lookup's 200 fingerprints and 200 sums, which as IN
		// lists had PostgreSQL walk all of the user's uploads.
		fingerprints, sums := []string{*spec.Fingerprint}, []string{sum}
		for i := range 199 {
			fingerprints = append(fingerprints, fmt.Sprintf("unknown-%d", i))
			sums = append(sums, fmt.Sprintf("%064x", i))
		}
		for _, n := range []int{1, 200} {
			args := []any{alice, fingerprints[:n], sums[:n], false}
			read, walks, plan := postgresPlanReads(t, e, "upload_sessions", "uploadsession_", []string{"fingerprint", "sha256"}, upload.UnfinishedOnPostgresSQL, args)
			if len(walks) > 0 {
				t.Errorf("the lookup of %d files scans upload_sessions otherwise than by a fingerprint or a sum: %s\n%s", n, strings.Join(walks, "; "), plan)
			}
			// EXPLAIN gives a repeated scan's rows as a mean per run,
			// rounded: exact for one file, a floor for 200.
			if read > 2 {
				t.Errorf("the lookup of %d files read %.0f rows of upload_sessions for 1 unfinished upload among 2,003 of the file and 2,000 of others, want at most 2:\n%s",
					n, read, plan)
			}
		}
	})
}

// loggedStatement finds the first statement of a recorded log whose text
// matches pattern and returns its text and its arguments, read back from
// the log's text (strings without spaces).
// goTime matches a time.Time as its String method writes it; its group
// is the time without the monotonic clock's reading.
var goTime = regexp.MustCompile(`(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? [+-]\d{4} [A-Z]+)(?: m=[+-][\d.]+)?`)

func loggedStatement(t *testing.T, lines []string, pattern string) (string, []any) {
	t.Helper()
	re := regexp.MustCompile(`query=(.*) args=\[(.*)\]$`)
	match := regexp.MustCompile(pattern)
	for _, line := range lines {
		if m := re.FindStringSubmatch(line); m != nil && match.MatchString(m[1]) {
			var args []any
			// A time is logged as time.Time's String, with spaces: each
			// becomes one argument, in RFC 3339.
			logged := goTime.ReplaceAllStringFunc(m[2], func(v string) string {
				at, err := time.Parse("2006-01-02 15:04:05.999999999 -0700 MST", goTime.FindStringSubmatch(v)[1])
				if err != nil {
					t.Fatalf("a logged time: %v", err)
				}
				return at.Format(time.RFC3339Nano)
			})
			for _, a := range strings.Fields(logged) {
				args = append(args, a)
			}
			return m[1], args
		}
	}
	t.Fatalf("no statement matching %s among:\n%s", pattern, strings.Join(lines, "\n"))
	return "", nil
}

// TestResumeByOddFingerprints: a fingerprint is any 1 to 512 bytes the
// client chose, and on PostgreSQL the lookup sends a batch's fingerprints
// as one text[] argument. Commas, braces, quotes, backslashes, spaces and
// the word NULL are what an array's text form must escape; each such file
// resumes its own upload, alone and in one batch with the others, and
// never another's.
func TestResumeByOddFingerprints(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxBatchFiles = 20
	onBothDatabasesWith(t, cfg, func(t *testing.T, e *testEnv) {
		ctx := context.Background()
		alice := e.user(t, "alice")
		odd := []string{`a,b`, `{x}`, `"q"`, `back\slash`, `NULL`, `null`, `with space`, ` `, `é ü 字`, `'; DROP TABLE x; --`,
			strings.Repeat("f", 512)}
		files := make([]upload.FileSpec, len(odd))
		for i, fp := range odd {
			files[i] = mp4Spec(fmt.Sprintf("odd-%d.mp4", i), file11)
			files[i].Fingerprint = ptr(fp)
		}
		first, err := e.svc.InitBatch(ctx, alice, upload.BatchSpec{Files: files})
		if err != nil {
			t.Fatal(err)
		}
		for i, f := range files {
			if again := e.initOne(t, alice, f); again.ID != first.Uploads[i].ID {
				t.Errorf("fingerprint %q alone: upload %s, want %s resumed", odd[i], again.ID, first.Uploads[i].ID)
			}
		}
		second, err := e.svc.InitBatch(ctx, alice, upload.BatchSpec{Files: files})
		if err != nil {
			t.Fatal(err)
		}
		for i := range files {
			if second.Uploads[i].ID != first.Uploads[i].ID {
				t.Errorf("fingerprint %q in a batch: upload %s, want %s resumed", odd[i], second.Uploads[i].ID, first.Uploads[i].ID)
			}
		}
	})
}

// TestCopiesLookupReadsOneRowPerContent: the lookup initBatch makes for a
// READY copy of a file that names its sha256 reads, of each content, one
// row: the user's earliest live copy, which the new upload shares. Other
// users' files of the content (a popular file), the user's deleted
// copies and its later copies are not read, however many there are. As
// IN lists, the lookup read every row of the content through
// (content_hash), or on PostgreSQL walked the user's media by owner.
//
// The copies are rows cloned from a READY original: n deleted ones of
// alice's, n later live ones of alice's, and n of bob's (20 on SQLite,
// 2,000 on PostgreSQL, analysed). SQLite must plan the Service's lookup
// as one probe of (content_hash, owner_id, status, deleted_at) in the
// index's order, with no sort; PostgreSQL must scan media_files only by
// content_hash and read at most one row, for 1 content and for 200.
func TestCopiesLookupReadsOneRowPerContent(t *testing.T) {
	t.Parallel()
	onRecordedEngines(t, func(t *testing.T, e *testEnv, log *sqlLog) {
		ctx := context.Background()
		postgres := isPostgres(e)
		alice, bob := e.user(t, "alice"), e.user(t, "bob")
		data := []byte{0xFF, 0xFB}
		sum, size := sha256Hex(data), int64(len(data))
		orig := e.readyOriginal(t, alice, data)
		n := 20
		if postgres {
			n = 2000
		}
		// The clones share orig's created_at, and their ids sort after
		// its. Each has a storage key of its own, so that the copy's key
		// tells which file it shares (alice's own copies would share
		// orig's).
		for _, c := range []struct{ tag, owner, keySuffix, deletedAt string }{
			{"deleted", alice, "-deleted-", "m.created_at"},
			{"later", alice, "-later-", "NULL"},
			{"bobs", bob, "-bob-", "NULL"},
		} {
			clone := fmt.Sprintf(`WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < %d)
				INSERT INTO media_files (id, file_name, mime_type, media_type, file_size, storage_key, status, content_hash, created_at, owner_id, deleted_at)
				SELECT m.id || %s || g.n, m.file_name, m.mime_type, m.media_type, m.file_size, m.storage_key || %s || g.n, m.status,
					m.content_hash, m.created_at, %s, %s
				FROM media_files m, g WHERE m.id = %s`, n, placeholder(postgres, 1), placeholder(postgres, 2), placeholder(postgres, 3), c.deletedAt, placeholder(postgres, 4))
			if _, err := e.sql.ExecContext(ctx, clone, "-"+c.tag+"-", c.keySuffix, c.owner, orig.ID); err != nil {
				t.Fatal(err)
			}
		}
		if postgres {
			if _, err := e.sql.ExecContext(ctx, "VACUUM (INDEX_CLEANUP ON, ANALYZE) media_files"); err != nil {
				t.Fatal(err)
			}
		}

		log.take()
		sess := e.initOne(t, alice, upload.FileSpec{FileName: "copy.mp3", Size: size, MimeType: "audio/mpeg", SHA256: &sum})
		if !sess.Deduplicated {
			t.Fatalf("upload %s of a file alice has READY is not deduplicated", sess.ID)
		}
		lines := log.take()
		m, err := e.svc.UploadMedia(ctx, alice, sess.ID)
		if err != nil {
			t.Fatal(err)
		}
		if m.StorageKey != orig.StorageKey {
			t.Errorf("the copy shares %s, want the earliest live file's %s", m.StorageKey, orig.StorageKey)
		}
		statement := upload.FirstCopiesOnSQLiteSQL
		if postgres {
			statement = upload.FirstCopiesOnPostgresSQL
		}
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, statement) }) {
			t.Fatalf("initBatch did not look for copies with\n%s\nbut:\n%s", statement, strings.Join(lines, "\n"))
		}
		if !postgres {
			plan := dbtest.SQLitePlan(t, e.sql, statement, alice, fmt.Sprintf(`[[%q, %d, "audio/mpeg"]]`, sum, size))
			want := "SEARCH m USING INDEX mediafile_content_hash_owner_id_status_deleted_at_created_at_id (content_hash=? AND owner_id=? AND status=? AND deleted_at=?)"
			if !strings.Contains(plan, want) || strings.Contains(plan, "TEMP B-TREE") {
				t.Errorf("the lookup's plan\n%s\nis not %s in the index's order", plan, want)
			}
			return
		}
		sums, sizes, types := []string{sum}, []int64{size}, []string{"audio/mpeg"}
		for i := range 199 {
			sums, sizes, types = append(sums, fmt.Sprintf("%064x", i)), append(sizes, size), append(types, "audio/mpeg")
		}
		for _, k := range []int{1, 200} {
			args := []any{alice, sums[:k], sizes[:k], types[:k]}
			read, walks, plan := postgresPlanReads(t, e, "media_files", "mediafile_", []string{"content_hash"}, statement, args)
			if len(walks) > 0 {
				t.Errorf("the lookup of %d contents scans media_files otherwise than by content_hash: %s\n%s", k, strings.Join(walks, "; "), plan)
			}
			// A mean per run, rounded: exact for one content, a floor
			// for 200.
			if read > 1 {
				t.Errorf("the lookup of %d contents read %.0f rows of media_files, want 1 (the original) among %d copies of alice's and %d of bob's:\n%s",
					k, read, 2*n+1, n, plan)
			}
		}
	})
}

// TestLookupsPlannedEachRun: on PostgreSQL the copies lookup and the
// resume lookup go unprepared (database.PlannedEachRun), so that each run
// is planned for its user and for the table as it is then; a statement
// pgx prepares may be kept as one generic plan for good. With the pool
// held to its smallest, after an initBatch that runs both lookups, its
// connections' prepared statements hold initBatch's other statements
// and neither lookup. Without PlannedEachRun they would be there.
func TestLookupsPlannedEachRun(t *testing.T) {
	t.Parallel()
	e, err := newEnvOn(t, dbtest.Postgres(t), "", t.TempDir(), newFakeClock(), testConfig(), database.WithMaxOpenConns(1))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice := e.user(t, "alice")
	data := []byte{0xFF, 0xFB}
	sum := sha256Hex(data)
	e.readyOriginal(t, alice, data)
	named := mp4Spec("named.mp4", file11)
	named.Fingerprint = ptr("planned-fp")
	b, err := e.svc.InitBatch(ctx, alice, upload.BatchSpec{Files: []upload.FileSpec{
		{FileName: "copy.mp3", Size: int64(len(data)), MimeType: "audio/mpeg", SHA256: &sum}, named,
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !b.Uploads[0].Deduplicated || b.Uploads[1].Deduplicated {
		t.Fatalf("deduplicated: %v, %v; want the copy only", b.Uploads[0].Deduplicated, b.Uploads[1].Deduplicated)
	}
	// The pool keeps two connections even when asked for one (migrating
	// needs two), and the job queue uses them too: initBatch may have
	// run on either. So the look holds both at once and reads each one's
	// prepared statements (a session's own).
	if n := e.sql.Stats().MaxOpenConnections; n != 2 {
		t.Fatalf("the pool may open %d connections; the look holds 2", n)
	}
	var others int
	var conns [2]*sql.Conn
	for i := range conns {
		if conns[i], err = e.sql.Conn(ctx); err != nil {
			t.Fatal(err)
		}
		defer conns[i].Close()
	}
	for _, conn := range conns {
		rows, err := conn.QueryContext(ctx, "SELECT statement FROM pg_prepared_statements")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var statement string
			if err := rows.Scan(&statement); err != nil {
				t.Fatal(err)
			}
			for _, lookup := range []string{upload.FirstCopiesOnPostgresSQL, upload.UnfinishedOnPostgresSQL} {
				if strings.Contains(statement, lookup) {
					t.Errorf("the lookup is prepared on a connection:\n%s", statement)
				}
			}
			if strings.Contains(statement, "upload_sessions") {
				others++
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	if others == 0 {
		t.Fatal("no statement of initBatch is prepared on the pool's connections: the check looks at others")
	}
}

// TestHousekeepingReadsGoByIndex: three reads outside the upload path
// go down an index to their few rows instead of walking a user's rows or
// the table. A batch's uploads (the batch query) by batch_id; the files
// that reference a stored object (asked when one of them is deleted, and
// by its purge) by storage_key; the sweep's deleted files not yet purged
// by a partial index of only those. Before migration 00009 the first two
// walked all of the user's uploads or media by owner, and the third read
// the whole table at every sweep, to find none.
//
// The first and the third are the statements the Service sent (from the
// recorded log); the second is written here as DeleteMedia's and
// PurgeMedia's ent queries write it, since the recorded Service runs no
// jobs. SQLite must plan each by its index. On PostgreSQL alice has 2,000
// more uploads in batches of their own, 2,000 live files and 2,000
// deleted and purged ones, analysed, and each must scan by its index and
// read at most a batch's or a key's rows.
func TestHousekeepingReadsGoByIndex(t *testing.T) {
	t.Parallel()
	onRecordedEngines(t, func(t *testing.T, e *testEnv, log *sqlLog) {
		ctx := context.Background()
		postgres := isPostgres(e)
		alice := e.user(t, "alice")
		sess := e.initOne(t, alice, mp4Spec("batch.mp4", file11))
		orig := e.readyOriginal(t, alice, []byte{0xFF, 0xFB})
		if postgres {
			for _, clone := range []string{
				`INSERT INTO upload_batches SELECT (jsonb_populate_record(b, jsonb_build_object('id', b.id || '-' || g))).*
					FROM upload_batches b, generate_series(1, 2000) g WHERE b.id = $1`,
				`INSERT INTO upload_sessions SELECT (jsonb_populate_record(s, jsonb_build_object('id', s.id || '-' || g,
					'batch_id', s.batch_id || '-' || g))).* FROM upload_sessions s, generate_series(1, 2000) g WHERE s.batch_id = $1`,
			} {
				if _, err := e.sql.ExecContext(ctx, clone, sess.BatchID); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := e.sql.ExecContext(ctx, `INSERT INTO media_files
				SELECT (jsonb_populate_record(m, jsonb_build_object('id', m.id || '-' || g, 'storage_key', m.storage_key || '-' || g,
					'deleted_at', CASE WHEN g > 2000 THEN now() END, 'purged_at', CASE WHEN g > 2000 THEN now() END))).*
				FROM media_files m, generate_series(1, 4000) g WHERE m.id = $1`, orig.ID); err != nil {
				t.Fatal(err)
			}
			for _, table := range []string{"upload_batches", "upload_sessions", "media_files"} {
				if _, err := e.sql.ExecContext(ctx, "VACUUM (INDEX_CLEANUP ON, ANALYZE) "+table); err != nil {
					t.Fatal(err)
				}
			}
		}

		log.take()
		if b, err := e.svc.Batch(ctx, alice, sess.BatchID); err != nil || len(b.Uploads) != 1 {
			t.Fatalf("Batch = %v, %v; want its one upload", b, err)
		}
		if _, err := e.svc.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		lines := log.take()
		batchQuery, batchArgs := loggedStatement(t, lines, `FROM .upload_sessions. WHERE .upload_sessions.\..batch_id. = `)
		purgeQuery, purgeArgs := loggedStatement(t, lines, "purged_at. IS NULL")
		refs := fmt.Sprintf("SELECT storage_key, thumbnails FROM media_files WHERE owner_id = %s AND storage_key = %s AND deleted_at IS NULL",
			placeholder(postgres, 1), placeholder(postgres, 2))
		reads := []struct {
			what, query string
			args        []any
			index, key  string // the index the read must go by; what its scan is by
			rows        float64
		}{
			{"a batch's uploads", batchQuery, batchArgs, "uploadsession_batch_id (batch_id=?)", "batch_id", 1},
			{"the files of a stored object", refs, []any{alice, orig.StorageKey},
				"mediafile_storage_key_owner_id_deleted_at (storage_key=? AND owner_id=? AND deleted_at=?)", "storage_key", 1},
			{"deleted files not yet purged", purgeQuery, purgeArgs, "mediafile_deleted_unpurged", "mediafile_deleted_unpurged", 0},
		}
		for _, r := range reads {
			if !postgres {
				if plan := dbtest.SQLitePlan(t, e.sql, r.query, r.args...); !strings.Contains(plan, "USING INDEX "+r.index) {
					t.Errorf("%s: the plan\n%s\ndoes not use %s", r.what, plan, r.index)
				}
				continue
			}
			table, prefix := "media_files", "mediafile_"
			if strings.HasPrefix(r.index, "uploadsession_") {
				table, prefix = "upload_sessions", "uploadsession_"
			}
			read, walks, plan := postgresPlanReads(t, e, table, prefix, []string{r.key}, r.query, r.args)
			if len(walks) > 0 || read > r.rows {
				t.Errorf("%s: scans %v, %.0f rows read, want by %s and at most %.0f:\n%s", r.what, walks, read, r.key, r.rows, plan)
			}
		}
	})
}

// placeholder is the i-th (from 1) argument of a statement written here:
// $i on PostgreSQL, ? on SQLite.
func placeholder(postgres bool, i int) string {
	if postgres {
		return fmt.Sprintf("$%d", i)
	}
	return "?"
}

// postgresPlanReads runs query under EXPLAIN ANALYZE and returns how
// many rows of table its scans read (the rows a scan returned and those
// its filter dropped; a bitmap's index entries), its scans of table that
// are not by one of keys (a sequential scan; an index scan whose
// condition names none of them, nor is named by one), and the plan. prefix starts the names
// of table's indexes.
func postgresPlanReads(t *testing.T, e *testEnv, table, prefix string, keys []string, query string, args []any) (float64, []string, string) {
	t.Helper()
	var out string
	if err := e.sql.QueryRowContext(context.Background(), "EXPLAIN (ANALYZE, FORMAT JSON) "+query, args...).Scan(&out); err != nil {
		t.Fatal(err)
	}
	return planReads(t, out, table, prefix, keys)
}

// planReads is postgresPlanReads for a plan already taken: out is the
// output of EXPLAIN (ANALYZE, FORMAT JSON).
func planReads(t *testing.T, out, table, prefix string, keys []string) (float64, []string, string) {
	t.Helper()
	type node struct {
		NodeType        string  `json:"Node Type"`
		Relation        string  `json:"Relation Name"`
		Index           string  `json:"Index Name"`
		IndexCond       string  `json:"Index Cond"`
		ActualRows      float64 `json:"Actual Rows"`
		Loops           float64 `json:"Actual Loops"`
		RemovedByFilter float64 `json:"Rows Removed by Filter"`
		Plans           []json.RawMessage
	}
	var top []struct{ Plan json.RawMessage }
	if err := json.Unmarshal([]byte(out), &top); err != nil || len(top) != 1 {
		t.Fatalf("EXPLAIN's output: %v\n%s", err, out)
	}
	var read float64
	var walks []string
	var walk func(raw json.RawMessage)
	walk = func(raw json.RawMessage) {
		var n node
		if err := json.Unmarshal(raw, &n); err != nil {
			t.Fatal(err)
		}
		// A write's own node (ModifyTable) names its table and reads
		// nothing: the scans under it do.
		onTable := (n.Relation == table || strings.HasPrefix(n.Index, prefix)) && n.NodeType != "ModifyTable"
		byKey := slices.ContainsFunc(keys, func(k string) bool { return strings.Contains(n.IndexCond, "("+k+")") || n.Index == k })
		switch {
		case onTable && n.NodeType == "Bitmap Heap Scan":
			// Its rows were counted at its index scans.
		case onTable && n.Index == "":
			walks = append(walks, n.NodeType)
		case onTable && !byKey:
			walks = append(walks, n.NodeType+" on "+n.Index+" by "+n.IndexCond)
		}
		switch {
		case n.NodeType == "Bitmap Index Scan" && onTable:
			read += n.ActualRows * n.Loops
		case onTable && n.NodeType != "Bitmap Heap Scan":
			read += (n.ActualRows + n.RemovedByFilter) * n.Loops
		}
		for _, p := range n.Plans {
			walk(p)
		}
	}
	walk(top[0].Plan)
	return read, walks, out
}

// TestOneUploadReadByID: the reads of one upload or file by its id, for
// its owner, go by the primary key however the table has grown since the
// read was planned. PostgreSQL plans a prepared statement once for any
// arguments (its generic plan) and keeps that plan until the table is
// analysed again. Given an owner as well as an id, planned while the
// user had a few uploads, it went by the owner's index (the two indexes
// cost the same on a table that small) and then walked it through all
// of the user's uploads at every call: every confirmChunk of a user
// with 25,000 uploads read all 25,000 (docs/BENCHMARKS.md, "A user's
// many uploads").
//
// Here the reads the Service sends (from the recorded log) while alice
// has two uploads and a file are prepared on a connection of its own
// that plans only generically, and run once; then alice gets 2,000 more
// uploads, batches and files, and each read, run again, must read at
// most one row of its table, by its key. The reads: confirmChunk's (the
// session joined to the chunk), a batch's uploads, a media file's,
// cancel's, and a chunk receipt's lock of its session (which names the
// statuses and expiry that another index holds).
func TestOneUploadReadByID(t *testing.T) {
	t.Parallel()
	dbURL := dbtest.Postgres(t)
	log := &sqlLog{}
	e := newRecordedEnv(t, dbURL, log, testConfig())
	ctx := context.Background()
	alice := e.user(t, "alice")
	data := []byte{0xFF, 0xFB}
	spec := upload.FileSpec{FileName: "tiny.mp3", Size: int64(len(data)), MimeType: "audio/mpeg"}
	sess := e.initOne(t, alice, spec)
	e.mustSend(t, sess.ID, 0, data)
	other := e.initOne(t, alice, spec)
	third := e.initOne(t, alice, spec)
	file := e.readyOriginal(t, alice, data)

	log.take()
	if _, err := e.svc.ConfirmChunk(ctx, alice, sess.ID, 0, int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Batch(ctx, alice, sess.BatchID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Media(ctx, alice, file.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Cancel(ctx, alice, other.ID); err != nil {
		t.Fatal(err)
	}
	e.mustSend(t, third.ID, 0, data)
	lines := log.take()

	conn, err := e.sql.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SET plan_cache_mode = force_generic_plan"); err != nil {
		t.Fatal(err)
	}
	reads := []struct {
		what, pattern, table, prefix, key string
		execute                           string // EXECUTE of the prepared read
	}{
		{what: "confirmChunk's session and chunk", pattern: `LEFT JOIN "upload_chunks" AS "held"`, table: "upload_sessions", prefix: "uploadsession_", key: "id"},
		{what: "a batch's uploads", pattern: `FROM "upload_sessions" WHERE \(?"upload_sessions"."batch_id" = `, table: "upload_sessions", prefix: "uploadsession_", key: "batch_id"},
		{what: "a media file", pattern: `FROM "media_files" WHERE \(?"media_files"."id" = `, table: "media_files", prefix: "mediafile_", key: "id"},
		{what: "cancel's session", pattern: `FROM "upload_sessions" WHERE \(?"upload_sessions"."id" = \$1`, table: "upload_sessions", prefix: "uploadsession_", key: "id"},
		{what: "a chunk's receipt", pattern: `^WITH "live" AS`, table: "upload_sessions", prefix: "uploadsession_", key: "id"},
	}
	for i := range reads {
		r := &reads[i]
		query, args := loggedStatement(t, lines, r.pattern)
		name := fmt.Sprintf("one_upload_%d", i)
		if _, err := conn.ExecContext(ctx, "PREPARE "+name+" AS "+query); err != nil {
			t.Fatalf("%s: PREPARE: %v", r.what, err)
		}
		// EXECUTE's arguments as literals: PostgreSQL takes no
		// parameters for a statement under EXPLAIN. The logged
		// arguments have no spaces (ids, numbers, times in RFC 3339).
		literals := make([]string, len(args))
		for j, a := range args {
			literals[j] = "'" + strings.ReplaceAll(fmt.Sprint(a), "'", "''") + "'"
		}
		r.execute = "EXECUTE " + name + "(" + strings.Join(literals, ", ") + ")"
		if _, err := conn.ExecContext(ctx, r.execute); err != nil { // planned now, on the small tables
			t.Fatalf("%s: %s: %v", r.what, r.execute, err)
		}
	}

	for _, grow := range []struct {
		sql string
		arg any
	}{
		{`INSERT INTO upload_batches SELECT (jsonb_populate_record(b, jsonb_build_object('id', b.id || '-' || g))).*
			FROM upload_batches b, generate_series(1, 2000) g WHERE b.id = $1`, sess.BatchID},
		{`INSERT INTO upload_sessions SELECT (jsonb_populate_record(s, jsonb_build_object('id', s.id || '-' || g,
			'batch_id', s.batch_id || '-' || g))).* FROM upload_sessions s, generate_series(1, 2000) g WHERE s.id = $1`, sess.ID},
		{`INSERT INTO media_files SELECT (jsonb_populate_record(m, jsonb_build_object('id', m.id || '-' || g,
			'storage_key', m.storage_key || '-' || g))).* FROM media_files m, generate_series(1, 2000) g WHERE m.id = $1`, file.ID},
	} {
		if _, err := e.sql.ExecContext(ctx, grow.sql, grow.arg); err != nil {
			t.Fatalf("%s: %v", grow.sql, err)
		}
	}

	for _, r := range reads {
		var out string
		if err := conn.QueryRowContext(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) "+r.execute).Scan(&out); err != nil {
			t.Fatalf("%s: EXPLAIN %s: %v", r.what, r.execute, err)
		}
		read, walks, plan := planReads(t, out, r.table, r.prefix, []string{r.key})
		if len(walks) > 0 || read > 1 {
			t.Errorf("%s: scans %v, %.0f rows of %s read, want by %s and at most 1:\n%s", r.what, walks, read, r.table, r.key, plan)
		}
	}
}

// TestLibraryLookupReadsItsIndex: the page of userMedia a client asks
// for before it sends a file (the CLI's findInLibrary: its SHA-256, READY
// or PROCESSING, newest first) finds the caller's files by their content
// hash, through the content-led index, and never walks the caller's
// library: on PostgreSQL with 2,000 newer READY files of hers, no
// statistics (a young database), it reads the one row that matches.
// (A list of three hashes or more, contentHashIn, is planned there as a
// walk of her files: findInLibrary asks one at a time.)
func TestLibraryLookupReadsItsIndex(t *testing.T) {
	t.Parallel()
	onRecordedEngines(t, func(t *testing.T, e *testEnv, log *sqlLog) {
		ctx := context.Background()
		alice := e.user(t, "alice")
		data := []byte{0xFF, 0xFB}
		sum := sha256Hex(data)
		orig := e.readyOriginal(t, alice, data)
		if isPostgres(e) {
			if _, err := e.sql.ExecContext(ctx, `INSERT INTO media_files
				SELECT (jsonb_populate_record(m, jsonb_build_object('id', m.id || '-' || g, 'storage_key', 'grown/' || g,
					'content_hash', md5(g::text) || md5(g::text), 'created_at', now() + g * interval '1 second'))).*
				FROM media_files m, generate_series(1, 2000) g WHERE m.id = $1`, orig.ID); err != nil {
				t.Fatal(err)
			}
		}
		where := &ent.MediaFileWhereInput{ContentHash: &sum,
			StatusIn: []mediafile.Status{mediafile.StatusREADY, mediafile.StatusPROCESSING}}
		first, newest := 100, &ent.MediaFileOrder{Direction: entgql.OrderDirectionDesc, Field: ent.MediaFileOrderFieldCreatedAt}
		log.take()
		page, err := e.svc.MediaPage(ctx, alice, nil, &first, nil, nil, ent.WithMediaFileOrder(newest), ent.WithMediaFileFilter(where.Filter))
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Edges) != 1 || page.Edges[0].Node.ID != orig.ID {
			t.Fatalf("the look-up found %d files, want %s alone", len(page.Edges), orig.ID)
		}
		query, args := loggedStatement(t, log.take(), "^SELECT .*[`\"]content_hash[`\"] = .*ORDER BY")
		if !isPostgres(e) {
			const index = "mediafile_content_hash_owner_id_status_deleted_at_created_at_id"
			if plan := dbtest.SQLitePlan(t, e.sql, query, args...); !strings.Contains(plan, index) {
				t.Errorf("the look-up's plan\n%s\ndoes not use %s", plan, index)
			}
			return
		}
		read, walks, plan := postgresPlanReads(t, e, "media_files", "mediafile_", []string{"content_hash"}, query, args)
		if len(walks) > 0 || read > 1 {
			t.Errorf("the look-up read %.0f rows of media_files (scans otherwise than by content hash: %v) for 1 match among 2,001 files, want 1:\n%s",
				read, walks, plan)
		}
	})
}
