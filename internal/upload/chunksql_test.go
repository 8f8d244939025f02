package upload

import (
	"context"
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

// TestAsyncReceiptCommit: with Deps.AsyncReceipts on PostgreSQL, a
// receipt's session bump turns synchronous_commit off for its own
// transaction and no other; without it the setting is left alone.
func TestAsyncReceiptCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := database.Open(ctx, dbtest.Postgres(t), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	owner := db.Client.User.Create().SetSubject("alice").SetQuotaBytes(1 << 40).SaveX(ctx)
	batch := db.Client.UploadBatch.Create().SetOwnerID(owner.ID).SaveX(ctx)
	now := time.Now()
	sess := db.Client.UploadSession.Create().SetOwnerID(owner.ID).SetBatchID(batch.ID).
		SetFileName("a.mp4").SetOriginalName("a.mp4").SetMimeType("video/mp4").
		SetMediaType(uploadsession.MediaTypeVIDEO).SetTotalSize(10 << 20).
		SetStrategy(uploadsession.StrategyCHUNKED).SetChunkSize(5 << 20).SetTotalChunks(2).
		SetStatus(uploadsession.StatusUPLOADING).SetStorageKey("k/" + owner.ID).SetExpiresAt(now.Add(time.Hour)).
		SaveX(ctx)

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
