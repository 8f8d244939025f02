package upload

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/uploadchunk"
	"github.com/spoolhq/spool/internal/digest"
	"github.com/spoolhq/spool/internal/reqlog"
	"github.com/spoolhq/spool/internal/sniff"
)

// ReceiveOptions describe a chunk arriving on the data plane.
type ReceiveOptions struct {
	// OwnerID, when set, must own the upload (bearer-token requests);
	// signed URLs leave it empty because the signature already binds them.
	OwnerID string
	// ContentLength is the body's declared length, or -1 if unknown. A
	// wrong length fails the chunk before a byte is written.
	ContentLength int64
	// Expect are checksums the client declared for the chunk.
	Expect []Digest
	// Admit, if set, is asked once the upload's owner is known and
	// before a byte of the body is read (the user's data-plane budget);
	// its error is returned as it is.
	Admit Admitter
	// Hurry, if set, cuts the body off after a short silence from now
	// on, rather than the usual idle timeout; safe to call from another
	// goroutine, and more than once. On local disk it is called when
	// another request for the same chunk arrives while this one is in
	// flight (arrivals.go): this one's connection may have died, and the
	// later one, the client's resend, waits for it. A body still sending
	// (another client resuming the same upload) goes on.
	Hurry func()
}

// Admitter decides whether a user's request may go on now. It returns
// RATE_LIMITED (with RetryAfter) when not.
type Admitter interface {
	Admit(ctx context.Context, userID string) error
}

// errChunkTooLong stops a body that goes past its chunk.
var errChunkTooLong = errors.New("chunk body is longer than the chunk")

// chunkReader passes through exactly one chunk of a body, computing its
// CRC32C and any declared digests on the way, and fails if the body is
// longer than the chunk.
type chunkReader struct {
	r         io.Reader
	remaining int64
	read      int64
	hashes    []hash.Hash // hashes[0] is CRC32C; the rest match Expect
	// bodyErr is the body's own failure (a client that hung up), told
	// apart from a storage failure.
	bodyErr error
	// began, if set, is called at the first Read, and then cleared.
	began func()
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if c.began != nil {
		c.began()
		c.began = nil
	}
	if c.remaining == 0 {
		var probe [1]byte
		n, err := io.ReadFull(c.r, probe[:])
		if n > 0 {
			return 0, errChunkTooLong
		}
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		if err != nil && err != io.EOF {
			// The body broke instead of ending: the client's failure, not
			// the storage's.
			c.bodyErr = err
		}
		return 0, err
	}
	if int64(len(p)) > c.remaining {
		p = p[:c.remaining]
	}
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF {
		c.bodyErr = err
	}
	c.remaining -= int64(n)
	c.read += int64(n)
	for _, h := range c.hashes {
		h.Write(p[:n])
	}
	return n, err
}

// chunkOutcome is what happened to one arrival of a chunk.
type chunkOutcome struct {
	state   uploadchunk.State
	size    int64
	crc     uint32
	digest  *string
	code    Code
	message string
	// untouched is true when no byte reached storage, so a copy received
	// earlier is still intact and stays RECEIVED.
	untouched bool
}

func (o chunkOutcome) err() error {
	if o.state == uploadchunk.StateRECEIVED {
		return nil
	}
	return &Error{Code: o.code, Message: o.message}
}

func failed(code Code, untouched bool, format string, args ...any) chunkOutcome {
	return chunkOutcome{state: uploadchunk.StateFAILED, code: code, message: fmt.Sprintf(format, args...), untouched: untouched}
}

// ReceiveChunk stores one chunk's bytes as they stream in and records the
// outcome: RECEIVED when size and checksums match, else FAILED (it then
// shows in failedChunks until sent again). It returns the upload's
// progress and, for a failed chunk, CHUNK_TOO_LARGE, CHUNK_TOO_SMALL,
// CHECKSUM_MISMATCH or TYPE_MISMATCH; for a request that could not be
// taken at all NOT_FOUND, INVALID_CHUNK, SESSION_EXPIRED, ALREADY_FINISHED
// or STORAGE_UNAVAILABLE; whatever opts.Admit returns when it refuses.
func (s *Service) ReceiveChunk(ctx context.Context, uploadID string, index int, body io.Reader, opts ReceiveOptions) (Progress, error) {
	sess, row, err := s.sessionWithChunk(beforeTheBody(ctx), opts.OwnerID, uploadID, chunkAt{index: index})
	if err != nil {
		return Progress{}, err
	}
	// A signed URL names no user: the upload's owner is the request's
	// user in its log lines.
	reqlog.SetUser(ctx, sess.OwnerID)
	if err := admit(ctx, opts, sess); err != nil {
		return Progress{}, err
	}
	ref, err := sessionChunk(sess, index)
	if err != nil {
		return Progress{}, err
	}
	return s.receive(ctx, sess, ref, row.held, body, opts)
}

// beforeTheBody is a request's context for what a chunk's request reads
// before its body: no longer ended with the request, unless it has a
// deadline. Over HTTP/1.1 nothing ends a request's context before its
// body has been read (net/http notices a client gone only then), so
// watching the read for that end did nothing but cost: on PostgreSQL a
// goroutine of database/sql's each chunk (and a callback of pgx's on
// the context), which woke an idle CPU in a sequential upload
// (docs/DESIGN.md, "Nothing watches SQLite's chunk path for
// cancellation"). SQLite's read connections ignore the end already and
// keep a deadline, as this does.
func beforeTheBody(ctx context.Context) context.Context {
	if _, ok := ctx.Deadline(); ok {
		return ctx
	}
	return context.WithoutCancel(ctx)
}

// admit asks opts.Admit, if any, about the session's owner.
func admit(ctx context.Context, opts ReceiveOptions, sess *ent.UploadSession) error {
	if opts.Admit == nil {
		return nil
	}
	return opts.Admit.Admit(ctx, sess.OwnerID)
}

// receive takes one chunk of a session already loaded and checked for
// ownership; was is what the database held for the chunk when the
// session was read (heldUnknown to read it).
func (s *Service) receive(ctx context.Context, sess *ent.UploadSession, ref ChunkRef, was held, body io.Reader, opts ReceiveOptions) (Progress, error) {
	if err := s.checkActive(ctx, sess); err != nil {
		return Progress{}, err
	}
	if err := notTus(sess); err != nil {
		return Progress{}, err
	}
	if was == heldUnknown {
		var err error
		if was, err = heldChunk(ctx, s.db, sess.ID, ref.Index); err != nil {
			return Progress{}, err
		}
	}
	// On a store that writes in place, the requests for one chunk are
	// ordered (arrivals.go): a later one hurries this one, and this
	// one's write begins as the store starts reading the body, when it
	// holds the chunk, so writes begin in the order they are made.
	var turn *arrival
	var began func()
	if !s.wholeChunkWrites {
		turn = s.arrivals.arrive(sess.ID, ref.Index, opts.Hurry)
		defer turn.end()
		began = turn.begin
	}
	out, was, err := s.writeChunk(ctx, sess, ref, was, body, opts, began)
	if err != nil {
		// A re-sent chunk is marked FAILED before its bytes are written:
		// when the store then fails, subscribers must hear that the chunk
		// no longer counts. A watch drops the event if nothing changed.
		s.publishCurrent(context.WithoutCancel(ctx), sess.ID)
		return Progress{}, err
	}
	// The outcome is recorded even if the client has hung up meanwhile.
	ctx = context.WithoutCancel(ctx)
	var p Progress
	err = turn.settle(func(overtaken bool) (err error) {
		// The later arrival wrote after this one: a failure of this one
		// changed nothing that is stored now, as on GCS.
		out.untouched = out.untouched || overtaken
		p, err = s.recordChunk(ctx, sess, ref, was, out)
		return err
	})
	if err != nil {
		return Progress{}, err
	}
	s.publish(ctx, p)
	if err := out.err(); err != nil {
		s.log.InfoContext(ctx, "chunk failed", "upload_id", sess.ID, "chunk", ref.Index, "code", out.code, "reason", out.message)
		return p, err
	}
	return p, nil
}

// writeChunk streams body into storage and judges it. was is what the
// database held for the chunk; writeChunk returns what it holds once a
// RECEIVED copy is invalidated for the bytes that replace it. The error
// is for failures that leave nothing to record (storage down). began, if
// set, is called when the store first reads the body.
func (s *Service) writeChunk(ctx context.Context, sess *ent.UploadSession, ref ChunkRef, was held, body io.Reader, opts ReceiveOptions, began func()) (chunkOutcome, held, error) {
	if cl := opts.ContentLength; cl >= 0 && cl != ref.Size {
		if cl > ref.Size {
			return failed(CodeChunkTooLarge, true, "chunk %d must be %d bytes, the request declares %d", ref.Index, ref.Size, cl), was, nil
		}
		return failed(CodeChunkTooSmall, true, "chunk %d must be %d bytes, the request declares %d", ref.Index, ref.Size, cl), was, nil
	}
	if ref.Index == 0 {
		br := bufio.NewReaderSize(body, sniff.HeadSize)
		head, err := br.Peek(min(sniff.HeadSize, int(ref.Size)))
		if err != nil && !errors.Is(err, io.EOF) {
			return failed(CodeChunkTooSmall, true, "reading chunk 0 failed: %v", err), was, nil
		}
		if !sniff.Matches(sess.MimeType, head) {
			detected := sniff.Detect(head)
			if detected == "" {
				detected = "an unrecognised format"
			}
			return failed(CodeTypeMismatch, true, "the file was declared as %s but its first bytes are %s", sess.MimeType, detected), was, nil
		}
		body = br
	}
	cr := &chunkReader{r: body, remaining: ref.Size, hashes: []hash.Hash{crc32.New(crc32.MakeTable(crc32.Castagnoli))}, began: began}
	for _, d := range opts.Expect {
		cr.hashes = append(cr.hashes, digest.NewHash(d.Alg))
	}
	if was == heldReceived {
		var err error
		if was, err = s.invalidateForResend(ctx, sess.ID, ref); err != nil {
			return chunkOutcome{}, was, err
		}
	}
	n, err := s.store.WriteChunk(ctx, sess.StorageKey, ref, cr)
	// Whether a failed arrival left what the store held as it was: a
	// RECEIVED copy, maybe written by a request that overtook this one,
	// then stays RECEIVED (tryRecordChunk's keep).
	untouched := n == 0 || s.wholeChunkWrites
	switch {
	case errors.Is(err, errChunkTooLong):
		return failed(CodeChunkTooLarge, untouched, "chunk %d must be %d bytes; the body was longer", ref.Index, ref.Size), was, nil
	case errors.Is(err, ErrNotExist):
		return chunkOutcome{}, was, s.stoppedTaking(ctx, sess.ID, "chunks")
	case err != nil && cr.bodyErr != nil:
		return failed(CodeChunkTooSmall, untouched, "chunk %d: the transfer broke off after %d of %d bytes", ref.Index, cr.read, ref.Size), was, nil
	case err != nil:
		return chunkOutcome{}, was, storageError("writing chunk", err)
	case n < ref.Size:
		return failed(CodeChunkTooSmall, untouched, "chunk %d must be %d bytes, got %d", ref.Index, ref.Size, n), was, nil
	}
	out := chunkOutcome{state: uploadchunk.StateRECEIVED, size: n, crc: cr.hashes[0].(hash.Hash32).Sum32()}
	for i, d := range opts.Expect {
		got := cr.hashes[i+1].Sum(nil)
		if !bytes.Equal(got, d.Sum) {
			return failed(CodeChecksumMismatch, false, "chunk %d is corrupt: %s", ref.Index, describeMismatch(d.Alg, d.Sum, got)), was, nil
		}
		if d.Alg != "crc32c" {
			ds := d.String()
			out.digest = &ds
		}
	}
	return out, was, nil
}

// errNoLongerTaking is a session found to take no more chunks inside a
// transaction or by a receipt's condition, made into stoppedTaking's
// error after it.
var errNoLongerTaking = errors.New("the upload no longer takes chunks")

// invalidateForResend marks a received chunk FAILED before its bytes are
// overwritten, moving the session's counts and bumping its version in the
// same transaction. A complete() that checked the chunks before then
// fails its version guard and judges again; one that got further first
// makes this return ALREADY_FINISHED, so no byte of an assembling file is
// touched. It returns what the chunk's row holds afterwards: heldFailed,
// or heldUnknown when it was no longer RECEIVED (another re-send got
// there first).
func (s *Service) invalidateForResend(ctx context.Context, sessionID string, ref ChunkRef) (held, error) {
	now := s.now()
	d := transition(heldReceived, uploadchunk.StateFAILED, ref.Size)
	missing := failed(CodeChunkMissing, false, "it was being sent again")
	var err error
	if s.oneStatementReceipts() {
		var ok bool
		_, ok, err = s.moveAndBump(ctx, sessionID, ref.Index, heldReceived, missing, false, d, false, now)
		if err == nil && !ok {
			err = errNoLongerTaking
		}
	} else {
		err = s.withTx(ctx, func(tx *ent.Tx) error {
			// The session row first, then the chunk's, as every write on
			// the chunk path (and moveAndBump's lock on PostgreSQL, where
			// two replicas deadlocked when this went the other way).
			_, ok, err := s.bumpSession(ctx, tx, sessionID, d, false, now)
			if err != nil {
				return err
			}
			if !ok {
				return errNoLongerTaking
			}
			return s.moveChunk(ctx, tx, sessionID, ref.Index, heldReceived, missing, false, now)
		})
	}
	switch {
	case errors.Is(err, errNoLongerTaking):
		return heldUnknown, s.stoppedTaking(ctx, sessionID, "chunks")
	case errors.Is(err, errChunkMoved):
		return heldUnknown, nil
	case err != nil:
		return heldUnknown, err
	}
	return heldFailed, nil
}

// recordChunk stores a chunk's outcome and moves the session to UPLOADING,
// in one transaction conditional on the session still taking chunks and
// on the chunk's row still holding was. A failure caught before any byte
// reached storage leaves an earlier RECEIVED copy as it was. If another
// request moved the row meanwhile, the row is read again and the
// transaction retried.
func (s *Service) recordChunk(ctx context.Context, sess *ent.UploadSession, ref ChunkRef, was held, out chunkOutcome) (Progress, error) {
	for attempt := 0; ; attempt++ {
		if was == heldUnknown {
			var err error
			if was, err = heldChunk(ctx, s.db, sess.ID, ref.Index); err != nil {
				return Progress{}, err
			}
		}
		p, err := s.tryRecordChunk(ctx, sess, ref, was, out)
		if errors.Is(err, errNoLongerTaking) {
			return Progress{}, s.stoppedTaking(ctx, sess.ID, "chunks")
		}
		if !errors.Is(err, errChunkMoved) || attempt == 10 {
			return p, err
		}
		was = heldUnknown
	}
}

func (s *Service) tryRecordChunk(ctx context.Context, sess *ent.UploadSession, ref ChunkRef, was held, out chunkOutcome) (Progress, error) {
	keep := out.state == uploadchunk.StateFAILED && out.untouched && was == heldReceived
	var d countsDelta
	if !keep {
		d = transition(was, out.state, ref.Size)
	}
	now := s.now()
	// Only the first chunk moves the status: an UPDATE that sets it
	// rewrites the status indexes even to the same value.
	toUploading := sess.Status == StatusInitialized
	progress := func(c *ent.Client, counts sessionCounts, ok bool) (Progress, error) {
		if !ok {
			return Progress{}, errNoLongerTaking
		}
		fresh := *sess
		fresh.Status, fresh.Version, fresh.Percent, fresh.UpdatedAt = StatusUploading, counts.version, counts.percent, now
		fresh.ReceivedChunks, fresh.ReceivedBytes, fresh.FailedChunks = counts.received, counts.bytes, counts.failed
		return countedProgress(ctx, c, &fresh)
	}
	if s.oneStatementReceipts() {
		// One statement, its own transaction. The failed chunks' indexes,
		// read only when there are some, are then read after it: they
		// may be newer than its counts, never older (a later event of
		// the same upload carries both as one).
		var c sessionCounts
		var ok bool
		var err error
		if keep {
			c, ok, err = s.bumpSession(ctx, s.db, sess.ID, d, toUploading, now)
		} else {
			c, ok, err = s.moveAndBump(ctx, sess.ID, ref.Index, was, out, true, d, toUploading, now)
		}
		if err != nil {
			return Progress{}, err
		}
		return progress(s.db, c, ok)
	}
	var p Progress
	err := s.withReceiptTx(ctx, func(tx *ent.Tx) error {
		c, ok, err := s.bumpSession(ctx, tx, sess.ID, d, toUploading, now)
		if err != nil {
			return err
		}
		if ok && !keep {
			if err := s.moveChunk(ctx, tx, sess.ID, ref.Index, was, out, true, now); err != nil {
				return err
			}
		}
		// Not ok rolls back, and so does any error of countedProgress.
		p, err = progress(tx.Client(), c, ok)
		return err
	})
	return p, err
}

// withReceiptTx runs a chunk receipt's transaction: with the receipts
// that arrive meanwhile on SQLite (groupcommit.go), alone on PostgreSQL.
func (s *Service) withReceiptTx(ctx context.Context, fn func(tx *ent.Tx) error) error {
	if s.receipts != nil {
		return s.receipts.run(ctx, fn)
	}
	return s.withTx(ctx, fn)
}

// ReceiveRange takes a chunk addressed by its byte range, for clients that
// speak Content-Range: the range must be exactly one chunk of the
// caller's upload (first through last inclusive, of total bytes). It
// returns INVALID_CHUNK for a range that is not, and otherwise what
// ReceiveChunk returns.
func (s *Service) ReceiveRange(ctx context.Context, userID, uploadID string, first, last, total int64, body io.Reader, opts ReceiveOptions) (Progress, error) {
	if first < 0 {
		return Progress{}, Errorf(CodeInvalidChunk, "bytes %d-%d are not a chunk", first, last)
	}
	sess, row, err := s.sessionWithChunk(beforeTheBody(ctx), userID, uploadID, chunkAt{firstByte: first, byOffset: true})
	if err != nil {
		return Progress{}, err
	}
	if err := admit(ctx, opts, sess); err != nil {
		return Progress{}, err
	}
	if total >= 0 && total != sess.TotalSize {
		return Progress{}, Errorf(CodeInvalidChunk, "the range's total is %d bytes but upload %s is %d", total, uploadID, sess.TotalSize)
	}
	index := int(first / sess.ChunkSize)
	ref, ok := chunkRef(sess.TotalSize, sess.ChunkSize, sess.TotalChunks, index)
	if !ok || first != ref.Offset || last-first+1 != ref.Size {
		return Progress{}, Errorf(CodeInvalidChunk, "bytes %d-%d are not a chunk: chunks are %d bytes, starting at multiples of %d, the last one short",
			first, last, sess.ChunkSize, sess.ChunkSize)
	}
	return s.receive(ctx, sess, ref, row.held, body, opts)
}

// ReceivedChunks returns the indexes of the chunks received so far.
func (sess *Session) ReceivedChunks() []int {
	got := make([]int, 0, sess.TotalChunks-len(sess.missing))
	m := 0
	for i := 0; i < sess.TotalChunks; i++ {
		if m < len(sess.missing) && sess.missing[m] == i {
			m++
			continue
		}
		got = append(got, i)
	}
	return got
}
