package upload

import (
	"context"
	stdsql "database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/uploadchunk"
)

// A chunk receipt costs one read and one write on the common path
// (docs/DESIGN.md, "Receiving a chunk"): the read of the session joined
// to the chunk's row, then the write that bumps the session's counts and
// moves the chunk's row, each conditional on what was read. On SQLite
// the write is a transaction of two statements (shared with the receipts
// queued behind it: groupcommit.go); on PostgreSQL it is one statement
// (moveAndBump). Nothing on that path reads the upload's other chunks,
// so its cost does not grow with the number of chunks or uploads.

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
// digest|error, NULL (read as empty) without a row. The error comes last
// since only it can hold a '|'; a NULL field is an empty one.
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

// sessionWithChunk loads the caller's session (any owner for an empty
// userID) and its row for one chunk, in one statement. It returns
// NOT_FOUND for a missing id and someone else's alike.
//
// The read is by primary key alone and the owner is compared here, as
// for every read of one upload by its id (ownedSession, sessions): given
// the owner as well, a planner may walk the owner's index through all of
// their uploads. PostgreSQL did, in the generic plan it keeps for a
// prepared statement, while its statistics still said the table was
// small: every confirmChunk of a user with 25,000 uploads read them all
// (docs/BENCHMARKS.md, "A user's many uploads").
func (s *Service) sessionWithChunk(ctx context.Context, userID, id string, at chunkAt) (*ent.UploadSession, heldRow, error) {
	byOffset, first := 0, any(at.index)
	if at.byOffset {
		byOffset, first = 1, at.firstByte
	}
	sess, text, found, err := readSessionWithChunk(ctx, s.db, s.chunkSQL.sessionWithChunk[byOffset], first, id)
	if err != nil {
		return nil, heldRow{}, fmt.Errorf("loading upload %s: %w", id, err)
	}
	if !found || (userID != "" && sess.OwnerID != userID) {
		return nil, heldRow{}, errNotFound("upload", id)
	}
	row, err := parseHeld(text.String)
	if err != nil {
		return nil, heldRow{}, fmt.Errorf("loading upload %s: %w", id, err)
	}
	return sess, row, nil
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
// it UPLOADING: one UPDATE … RETURNING, in a transaction or on its own.
// ok is false if the session no longer takes chunks.
func (s *Service) bumpSession(ctx context.Context, q querier, id string, d countsDelta, toUploading bool, now time.Time) (c sessionCounts, ok bool, err error) {
	b := s.chunkSQL.bumpSession[0]
	if toUploading {
		b = s.chunkSQL.bumpSession[1]
	}
	rows, err := q.QueryContext(ctx, b.text, b.with(d.received, d.bytes, d.failed, now, id)...)
	if err != nil {
		return c, false, fmt.Errorf("updating upload: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		return c, false, rows.Err()
	}
	dest := []any{&c.version, &c.percent, &c.received, &c.bytes, &c.failed}
	if s.chunkSQL.asyncCommit {
		dest = append(dest, new(string)) // set_config's answer: "off"
	}
	if err := rows.Scan(dest...); err != nil {
		return c, false, fmt.Errorf("updating upload: %w", err)
	}
	return c, true, rows.Close()
}

// oneStatementReceipts reports whether receipts run as one statement each
// (moveAndBump, PostgreSQL) rather than as a transaction of bumpSession
// and moveChunk (SQLite, where group commit shares the transactions).
func (s *Service) oneStatementReceipts() bool { return s.chunkSQL.receipt != nil }

// moveAndBump is moveChunk and then bumpSession in one statement, its own
// transaction (chunksql.go, buildReceipt): it writes the chunk's outcome
// into its row only if the row still holds what was read (from) and the
// session still takes chunks, and then moves the session's counts by d.
// ok is false, with nothing written, if the session no longer takes
// chunks; errChunkMoved, with nothing written, if the row was not as read.
func (s *Service) moveAndBump(ctx context.Context, sessionID string, index int, from held, out chunkOutcome, arrival bool, d countsDelta, toUploading bool, now time.Time) (c sessionCounts, ok bool, err error) {
	move := moveInsert
	switch {
	case from != heldNone && arrival:
		move = moveUpdateArrival
	case from != heldNone:
		move = moveUpdate
	}
	up := 0
	if toUploading {
		up = 1
	}
	b := s.chunkSQL.receipt[move][up]
	code, message := outcomeError(out)
	rows, err := s.db.QueryContext(ctx, b.text, b.with(d.received, d.bytes, d.failed, now, sessionID,
		sessionID, index, string(out.state), out.size, int64(out.crc), out.digest, code, message, now, string(rowState(from)))...)
	if err != nil {
		return c, false, fmt.Errorf("recording chunk %d: %w", index, err)
	}
	defer rows.Close()
	if !rows.Next() {
		return c, false, fmt.Errorf("recording chunk %d: no answer: %w", index, rows.Err())
	}
	// The bump's columns are NULL when it updated nothing.
	var live int
	var bumped [5]stdsql.NullInt64
	dest := []any{&live, &bumped[0], &bumped[1], &bumped[2], &bumped[3], &bumped[4]}
	if s.chunkSQL.asyncCommit {
		dest = append(dest, new(stdsql.NullString)) // set_config's answer
	}
	if err := rows.Scan(dest...); err != nil {
		return c, false, fmt.Errorf("recording chunk %d: %w", index, err)
	}
	if err := rows.Close(); err != nil {
		return c, false, fmt.Errorf("recording chunk %d: %w", index, err)
	}
	switch {
	case live == 0:
		return c, false, nil
	case !bumped[0].Valid:
		return c, false, errChunkMoved
	}
	return sessionCounts{version: bumped[0].Int64, percent: int(bumped[1].Int64), received: int(bumped[2].Int64),
		bytes: bumped[3].Int64, failed: int(bumped[4].Int64)}, true, nil
}

// outcomeError is a FAILED outcome's code and message for its row, nil
// for a RECEIVED one.
func outcomeError(out chunkOutcome) (code, message *string) {
	if out.state != uploadchunk.StateFAILED {
		return nil, nil
	}
	c := string(out.code)
	return &c, &out.message
}

// rowState is the state of a chunk row that holds from (a row exists).
func rowState(from held) uploadchunk.State {
	if from == heldReceived {
		return uploadchunk.StateRECEIVED
	}
	return uploadchunk.StateFAILED
}

// moveChunk writes a chunk's outcome into its row, only if the row still
// holds what was read (from): an INSERT … ON CONFLICT DO NOTHING for a
// chunk without a row, else an UPDATE conditional on the state. An
// arrival counts one more attempt; an invalidation does not. It returns
// errChunkMoved when the row was not as read.
func (s *Service) moveChunk(ctx context.Context, tx *ent.Tx, sessionID string, index int, from held, out chunkOutcome, arrival bool, now time.Time) error {
	code, message := outcomeError(out)
	var res stdsql.Result
	var err error
	if from == heldNone {
		b := s.chunkSQL.insertChunk
		res, err = tx.ExecContext(ctx, b.text, b.with(sessionID, index, string(out.state), out.size, int64(out.crc),
			out.digest, code, message, now)...)
	} else {
		b := s.chunkSQL.updateChunk[0]
		if arrival {
			b = s.chunkSQL.updateChunk[1]
		}
		res, err = tx.ExecContext(ctx, b.text, b.with(sessionID, index, string(out.state), out.size, int64(out.crc),
			out.digest, code, message, now, string(rowState(from)))...)
	}
	if err != nil {
		return fmt.Errorf("recording chunk %d: %w", index, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("recording chunk %d: %w", index, err)
	}
	if n == 0 {
		return errChunkMoved
	}
	return nil
}
