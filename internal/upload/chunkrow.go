package upload

import (
	"context"
	stdsql "database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	entsql "entgo.io/ent/dialect/sql"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/predicate"
	"github.com/spoolhq/spool/ent/uploadchunk"
	"github.com/spoolhq/spool/ent/uploadsession"
)

// A chunk receipt costs three statements on the common path
// (docs/DESIGN.md, "Receiving a chunk"): one read of the session joined
// to the chunk's row, then one transaction that bumps the session's
// counts and moves the chunk's row, each conditional on what was read.
// Nothing on that path reads the upload's other chunks, so its cost does
// not grow with the number of chunks or uploads.

// held is what the database holds for one chunk index: no row, a FAILED
// row or a RECEIVED row. heldUnknown makes recordChunk read it.
type held int8

const (
	heldNone held = iota
	heldFailed
	heldReceived
	heldUnknown
)

// heldColumn is the alias of the joined chunk row in the session read:
// its columns joined by '|' into one text, state|size|crc32c|error_code|
// digest|error, empty without a row. One column, not six: ent scans a
// column it does not know by asking the driver for every column's type,
// once per such column, which cost more than the query. The error comes
// last since only it can hold a '|'; a NULL is an empty field.
const heldColumn = "held_chunk"

// heldRow is the chunk row read with its session; empty strings stand
// for NULLs.
type heldRow struct {
	held      held
	size      int64
	crc32c    int64
	digest    string
	errorCode string
	err       string
}

// parseHeld reads heldColumn's text.
func parseHeld(text string) (heldRow, error) {
	if text == "" {
		return heldRow{held: heldNone}, nil
	}
	f := strings.SplitN(text, "|", 6)
	if len(f) != 6 {
		return heldRow{}, fmt.Errorf("chunk row %q has %d fields, want 6", text, len(f))
	}
	size, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return heldRow{}, fmt.Errorf("chunk row %q: size: %w", text, err)
	}
	crc, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return heldRow{}, fmt.Errorf("chunk row %q: crc32c: %w", text, err)
	}
	return heldRow{held: heldFrom(uploadchunk.State(f[0]), true), size: size, crc32c: crc,
		errorCode: f[3], digest: f[4], err: f[5]}, nil
}

// heldFrom turns a chunk row's state, or its absence, into a held.
func heldFrom(state uploadchunk.State, exists bool) held {
	switch {
	case !exists:
		return heldNone
	case state == uploadchunk.StateRECEIVED:
		return heldReceived
	default:
		return heldFailed
	}
}

// chunkAt picks the chunk joined to a session read: by index, or by the
// first byte of a Content-Range (index = first / chunk_size, computed in
// SQL so the read needs no chunk size beforehand).
type chunkAt struct {
	index     int
	firstByte int64
	byOffset  bool
}

// withHeldChunk left-joins the chunk row at to the session's query and
// selects it as heldColumn. The join is on the unique (session_id, index)
// index: one row looked up, never a scan.
func withHeldChunk(at chunkAt) predicate.UploadSession {
	return func(sel *entsql.Selector) {
		row := entsql.Table(uploadchunk.Table).As("held")
		match := entsql.EQ(row.C(uploadchunk.FieldIndex), at.index)
		if at.byOffset {
			match = entsql.P(func(b *entsql.Builder) {
				b.Ident(row.C(uploadchunk.FieldIndex)).WriteString(" = ").
					Arg(at.firstByte).WriteString(" / ").Ident(sel.C(uploadsession.FieldChunkSize))
			})
		}
		sel.LeftJoin(row).OnP(entsql.And(
			entsql.ColumnsEQ(sel.C(uploadsession.FieldID), row.C(uploadchunk.FieldSessionID)), match))
		// COALESCE, never NULL: ent scans an unknown column by the type
		// the driver reports for it, and modernc's SQLite reports none for
		// a NULL.
		sel.AppendSelectExprAs(entsql.ExprFunc(func(b *entsql.Builder) {
			b.WriteString("COALESCE(")
			for i, c := range []string{uploadchunk.FieldState, uploadchunk.FieldSize, uploadchunk.FieldCrc32c,
				uploadchunk.FieldErrorCode, uploadchunk.FieldDigest, uploadchunk.FieldError} {
				if i > 0 {
					b.WriteString(" || '|' || ")
				}
				nullable := c == uploadchunk.FieldErrorCode || c == uploadchunk.FieldDigest || c == uploadchunk.FieldError
				if nullable {
					b.WriteString("COALESCE(")
				}
				b.Ident(row.C(c))
				if nullable {
					b.WriteString(", '')")
				}
			}
			b.WriteString(", '')")
		}), heldColumn)
	}
}

// sessionWithChunk loads the caller's session (any owner for an empty
// userID) and its row for one chunk, in one statement. It returns
// NOT_FOUND for a missing id and someone else's alike.
func (s *Service) sessionWithChunk(ctx context.Context, userID, id string, at chunkAt) (*ent.UploadSession, heldRow, error) {
	q := s.db.UploadSession.Query().Where(uploadsession.ID(id), withHeldChunk(at))
	if userID != "" {
		q = q.Where(uploadsession.OwnerID(userID))
	}
	sess, err := q.Only(ctx)
	if ent.IsNotFound(err) {
		return nil, heldRow{}, errNotFound("upload", id)
	}
	if err != nil {
		return nil, heldRow{}, fmt.Errorf("loading upload %s: %w", id, err)
	}
	v, err := sess.Value(heldColumn)
	if err != nil {
		return nil, heldRow{}, err
	}
	var text stdsql.NullString
	if err := text.Scan(driverValue(v)); err != nil {
		return nil, heldRow{}, fmt.Errorf("loading upload %s: %w", id, err)
	}
	row, err := parseHeld(text.String)
	if err != nil {
		return nil, heldRow{}, fmt.Errorf("loading upload %s: %w", id, err)
	}
	return sess, row, nil
}

// driverValue unwraps what ent scanned a column it does not know into:
// the driver's value behind a pointer, or a sql.Null type.
func driverValue(v any) any {
	if p, ok := v.(*entsql.UnknownType); ok && p != nil {
		v = *p
	}
	switch x := v.(type) {
	case *any:
		return *x
	case *stdsql.NullString:
		if x.Valid {
			return x.String
		}
		return nil
	case *stdsql.RawBytes:
		return []byte(*x)
	case *string:
		return *x
	}
	return v
}

// heldChunk reads what the database holds for one chunk.
func heldChunk(ctx context.Context, c *ent.Client, sessionID string, index int) (held, error) {
	row, err := c.UploadChunk.Query().
		Where(uploadchunk.SessionID(sessionID), uploadchunk.Index(index)).
		Select(uploadchunk.FieldState).Only(ctx)
	if ent.IsNotFound(err) {
		return heldNone, nil
	}
	if err != nil {
		return heldNone, fmt.Errorf("reading chunk %d: %w", index, err)
	}
	return heldFrom(row.State, true), nil
}

// countsDelta is how a session's counts move when one chunk row moves.
type countsDelta struct {
	received int
	bytes    int64
	failed   int
}

// transition is the move of a chunk row from what it held to state.
// A RECEIVED row always holds its chunk's planned size (size).
func transition(from held, to uploadchunk.State, size int64) countsDelta {
	var d countsDelta
	switch from {
	case heldReceived:
		d.received, d.bytes = -1, -size
	case heldFailed:
		d.failed = -1
	}
	if to == uploadchunk.StateRECEIVED {
		d.received, d.bytes = d.received+1, d.bytes+size
	} else {
		d.failed++
	}
	return d
}

// sessionCounts is what the session row holds after a bump.
type sessionCounts struct {
	version  int64
	percent  int
	received int
	bytes    int64
	failed   int
}

// errChunkMoved rolls back a transaction whose chunk row was not in the
// state read before it: another request moved it meanwhile.
var errChunkMoved = errors.New("the chunk's row changed meanwhile")

// bumpSession moves an active, unexpired session's counts by d, bumps its
// version, raises its percent high-water mark and, if toUploading, sets
// it UPLOADING: one UPDATE … RETURNING. ok is false if the session no
// longer takes chunks.
func (s *Service) bumpSession(ctx context.Context, tx *ent.Tx, id string, d countsDelta, toUploading bool, now time.Time) (c sessionCounts, ok bool, err error) {
	u := entsql.Dialect(s.dialect).Update(uploadsession.Table).
		Add(uploadsession.FieldVersion, 1).
		Add(uploadsession.FieldReceivedChunks, d.received).
		Add(uploadsession.FieldReceivedBytes, d.bytes).
		Add(uploadsession.FieldFailedChunks, d.failed).
		Set(uploadsession.FieldPercent, entsql.ExprFunc(func(b *entsql.Builder) {
			// max(percent, (received_bytes + d) * 100 / total_size), in
			// SQL both engines speak; total_size is positive.
			next := func() {
				b.WriteString("(").Ident(uploadsession.FieldReceivedBytes).WriteString(" + ").Arg(d.bytes).
					WriteString(") * 100 / ").Ident(uploadsession.FieldTotalSize)
			}
			b.WriteString("CASE WHEN ")
			next()
			b.WriteString(" > ").Ident(uploadsession.FieldPercent).WriteString(" THEN ")
			next()
			b.WriteString(" ELSE ").Ident(uploadsession.FieldPercent).WriteString(" END")
		})).
		Set(uploadsession.FieldUpdatedAt, now).
		Where(entsql.And(
			entsql.EQ(uploadsession.FieldID, id),
			entsql.In(uploadsession.FieldStatus, string(StatusInitialized), string(StatusUploading)),
			entsql.GT(uploadsession.FieldExpiresAt, now))).
		Returning(uploadsession.FieldVersion, uploadsession.FieldPercent,
			uploadsession.FieldReceivedChunks, uploadsession.FieldReceivedBytes, uploadsession.FieldFailedChunks)
	if toUploading {
		u.Set(uploadsession.FieldStatus, string(StatusUploading))
	}
	query, args := u.Query()
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return c, false, fmt.Errorf("updating upload: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		return c, false, rows.Err()
	}
	if err := rows.Scan(&c.version, &c.percent, &c.received, &c.bytes, &c.failed); err != nil {
		return c, false, fmt.Errorf("updating upload: %w", err)
	}
	return c, true, rows.Close()
}

// moveChunk writes a chunk's outcome into its row, only if the row still
// holds what was read (from): an INSERT … ON CONFLICT DO NOTHING for a
// chunk without a row, else an UPDATE conditional on the state. An
// arrival counts one more attempt; an invalidation does not. It returns
// errChunkMoved when the row was not as read.
func (s *Service) moveChunk(ctx context.Context, tx *ent.Tx, sessionID string, index int, from held, out chunkOutcome, arrival bool, now time.Time) error {
	var code, message *string
	if out.state == uploadchunk.StateFAILED {
		c := string(out.code)
		code, message = &c, &out.message
	}
	var n int64
	if from == heldNone {
		query, args := entsql.Dialect(s.dialect).Insert(uploadchunk.Table).
			Columns(uploadchunk.FieldSessionID, uploadchunk.FieldIndex, uploadchunk.FieldState, uploadchunk.FieldSize,
				uploadchunk.FieldCrc32c, uploadchunk.FieldDigest, uploadchunk.FieldErrorCode, uploadchunk.FieldError,
				uploadchunk.FieldAttempts, uploadchunk.FieldUpdatedAt).
			Values(sessionID, index, string(out.state), out.size, int64(out.crc), out.digest, code, message, 1, now).
			OnConflict(entsql.ConflictColumns(uploadchunk.FieldSessionID, uploadchunk.FieldIndex), entsql.DoNothing()).
			Query()
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return fmt.Errorf("recording chunk %d: %w", index, err)
		}
		if n, err = res.RowsAffected(); err != nil {
			return fmt.Errorf("recording chunk %d: %w", index, err)
		}
	} else {
		state := uploadchunk.StateFAILED
		if from == heldReceived {
			state = uploadchunk.StateRECEIVED
		}
		upd := tx.UploadChunk.Update().
			Where(uploadchunk.SessionID(sessionID), uploadchunk.Index(index), uploadchunk.StateEQ(state)).
			SetState(out.state).SetSize(out.size).SetCrc32c(int64(out.crc)).
			SetUpdatedAt(now)
		if arrival {
			upd.AddAttempts(1)
		}
		if out.digest != nil {
			upd.SetDigest(*out.digest)
		} else {
			upd.ClearDigest()
		}
		if code != nil {
			upd.SetErrorCode(*code).SetError(*message)
		} else {
			upd.ClearErrorCode().ClearError()
		}
		affected, err := upd.Save(ctx)
		if err != nil {
			return fmt.Errorf("recording chunk %d: %w", index, err)
		}
		n = int64(affected)
	}
	if n == 0 {
		return errChunkMoved
	}
	return nil
}
