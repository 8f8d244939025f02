package upload

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/uploadchunk"
	"github.com/spoolhq/spool/ent/uploadsession"
	"github.com/spoolhq/spool/internal/database"
	"github.com/spoolhq/spool/internal/database/dbtest"
)

// TestSessionWithChunkReadsEveryColumn holds the chunk path's built read
// (chunksql.go) to ent's own: the same session, field for field, with
// every nullable column set and with every one NULL, and the same chunk
// row, on both databases. A column ent gains that sessionFields does not
// know fails here.
func TestSessionWithChunkReadsEveryColumn(t *testing.T) {
	t.Parallel()
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			dbURL, sqlitePath := "", t.TempDir()+"/spool.db"
			if engine == "postgres" {
				dbURL, sqlitePath = dbtest.Postgres(t), ""
			}
			db, err := database.Open(ctx, dbURL, sqlitePath)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			s := &Service{db: db.Client, dialect: db.Dialect, chunkSQL: newChunkStatements(db.Dialect, false)}

			owner := db.Client.User.Create().SetSubject("alice").SetQuotaBytes(1 << 40).SaveX(ctx)
			batch := db.Client.UploadBatch.Create().SetOwnerID(owner.ID).SaveX(ctx)
			at := time.Date(2026, 12, 2, 17, 0, 0, 123456000, time.UTC)
			create := func(full bool) *ent.UploadSession {
				c := db.Client.UploadSession.Create().SetOwnerID(owner.ID).SetBatchID(batch.ID).
					SetFileName("a.mp4").SetOriginalName("A.mp4").SetMimeType("video/mp4").
					SetMediaType(uploadsession.MediaTypeVIDEO).SetTotalSize(21 << 20).
					SetStrategy(uploadsession.StrategyCHUNKED).SetChunkSize(5 << 20).SetTotalChunks(5).
					SetStatus(uploadsession.StatusUPLOADING).SetStorageKey("k/" + owner.ID).SetExpiresAt(at.Add(time.Hour)).
					SetPercent(40).SetVersion(7).SetReceivedChunks(2).SetReceivedBytes(10 << 20).SetFailedChunks(1)
				if full {
					c.SetSha256("ab").SetFingerprint("fp").SetDurationSeconds(61).SetError("boom").
						SetBytesFreed(true).SetFinishedAt(at).SetResumableURL("https://r").SetDeduplicated(true).
						SetResumableOrigin("https://o").SetTus(true).SetTusPart(true).SetTailBytes(3).SetTailCrc32c(99)
				}
				return c.SaveX(ctx)
			}
			for _, full := range []bool{true, false} {
				created := create(full)
				db.Client.UploadChunk.Create().SetSessionID(created.ID).SetIndex(2).SetState(uploadchunk.StateFAILED).
					SetSize(5 << 20).SetCrc32c(4294967295).SetErrorCode("CHUNK_TOO_SMALL").SetError("got 1 | of 2").
					SetUpdatedAt(at).SaveX(ctx)
				want := db.Client.UploadSession.GetX(ctx, created.ID)

				got, row, err := s.sessionWithChunk(ctx, owner.ID, created.ID, chunkAt{index: 2})
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(fieldsOf(got), fieldsOf(want)) {
					t.Errorf("full=%v: built read\n%+v\nent's read\n%+v", full, fieldsOf(got), fieldsOf(want))
				}
				wantRow := heldRow{held: heldFailed, size: 5 << 20, crc32c: 4294967295, errorCode: "CHUNK_TOO_SMALL", err: "got 1 | of 2"}
				if row != wantRow {
					t.Errorf("full=%v: chunk row %+v, want %+v", full, row, wantRow)
				}
				if _, row, err := s.sessionWithChunk(ctx, "", created.ID, chunkAt{firstByte: 10 << 20, byOffset: true}); err != nil || row != wantRow {
					t.Errorf("full=%v: by offset: %+v, %v; want %+v", full, row, err, wantRow)
				}
				if _, row, err := s.sessionWithChunk(ctx, owner.ID, created.ID, chunkAt{index: 1}); err != nil || row.held != heldNone {
					t.Errorf("full=%v: chunk without a row: %+v, %v", full, row, err)
				}
				if _, _, err := s.sessionWithChunk(ctx, "someone-else", created.ID, chunkAt{index: 2}); ErrorCode(err) != CodeNotFound {
					t.Errorf("full=%v: another owner's upload: %v, want NOT_FOUND", full, err)
				}
			}
		})
	}
}

// fieldsOf is a session's column fields, without ent's client and edges.
func fieldsOf(s *ent.UploadSession) map[string]any {
	out := map[string]any{}
	v := reflect.ValueOf(s).Elem()
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if !f.IsExported() || f.Name == "Edges" {
			continue
		}
		x := v.Field(i).Interface()
		if tm, ok := x.(time.Time); ok {
			x = tm.UTC().Format(time.RFC3339Nano)
		}
		if tm, ok := x.(*time.Time); ok && tm != nil {
			x = tm.UTC().Format(time.RFC3339Nano)
		}
		out[f.Name] = x
	}
	return out
}

// newPostgresSession is a fresh PostgreSQL database with one session of
// two 5 MiB chunks in status, expiring in an hour from now.
func newPostgresSession(t *testing.T, status uploadsession.Status, now time.Time) (*database.DB, *ent.UploadSession) {
	t.Helper()
	ctx := context.Background()
	db, err := database.Open(ctx, dbtest.Postgres(t), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	owner := db.Client.User.Create().SetSubject("alice").SetQuotaBytes(1 << 40).SaveX(ctx)
	batch := db.Client.UploadBatch.Create().SetOwnerID(owner.ID).SaveX(ctx)
	sess := db.Client.UploadSession.Create().SetOwnerID(owner.ID).SetBatchID(batch.ID).
		SetFileName("a.mp4").SetOriginalName("a.mp4").SetMimeType("video/mp4").
		SetMediaType(uploadsession.MediaTypeVIDEO).SetTotalSize(10 << 20).
		SetStrategy(uploadsession.StrategyCHUNKED).SetChunkSize(5 << 20).SetTotalChunks(2).
		SetStatus(status).SetStorageKey("k/" + owner.ID).SetExpiresAt(now.Add(time.Hour)).
		SaveX(ctx)
	return db, sess
}

// TestReceiptStatement holds PostgreSQL's one-statement receipt
// (buildReceipt) to the transaction it replaces: it writes the chunk's
// row and the session's counts together or not at all, tells a session
// that stopped taking chunks (nothing written) from a chunk row that is
// not as read (nothing written), and moves the status only when asked.
func TestReceiptStatement(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Now()
	db, sess := newPostgresSession(t, uploadsession.StatusINITIALIZED, now)
	s := &Service{db: db.Client, dialect: db.Dialect, chunkSQL: newChunkStatements(db.Dialect, true)}
	const size = 5 << 20
	received := chunkOutcome{state: uploadchunk.StateRECEIVED, size: size, crc: 0xfeedbeef}
	missing := failed(CodeChunkMissing, false, "it was being sent again")

	type state struct {
		version          int64
		status           uploadsession.Status
		received, failed int
		bytes            int64
		row              uploadchunk.State // "" without a row
		attempts         int
		crc              int64
	}
	read := func() state {
		t.Helper()
		u := db.Client.UploadSession.GetX(ctx, sess.ID)
		st := state{version: u.Version, status: u.Status, received: u.ReceivedChunks, failed: u.FailedChunks, bytes: u.ReceivedBytes}
		if c, err := db.Client.UploadChunk.Query().Where(uploadchunk.SessionID(sess.ID), uploadchunk.Index(0)).Only(ctx); err == nil {
			st.row, st.attempts, st.crc = c.State, c.Attempts, c.Crc32c
		} else if !ent.IsNotFound(err) {
			t.Fatal(err)
		}
		return st
	}
	steps := []struct {
		what        string
		from        held
		out         chunkOutcome
		arrival     bool
		toUploading bool
		wantOK      bool
		wantErr     error
		want        func(before state) state
	}{
		{"the first arrival", heldNone, received, true, true, true, nil, func(b state) state {
			return state{version: b.version + 1, status: uploadsession.StatusUPLOADING, received: 1, bytes: size,
				row: uploadchunk.StateRECEIVED, attempts: 1, crc: 0xfeedbeef}
		}},
		{"an arrival read as no row, with a row", heldNone, received, true, false, false, errChunkMoved,
			func(b state) state { return b }},
		{"an invalidation", heldReceived, missing, false, false, true, nil, func(b state) state {
			return state{version: b.version + 1, status: b.status, failed: 1,
				row: uploadchunk.StateFAILED, attempts: 1}
		}},
		{"an invalidation read as RECEIVED, FAILED meanwhile", heldReceived, missing, false, false, false, errChunkMoved,
			func(b state) state { return b }},
		{"an arrival over the FAILED row", heldFailed, received, true, false, true, nil, func(b state) state {
			return state{version: b.version + 1, status: b.status, received: 1, bytes: size,
				row: uploadchunk.StateRECEIVED, attempts: 2, crc: 0xfeedbeef}
		}},
	}
	for _, step := range steps {
		before := read()
		d := transition(step.from, step.out.state, size)
		c, ok, err := s.moveAndBump(ctx, sess.ID, 0, step.from, step.out, step.arrival, d, step.toUploading, now)
		if !errors.Is(err, step.wantErr) || ok != step.wantOK {
			t.Fatalf("%s: ok=%v err=%v, want ok=%v err=%v", step.what, ok, err, step.wantOK, step.wantErr)
		}
		got, want := read(), step.want(before)
		if got != want {
			t.Errorf("%s: the database holds %+v, want %+v", step.what, got, want)
		}
		if ok && (c.version != got.version || c.received != got.received || c.bytes != got.bytes || c.failed != got.failed) {
			t.Errorf("%s: returned counts %+v, the row holds %+v", step.what, c, got)
		}
	}

	// A session that no longer takes chunks: expired, then finished.
	for _, stop := range []func(){
		func() { db.Client.UploadSession.UpdateOneID(sess.ID).SetExpiresAt(now.Add(-time.Second)).ExecX(ctx) },
		func() {
			db.Client.UploadSession.UpdateOneID(sess.ID).SetExpiresAt(now.Add(time.Hour)).
				SetStatus(uploadsession.StatusCANCELLED).ExecX(ctx)
		},
	} {
		stop()
		before := read()
		_, ok, err := s.moveAndBump(ctx, sess.ID, 0, heldReceived, missing, false,
			transition(heldReceived, uploadchunk.StateFAILED, size), false, now)
		if err != nil || ok {
			t.Fatalf("a session that stopped taking chunks: ok=%v err=%v, want ok=false, no error", ok, err)
		}
		if got := read(); got != before {
			t.Errorf("a session that stopped taking chunks: the database went from %+v to %+v", before, got)
		}
	}
}

// TestAsyncReceiptCommit: with Deps.AsyncReceipts on PostgreSQL, a
// receipt's session bump turns synchronous_commit off for its own
// transaction and no other; without it the setting is left alone.
func TestAsyncReceiptCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Now()
	db, sess := newPostgresSession(t, uploadsession.StatusUPLOADING, now)

	setting := func(tx *ent.Tx) string {
		t.Helper()
		rows, err := tx.QueryContext(ctx, "SHOW synchronous_commit")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var v string
		if !rows.Next() || rows.Scan(&v) != nil {
			t.Fatal("SHOW synchronous_commit: no answer")
		}
		return v
	}
	for _, async := range []bool{true, false} {
		s := &Service{db: db.Client, dialect: db.Dialect, chunkSQL: newChunkStatements(db.Dialect, async)}
		tx, err := db.Client.Tx(ctx)
		if err != nil {
			t.Fatal(err)
		}
		before := setting(tx)
		c, ok, err := s.bumpSession(ctx, tx, sess.ID, countsDelta{received: 1, bytes: 5 << 20}, false, now)
		if err != nil || !ok {
			t.Fatalf("async=%v: bump: %v, %v", async, ok, err)
		}
		if want := map[bool]string{true: "off", false: before}[async]; setting(tx) != want {
			t.Errorf("async=%v: synchronous_commit in the receipt's transaction is %q, want %q", async, setting(tx), want)
		}
		// The one-statement receipt too, which runs in a transaction of
		// its own: here in the test's, to look inside it.
		b := s.chunkSQL.receipt[moveInsert][0]
		index := map[bool]int{true: 0, false: 1}[async]
		rows, err := tx.QueryContext(ctx, b.text, b.with(1, 5<<20, 0, now, sess.ID,
			sess.ID, index, string(uploadchunk.StateRECEIVED), 5<<20, 7, nil, nil, nil, now, "")...)
		if err != nil {
			t.Fatal(err)
		}
		rows.Close()
		if want := map[bool]string{true: "off", false: before}[async]; setting(tx) != want {
			t.Errorf("async=%v: synchronous_commit after the one-statement receipt is %q, want %q", async, setting(tx), want)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if c.received == 0 {
			t.Errorf("async=%v: the bump returned %+v", async, c)
		}
		// The next transaction, likely on the same pooled connection, is
		// back to the server's setting.
		next, err := db.Client.Tx(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := setting(next); got != before {
			t.Errorf("async=%v: after the receipt, synchronous_commit is %q, want the server's %q", async, got, before)
		}
		_ = next.Rollback()
	}
}
