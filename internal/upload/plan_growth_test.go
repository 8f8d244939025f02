package upload_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"entgo.io/contrib/entgql"
	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/mediafile"
	"github.com/spoolhq/spool/internal/database"
	"github.com/spoolhq/spool/internal/database/dbtest"
	"github.com/spoolhq/spool/internal/database/sqltx"
	"github.com/spoolhq/spool/internal/upload"
)

// TestStatementsKeepTheirIndexes: no statement the Service prepares on
// PostgreSQL walks a table once the table has grown, whatever plan it was
// given while the table was small. PostgreSQL may plan a prepared
// statement once for any arguments (its generic plan) and keeps that plan
// until the table is analysed, which on a young database may not happen
// for a long time; planned on a table of a few rows, where every index and
// a sequential scan cost the same, it can pick the wrong one for good
// (docs/BENCHMARKS.md, "A user's many uploads"). TestOneUploadReadByID
// holds five reads to their keys; this test takes every statement of an
// upload's life.
//
// alice uploads, confirms, completes, lists (userMedia's pages, as its
// resolver asks for them), watches, uploads an image in one request,
// cancels, retries, resumes, copies, appends by tus, deletes and purges,
// sweeps; each statement the Service sent on upload_sessions,
// upload_chunks, media_files or upload_batches (recorded by a pgx
// tracer, with its arguments; those planned at each run keep no plan and
// are left out) is prepared on a connection that plans only
// generically, and run once, on these small tables. Then alice gets
// 2,000 more uploads with a chunk each (COMPLETED, as most of a grown
// table's are), 2,000 batches and 2,000 files (READY), none of them due
// for anything, each a second older than the last; each statement, run
// again with its arguments under EXPLAIN ANALYZE (in a transaction
// rolled back), must read at most 100 rows of those tables, however
// many the user has. A write that cannot run again (the row it inserts
// is there) must not plan a sequential scan of them. Before they were
// planned at each run, the sweep's two reads of uploads and the metrics'
// count read all 2,003 by a sequential scan; userMedia's pages and a
// subscription's first read walked all of alice's files or uploads; and
// the reads that named the owner beside a unique key (an upload's media
// file, a stored object's sharers) walked the owner's files.
func TestStatementsKeepTheirIndexes(t *testing.T) {
	t.Parallel()
	sent := &sentStatements{}
	e := newTracedPostgresEnv(t, sent)
	ctx := context.Background()
	alice := e.user(t, "alice")
	data := []byte{0xFF, 0xFB}
	tiny := upload.FileSpec{FileName: "tiny.mp3", Size: int64(len(data)), MimeType: "audio/mpeg"}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	first := e.initOne(t, alice, tiny)
	e.mustSend(t, first.ID, 0, data)
	_, err := e.svc.ConfirmChunk(ctx, alice, first.ID, 0, int64(len(data)), nil)
	must(err)
	_, err = e.svc.ChunkURL(ctx, alice, first.ID, 0)
	must(err)
	_, err = e.svc.Session(ctx, alice, first.ID)
	must(err)
	_, err = e.svc.Batch(ctx, alice, first.BatchID)
	must(err)
	file, err := e.svc.Complete(ctx, alice, first.ID)
	must(err)
	_, err = e.svc.Media(ctx, alice, file.ID)
	must(err)
	_, err = e.svc.ProgressMedia(ctx, alice, file.ID)
	must(err)
	_, err = e.svc.UploadMedia(ctx, alice, first.ID)
	must(err)
	// userMedia's pages, as its resolver asks for them: newest first, then
	// after a cursor, then one media type's.
	first20, newest := 20, &ent.MediaFileOrder{Direction: entgql.OrderDirectionDesc, Field: ent.MediaFileOrderFieldCreatedAt}
	page, err := e.svc.MediaPage(ctx, alice, nil, &first20, nil, nil, ent.WithMediaFileOrder(newest))
	must(err)
	_, err = e.svc.MediaPage(ctx, alice, page.PageInfo.StartCursor, &first20, nil, nil, ent.WithMediaFileOrder(newest))
	must(err)
	audio := &ent.MediaFileWhereInput{MediaType: ptr(mediafile.MediaTypeAUDIO)}
	_, err = e.svc.MediaPage(ctx, alice, nil, &first20, nil, nil, ent.WithMediaFileOrder(newest), ent.WithMediaFileFilter(audio.Filter))
	must(err)
	ranged := e.initOne(t, alice, tiny)
	_, err = e.svc.ReceiveRange(ctx, alice, ranged.ID, 0, 1, 2, bytes.NewReader(data), upload.ReceiveOptions{ContentLength: 2})
	must(err)
	// What subscriptions read first.
	watchUpload, stopUpload := context.WithCancel(ctx)
	_, err = e.svc.WatchUpload(watchUpload, alice, first.ID)
	must(err)
	stopUpload()
	watchBatch, stopBatch := context.WithCancel(ctx)
	_, err = e.svc.WatchBatch(watchBatch, alice, first.BatchID)
	must(err)
	stopBatch()
	// uploadImage: a file in one request.
	img := pngBytes(1 << 10)
	_, err = e.svc.UploadImage(ctx, alice, upload.FileSpec{FileName: "a.png", Size: int64(len(img)), MimeType: "image/png"}, bytes.NewReader(img))
	must(err)
	cancelled := e.initOne(t, alice, tiny)
	_, err = e.svc.Cancel(ctx, alice, cancelled.ID)
	must(err)
	watchCtx, stopWatching := context.WithCancel(ctx)
	_, err = e.svc.WatchUser(watchCtx, alice)
	must(err)
	stopWatching()
	// A chunk that fails its checksum, then the upload's retry.
	corrupt := e.initOne(t, alice, tiny)
	_, err = e.svc.ReceiveChunk(ctx, corrupt.ID, 0, bytes.NewReader(data), upload.ReceiveOptions{
		ContentLength: 2, Expect: []upload.Digest{mustDigest(t, crc32cOf([]byte("no")))}})
	wantCode(t, err, upload.CodeChecksumMismatch)
	_, err = e.svc.Retry(ctx, alice, corrupt.ID)
	must(err)
	// A file resumed by its fingerprint, and a copy of a READY file.
	named := tiny
	named.Fingerprint = ptr("planned-fp")
	e.initOne(t, alice, named)
	e.initOne(t, alice, named)
	sum := sha256Hex(data)
	e.readyOriginal(t, alice, data)
	copied := tiny
	copied.SHA256 = &sum
	e.initOne(t, alice, copied)
	// tus: an upload created, then its bytes appended.
	tus, err := e.svc.CreateTus(ctx, alice, upload.TusFile{FileSpec: tiny})
	must(err)
	_, err = e.svc.Append(ctx, alice, tus.ID, 0, bytes.NewReader(data), upload.AppendOptions{ContentLength: 2})
	must(err)
	_, err = e.svc.Node(ctx, alice, file.ID)
	must(err)
	must(e.svc.FailProcessing(ctx, file.ID, "not a sound"))
	must(e.svc.DeleteMedia(ctx, alice, file.ID))
	must(e.svc.PurgeMedia(ctx, file.ID))
	_, err = e.svc.Sweep(ctx)
	must(err)
	_, err = e.svc.CountUnfinished(ctx)
	must(err)
	_, err = e.svc.Me(ctx, alice)
	must(err)
	ours := regexp.MustCompile(`"(upload_sessions|upload_chunks|media_files|upload_batches)"`)
	var statements []statement
	for _, st := range sent.take() {
		if ours.MatchString(st.query) {
			statements = append(statements, st)
		}
	}
	if len(statements) < 20 {
		t.Fatalf("only %d statements to check", len(statements))
	}

	conn, err := e.sql.Conn(ctx)
	must(err)
	defer conn.Close()
	_, err = conn.ExecContext(ctx, "SET plan_cache_mode = force_generic_plan")
	must(err)
	// run runs query in a transaction rolled back, so that writes leave
	// nothing behind; it returns the first column of the first row.
	run := func(query string) (string, error) {
		if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
			return "", err
		}
		defer conn.ExecContext(ctx, "ROLLBACK")
		var out string
		rows, err := conn.QueryContext(ctx, query)
		if err != nil {
			return "", err
		}
		defer rows.Close()
		if rows.Next() {
			var v sql.NullString
			if err := rows.Scan(&v); err != nil {
				return "", err
			}
			out = v.String
		}
		return out, rows.Err()
	}
	executes := make([]string, len(statements))
	for i, s := range statements {
		name := fmt.Sprintf("grown_%d", i)
		if _, err := conn.ExecContext(ctx, "PREPARE "+name+" AS "+s.query); err != nil {
			t.Fatalf("PREPARE %s: %v", s.query, err)
		}
		executes[i] = "EXECUTE " + name
		if len(s.args) > 0 {
			executes[i] += "(" + strings.Join(literals(s.args), ", ") + ")"
		}
		// Planned now, on the small tables; a write may fail here (a row
		// it inserts is there already), after its plan is made.
		_, _ = run(executes[i])
	}

	// Clones of alice's first upload (its batch, its session, its chunk)
	// and of her file.
	grow := []struct {
		clone string
		from  string
	}{
		{`INSERT INTO upload_batches SELECT (jsonb_populate_record(b, jsonb_build_object('id', 'grown-' || g))).*
			FROM upload_batches b, generate_series(1, 2000) g WHERE b.id = $1`, first.BatchID},
		{`INSERT INTO upload_sessions SELECT (jsonb_populate_record(s, jsonb_build_object('id', 'grown-' || g,
			'batch_id', 'grown-' || g, 'created_at', now() - g * interval '1 second', 'status', 'COMPLETED',
			'expires_at', now() + interval '1 day', 'finished_at', now(), 'bytes_freed', false, 'fingerprint', NULL,
			'sha256', NULL, 'storage_key', 'grown/' || g))).*
			FROM upload_sessions s, generate_series(1, 2000) g WHERE s.id = $1`, first.ID},
		{`INSERT INTO upload_chunks (session_id, index, state, size, crc32c, attempts, updated_at)
			SELECT 'grown-' || g, index, state, size, crc32c, attempts, updated_at
			FROM upload_chunks, generate_series(1, 2000) g WHERE session_id = $1`, first.ID},
		{`INSERT INTO media_files SELECT (jsonb_populate_record(m, jsonb_build_object('id', 'grown-' || g,
			'upload_id', NULL, 'created_at', now() - g * interval '1 second', 'storage_key', 'grown/' || g,
			'content_hash', NULL, 'status', 'READY', 'deleted_at', NULL, 'purged_at', NULL))).*
			FROM media_files m, generate_series(1, 2000) g WHERE m.id = $1`, file.ID},
	}
	for _, g := range grow {
		if res, err := e.sql.ExecContext(ctx, g.clone, g.from); err != nil {
			t.Fatalf("%s: %v", g.clone, err)
		} else if n, _ := res.RowsAffected(); n != 2000 {
			t.Fatalf("%s: %d rows, want 2,000", g.clone, n)
		}
	}

	// The grown tables, and how their indexes' names begin.
	grown := []struct{ table, prefix string }{
		{"upload_sessions", "uploadsession_"}, {"upload_chunks", "uploadchunk_"},
		{"media_files", "mediafile_"}, {"upload_batches", "uploadbatch_"},
	}
	checked := 0
	for i, s := range statements {
		out, err := run("EXPLAIN (ANALYZE, FORMAT JSON) " + executes[i])
		if err != nil {
			// A write that cannot run again (its row is there): its
			// plan, unrun, must not scan a grown table.
			out, err = run("EXPLAIN (FORMAT JSON) " + executes[i])
			if err != nil {
				t.Fatalf("EXPLAIN %s: %v", executes[i], err)
			}
			for _, g := range grown {
				if _, walks, _ := planReads(t, out, g.table, g.prefix, nil); slices.Contains(walks, "Seq Scan") {
					t.Errorf("a sequential scan of %s, planned on the small tables:\n%s\n%s", g.table, s.query, out)
				}
			}
			continue
		}
		checked++
		var read float64
		var walks []string
		for _, g := range grown {
			r, w, _ := planReads(t, out, g.table, g.prefix, nil)
			read += r
			walks = append(walks, w...)
		}
		if read > 100 {
			t.Errorf("%.0f rows read once the tables grew (scans %v), planned on the small tables:\n%s\n%s", read, walks, s.query, out)
		}
	}
	t.Logf("%d of %d statements run under EXPLAIN ANALYZE after the growth", checked, len(statements))
}

// statement is a statement the Service sent, with its first arguments.
type statement struct {
	query string
	args  []any
}

// sentStatements records each statement the Service sends through pgx,
// once, with the arguments of its first run; statements planned at each
// run (database.PlannedEachRun) are left out, since no plan of theirs
// is kept.
type sentStatements struct {
	mu   sync.Mutex
	seen map[string]bool
	list []statement
}

func (r *sentStatements) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	// pgx's own options lead the arguments: the result formats stdlib
	// asks for, and the mode of a statement planned at each run.
	args := data.Args
	for len(args) > 0 && reflect.TypeOf(args[0]) != nil && reflect.TypeOf(args[0]).PkgPath() == reflect.TypeOf(pgx.QueryExecMode(0)).PkgPath() {
		if _, ok := args[0].(pgx.QueryExecMode); ok {
			return ctx
		}
		args = args[1:]
	}
	if r.seen == nil {
		r.seen = map[string]bool{}
	}
	if !r.seen[data.SQL] {
		r.seen[data.SQL] = true
		r.list = append(r.list, statement{query: data.SQL, args: args})
	}
	return ctx
}

func (*sentStatements) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (r *sentStatements) take() []statement {
	r.mu.Lock()
	defer r.mu.Unlock()
	list := r.list
	r.list = nil
	return list
}

// newTracedPostgresEnv is a Service on a fresh PostgreSQL database,
// migrated as spool migrates it, whose statements sent records.
func newTracedPostgresEnv(t *testing.T, sent *sentStatements) *testEnv {
	t.Helper()
	dbURL := dbtest.Postgres(t)
	migrated, err := database.Open(context.Background(), dbURL, "")
	if err != nil {
		t.Fatal(err)
	}
	migrated.Close()
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Tracer = sent
	sqldb := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { sqldb.Close() })
	client := ent.NewClient(ent.Driver(sqltx.Wrap(entsql.OpenDB(dialect.Postgres, sqldb))))
	return newEnvOver(t, client, sqldb, dialect.Postgres, t.TempDir(), testConfig())
}

// literals writes a statement's arguments as SQL literals for EXECUTE,
// which takes no parameters under EXPLAIN: each a quoted constant that
// PostgreSQL reads as its parameter's type, NULL for nil.
func literals(args []any) []string {
	quote := func(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
	var text func(a any) (string, bool)
	text = func(a any) (string, bool) {
		v := reflect.ValueOf(a)
		switch {
		case a == nil, v.Kind() == reflect.Pointer && v.IsNil():
			return "", false
		case v.Kind() == reflect.Pointer:
			return text(v.Elem().Interface())
		}
		if at, ok := a.(time.Time); ok {
			return at.Format(time.RFC3339Nano), true
		}
		if v.Kind() == reflect.Slice {
			elems := make([]string, v.Len())
			for i := range elems {
				e, ok := text(v.Index(i).Interface())
				if !ok {
					elems[i] = "NULL"
					continue
				}
				elems[i] = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(e) + `"`
			}
			return "{" + strings.Join(elems, ",") + "}", true
		}
		return fmt.Sprint(a), true
	}
	out := make([]string, len(args))
	for i, a := range args {
		if s, ok := text(a); ok {
			out[i] = quote(s)
		} else {
			out[i] = "NULL"
		}
	}
	return out
}
