package upload

import (
	"context"
	stdsql "database/sql"
	"fmt"
	"slices"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/uploadchunk"
	"github.com/spoolhq/spool/ent/uploadsession"
)

// The chunk path's statements are built once per Service, by ent's
// builder, and run as text with fresh arguments. Building them for each
// request (ent's query builder, then sqlgraph's scan set-up) was 15–20%
// of the server's CPU for a small chunk PUT or a confirmChunk, more than
// SQLite took to run them (docs/BENCHMARKS.md, "Control cost"). The text
// is the same every time, so SQLite's statement cache and PostgreSQL's
// prepared statements hit it.

// slot marks an argument of a built statement that each call fills: the
// builder is given slot(i) where the call's i-th value goes.
type slot int

// builtSQL is a statement's text and its arguments as built, slots in
// place of the per-call values.
type builtSQL struct {
	text string
	args []any
}

func build(b entsql.Querier) builtSQL {
	text, args := b.Query()
	return builtSQL{text: text, args: args}
}

// with returns the statement's arguments with vals in its slots.
func (b builtSQL) with(vals ...any) []any {
	args := slices.Clone(b.args)
	for i, a := range args {
		if s, ok := a.(slot); ok {
			args[i] = vals[s]
		}
	}
	return args
}

// chunkStatements are the chunk path's statements for one dialect.
type chunkStatements struct {
	// sessionWithChunk[byOffset] reads a session joined to one chunk's
	// row; slots: 0 the chunk's index or first byte, 1 the session id.
	sessionWithChunk [2]builtSQL
	// bumpSession[toUploading]; slots bumpReceived … bumpID.
	bumpSession [2]builtSQL
	// asyncCommit is set when bumpSession also turns synchronous_commit
	// off for its transaction (Deps.AsyncReceipts, PostgreSQL only): its
	// RETURNING then has one column more.
	asyncCommit bool
	// insertChunk and updateChunk[arrival]; slots chunkSession …
	// chunkFromState (the insert has no chunkFromState).
	insertChunk builtSQL
	updateChunk [2]builtSQL
	// receipt[move][toUploading] is a chunk row's move and its session's
	// bump as one statement, PostgreSQL only (nil on SQLite); slots: the
	// bump's, then the chunk's from receiptChunk on.
	receipt *[chunkMoves][2]builtSQL
}

// chunkMove is how a receipt writes the chunk's row.
type chunkMove int

const (
	moveInsert        chunkMove = iota // no row yet
	moveUpdateArrival                  // a row, and one more attempt
	moveUpdate                         // a row, the same attempts (an invalidation)
	chunkMoves
)

// receiptChunk is the first of the chunk's slots in receipt: chunk slot
// i is receiptChunk+i.
const receiptChunk = bumpID + 1

// Slots of bumpSession.
const (
	bumpReceived slot = iota
	bumpBytes
	bumpFailed
	bumpNow
	bumpID
)

// Slots of insertChunk and updateChunk.
const (
	chunkSession slot = iota
	chunkIndex
	chunkState
	chunkSize
	chunkCRC
	chunkDigest
	chunkCode
	chunkMessage
	chunkNow
	chunkFromState
)

func newChunkStatements(d string, asyncCommit bool) *chunkStatements {
	s := chunkStatements{asyncCommit: asyncCommit}
	for byOffset := range 2 {
		s.sessionWithChunk[byOffset] = buildSessionWithChunk(d, byOffset == 1)
	}
	for toUploading := range 2 {
		s.bumpSession[toUploading] = buildBumpSession(d, toUploading == 1, asyncCommit)
	}
	s.insertChunk = build(entsql.Dialect(d).Insert(uploadchunk.Table).
		Columns(insertedChunkColumns...).Values(insertedChunkValues(0)...).
		OnConflict(entsql.ConflictColumns(uploadchunk.FieldSessionID, uploadchunk.FieldIndex), entsql.DoNothing()))
	for arrival := range 2 {
		s.updateChunk[arrival] = build(updateChunk(d, arrival, 0))
	}
	if d == dialect.Postgres {
		s.receipt = new([chunkMoves][2]builtSQL)
		for move := range chunkMoves {
			for toUploading := range 2 {
				s.receipt[move][toUploading] = buildReceipt(move, toUploading == 1, asyncCommit)
			}
		}
	}
	return &s
}

// insertedChunkColumns are the columns a new chunk row is written with,
// and insertedChunkValues their values: the chunk's slots, each moved on
// by shift, and a first attempt.
var insertedChunkColumns = []string{uploadchunk.FieldSessionID, uploadchunk.FieldIndex, uploadchunk.FieldState,
	uploadchunk.FieldSize, uploadchunk.FieldCrc32c, uploadchunk.FieldDigest, uploadchunk.FieldErrorCode,
	uploadchunk.FieldError, uploadchunk.FieldAttempts, uploadchunk.FieldUpdatedAt}

func insertedChunkValues(shift slot) []any {
	return []any{shift + chunkSession, shift + chunkIndex, shift + chunkState, shift + chunkSize, shift + chunkCRC,
		shift + chunkDigest, shift + chunkCode, shift + chunkMessage, 1, shift + chunkNow}
}

// takesChunks is the condition on a session that chunks may still
// arrive: active and unexpired; slots bumpID and bumpNow.
func takesChunks() *entsql.Predicate {
	return entsql.And(
		entsql.EQ(uploadsession.FieldID, bumpID),
		statusIn(activeStatuses...),
		entsql.GT(uploadsession.FieldExpiresAt, bumpNow))
}

// statusIn is the condition that a session's status is one of these.
func statusIn(statuses ...Status) *entsql.Predicate {
	args := make([]any, len(statuses))
	for i, st := range statuses {
		args[i] = string(st)
	}
	return entsql.In(uploadsession.FieldStatus, args...)
}

// updateChunk is the UPDATE of a chunk's row, conditional on the state it
// was read in; arrival is 1 to count one more attempt. Its slots are the
// chunk's, each moved on by shift.
func updateChunk(d string, arrival int, shift slot) *entsql.UpdateBuilder {
	return entsql.Dialect(d).Update(uploadchunk.Table).
		Set(uploadchunk.FieldState, shift+chunkState).
		Set(uploadchunk.FieldSize, shift+chunkSize).
		Set(uploadchunk.FieldCrc32c, shift+chunkCRC).
		Set(uploadchunk.FieldDigest, shift+chunkDigest).
		Set(uploadchunk.FieldErrorCode, shift+chunkCode).
		Set(uploadchunk.FieldError, shift+chunkMessage).
		Set(uploadchunk.FieldUpdatedAt, shift+chunkNow).
		Add(uploadchunk.FieldAttempts, arrival).
		Where(entsql.And(
			entsql.EQ(uploadchunk.FieldSessionID, shift+chunkSession),
			entsql.EQ(uploadchunk.FieldIndex, shift+chunkIndex),
			entsql.EQ(uploadchunk.FieldState, shift+chunkFromState)))
}

// buildReceipt is a receipt as one statement on PostgreSQL, so that it is
// one round trip and its own transaction, where the transaction of
// bumpSession and moveChunk took four (BEGIN, two statements, COMMIT)
// and held the session's row locked across them:
//
//	WITH live  AS (SELECT id FROM upload_sessions WHERE <takes chunks> FOR UPDATE),
//	     moved AS (<the chunk's INSERT or UPDATE, only with a live row> RETURNING id),
//	     bump  AS (UPDATE upload_sessions … WHERE id = $ AND EXISTS (SELECT FROM moved) RETURNING …)
//	SELECT (SELECT count(*) FROM live), bump.* FROM (SELECT) one LEFT JOIN bump ON true
//
// Each part writes only if the one before did, so the statement writes
// everything or nothing, as the transaction did: no live row (the session
// stopped taking chunks) or no moved row (the chunk's row is not as read)
// writes nothing. live locks the session's row first, the order every
// transaction on the chunk path takes, and reads it as committed when the
// lock is granted; bump then updates that same version. The one row
// returned tells the cases apart.
func buildReceipt(move chunkMove, toUploading, asyncCommit bool) builtSQL {
	const d = dialect.Postgres
	const live, moved, bump = "live", "moved", "bump"
	b := &entsql.Builder{}
	b.SetDialect(d)
	b.WriteString("WITH ").Ident(live).WriteString(" AS ").Wrap(func(b *entsql.Builder) {
		b.Join(entsql.Dialect(d).Select(uploadsession.FieldID).From(entsql.Table(uploadsession.Table)).
			Where(takesChunks()).ForUpdate())
	})
	b.WriteString(", ").Ident(moved).WriteString(" AS ").Wrap(func(b *entsql.Builder) {
		if move == moveInsert {
			// INSERT … SELECT … FROM live, which ent's builder does not
			// write; PostgreSQL types the arguments by their columns.
			b.WriteString("INSERT INTO ").Ident(uploadchunk.Table).Wrap(func(b *entsql.Builder) {
				b.IdentComma(insertedChunkColumns...)
			})
			b.WriteString(" SELECT ").Args(insertedChunkValues(receiptChunk)...)
			b.WriteString(" FROM ").Ident(live).WriteString(" ON CONFLICT ").Wrap(func(b *entsql.Builder) {
				b.IdentComma(uploadchunk.FieldSessionID, uploadchunk.FieldIndex)
			}).WriteString(" DO NOTHING RETURNING ").Ident(uploadchunk.FieldID)
			return
		}
		arrival := 0
		if move == moveUpdateArrival {
			arrival = 1
		}
		u := updateChunk(d, arrival, receiptChunk)
		b.Join(u.Where(existsIn(live)).Returning(uploadchunk.FieldID))
	})
	b.WriteString(", ").Ident(bump).WriteString(" AS ").Wrap(func(b *entsql.Builder) {
		b.Join(bumpUpdate(d, toUploading, asyncCommit).
			Where(entsql.And(entsql.EQ(uploadsession.FieldID, bumpID), existsIn(moved))))
	})
	b.WriteString(" SELECT (SELECT count(*) FROM ").Ident(live).WriteString("), ").Ident(bump).
		WriteString(".* FROM (SELECT) AS ").Ident("one").WriteString(" LEFT JOIN ").Ident(bump).WriteString(" ON TRUE")
	return build(b)
}

// existsIn is EXISTS (SELECT FROM table).
func existsIn(table string) *entsql.Predicate {
	return entsql.P(func(b *entsql.Builder) {
		b.WriteString("EXISTS (SELECT FROM ").Ident(table).WriteString(")")
	})
}

// buildSessionWithChunk is the read of sessionWithChunk: every column of
// the session and heldColumn, from a left join on the unique
// (session_id, index) index: one row looked up, never a scan.
func buildSessionWithChunk(d string, byOffset bool) builtSQL {
	t := entsql.Table(uploadsession.Table)
	sel := entsql.Dialect(d).Select(t.Columns(uploadsession.Columns...)...).From(t)
	row := entsql.Table(uploadchunk.Table).As("held")
	match := entsql.EQ(row.C(uploadchunk.FieldIndex), slot(0))
	if byOffset {
		// index = first / chunk_size, computed in SQL so the read needs no
		// chunk size beforehand.
		match = entsql.P(func(b *entsql.Builder) {
			b.Ident(row.C(uploadchunk.FieldIndex)).WriteString(" = ").
				Arg(slot(0)).WriteString(" / ").Ident(t.C(uploadsession.FieldChunkSize))
		})
	}
	sel.LeftJoin(row).OnP(entsql.And(
		entsql.ColumnsEQ(t.C(uploadsession.FieldID), row.C(uploadchunk.FieldSessionID)), match))
	// The row's fields joined by '|', each nullable one COALESCEd (a NULL
	// would make the whole text NULL); without a row the text is NULL,
	// which scans as "" (heldNone).
	sel.AppendSelectExprAs(entsql.ExprFunc(func(b *entsql.Builder) {
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
	}), heldColumn)
	// By id alone: the caller compares the owner (sessionWithChunk).
	return build(sel.Where(entsql.EQ(t.C(uploadsession.FieldID), slot(1))))
}

// buildBumpSession is bumpSession's UPDATE … RETURNING, conditional on
// the session still taking chunks.
func buildBumpSession(d string, toUploading, asyncCommit bool) builtSQL {
	return build(bumpUpdate(d, toUploading, asyncCommit).Where(takesChunks()))
}

// bumpUpdate is the session's side of a receipt, without its condition:
// it moves the counts, bumps the version, raises the percent high-water
// mark and returns the counts. With asyncCommit (PostgreSQL) it also
// returns set_config's answer: the call turns synchronous_commit off for
// the rest of the receipt's transaction, so its commit does not wait for
// the WAL flush, without a statement of its own (a SET LOCAL). It runs
// only when the session row is updated, which is the only case that
// commits anything.
func bumpUpdate(d string, toUploading, asyncCommit bool) *entsql.UpdateBuilder {
	u := entsql.Dialect(d).Update(uploadsession.Table).
		Add(uploadsession.FieldVersion, 1).
		Add(uploadsession.FieldReceivedChunks, bumpReceived).
		Add(uploadsession.FieldReceivedBytes, bumpBytes).
		Add(uploadsession.FieldFailedChunks, bumpFailed).
		Set(uploadsession.FieldPercent, entsql.ExprFunc(func(b *entsql.Builder) {
			// max(percent, (received_bytes + d) * 100 / total_size), in
			// SQL both engines speak; total_size is positive.
			next := func() {
				b.WriteString("(").Ident(uploadsession.FieldReceivedBytes).WriteString(" + ").Arg(bumpBytes).
					WriteString(") * 100 / ").Ident(uploadsession.FieldTotalSize)
			}
			b.WriteString("CASE WHEN ")
			next()
			b.WriteString(" > ").Ident(uploadsession.FieldPercent).WriteString(" THEN ")
			next()
			b.WriteString(" ELSE ").Ident(uploadsession.FieldPercent).WriteString(" END")
		})).
		Set(uploadsession.FieldUpdatedAt, bumpNow)
	if toUploading {
		u.Set(uploadsession.FieldStatus, string(StatusUploading))
	}
	returning := []string{uploadsession.FieldVersion, uploadsession.FieldPercent,
		uploadsession.FieldReceivedChunks, uploadsession.FieldReceivedBytes, uploadsession.FieldFailedChunks}
	if asyncCommit {
		// ent writes a function call as it is, unquoted.
		returning = append(returning, "set_config('synchronous_commit', 'off', true)")
	}
	return u.Returning(returning...)
}

// querier runs a statement: the ent client outside a transaction, the
// transaction inside one.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*stdsql.Rows, error)
}

// readSessionWithChunk runs a built sessionWithChunk read and scans its
// row into a session and heldColumn's text; found is false without a row.
// The session is data only: no ent client is attached to it, so its
// entity methods (Update, Query…) are not for use; the chunk path writes
// through its own statements or a transaction's builders.
func readSessionWithChunk(ctx context.Context, q querier, b builtSQL, vals ...any) (sess *ent.UploadSession, held stdsql.NullString, found bool, err error) {
	rows, err := q.QueryContext(ctx, b.text, b.with(vals...)...)
	if err != nil {
		return nil, held, false, err
	}
	defer rows.Close()
	if !rows.Next() {
		return nil, held, false, rows.Err()
	}
	if sess, err = scanSession(rows, &held); err != nil {
		return nil, held, false, err
	}
	return sess, held, true, rows.Close()
}

// updateSession runs u, an UPDATE of at most one upload_sessions row, and
// returns the row as u left it (RETURNING, which both engines speak), or
// found false when u's condition matched none. An event built from it is
// the committed row's, as a read after the commit would give it, without
// the read (publishSession). Like readSessionWithChunk's, the session is
// data only.
func updateSession(ctx context.Context, q querier, u *entsql.UpdateBuilder) (sess *ent.UploadSession, found bool, err error) {
	text, args := u.Returning(uploadsession.Columns...).Query()
	rows, err := q.QueryContext(ctx, text, args...)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	if !rows.Next() {
		return nil, false, rows.Err()
	}
	if sess, err = scanSession(rows); err != nil {
		return nil, false, err
	}
	return sess, true, rows.Close()
}

// scanSession scans a row of uploadsession.Columns, then extra.
func scanSession(rows *stdsql.Rows, extra ...any) (*ent.UploadSession, error) {
	sess := new(ent.UploadSession)
	dest, err := sessionFields(sess)
	if err != nil {
		return nil, err
	}
	if err := rows.Scan(append(dest, extra...)...); err != nil {
		return nil, err
	}
	return sess, nil
}

// sessionFields points at the field of sess each of ent's
// uploadsession.Columns scans into, in that order. database/sql fills a
// **T with nil for a NULL. A column ent gains and this does not know is
// an error, so the read cannot silently leave a field empty
// (TestSessionWithChunkReadsEveryColumn).
func sessionFields(sess *ent.UploadSession) ([]any, error) {
	dest := make([]any, len(uploadsession.Columns), len(uploadsession.Columns)+1)
	for i, c := range uploadsession.Columns {
		var p any
		switch c {
		case uploadsession.FieldID:
			p = &sess.ID
		case uploadsession.FieldCreatedAt:
			p = &sess.CreatedAt
		case uploadsession.FieldUpdatedAt:
			p = &sess.UpdatedAt
		case uploadsession.FieldOwnerID:
			p = &sess.OwnerID
		case uploadsession.FieldBatchID:
			p = &sess.BatchID
		case uploadsession.FieldFileName:
			p = &sess.FileName
		case uploadsession.FieldOriginalName:
			p = &sess.OriginalName
		case uploadsession.FieldMimeType:
			p = &sess.MimeType
		case uploadsession.FieldMediaType:
			p = &sess.MediaType
		case uploadsession.FieldTotalSize:
			p = &sess.TotalSize
		case uploadsession.FieldSha256:
			p = &sess.Sha256
		case uploadsession.FieldFingerprint:
			p = &sess.Fingerprint
		case uploadsession.FieldDurationSeconds:
			p = &sess.DurationSeconds
		case uploadsession.FieldStrategy:
			p = &sess.Strategy
		case uploadsession.FieldChunkSize:
			p = &sess.ChunkSize
		case uploadsession.FieldTotalChunks:
			p = &sess.TotalChunks
		case uploadsession.FieldStatus:
			p = &sess.Status
		case uploadsession.FieldStorageKey:
			p = &sess.StorageKey
		case uploadsession.FieldExpiresAt:
			p = &sess.ExpiresAt
		case uploadsession.FieldError:
			p = &sess.Error
		case uploadsession.FieldPercent:
			p = &sess.Percent
		case uploadsession.FieldVersion:
			p = &sess.Version
		case uploadsession.FieldReceivedChunks:
			p = &sess.ReceivedChunks
		case uploadsession.FieldReceivedBytes:
			p = &sess.ReceivedBytes
		case uploadsession.FieldFailedChunks:
			p = &sess.FailedChunks
		case uploadsession.FieldBytesFreed:
			p = &sess.BytesFreed
		case uploadsession.FieldFinishedAt:
			p = &sess.FinishedAt
		case uploadsession.FieldResumableURL:
			p = &sess.ResumableURL
		case uploadsession.FieldDeduplicated:
			p = &sess.Deduplicated
		case uploadsession.FieldResumableOrigin:
			p = &sess.ResumableOrigin
		case uploadsession.FieldTus:
			p = &sess.Tus
		case uploadsession.FieldTusPart:
			p = &sess.TusPart
		case uploadsession.FieldTailBytes:
			p = &sess.TailBytes
		case uploadsession.FieldTailCrc32c:
			p = &sess.TailCrc32c
		default:
			return nil, fmt.Errorf("upload: no field of ent.UploadSession for column %q", c)
		}
		dest[i] = p
	}
	return dest, nil
}
