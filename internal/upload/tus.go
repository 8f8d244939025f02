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

	entsql "entgo.io/ent/dialect/sql"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/predicate"
	"github.com/spoolhq/spool/ent/schema"
	"github.com/spoolhq/spool/ent/uploadchunk"
	"github.com/spoolhq/spool/ent/uploadsession"
	"github.com/spoolhq/spool/internal/digest"
	"github.com/spoolhq/spool/internal/reqlog"
	"github.com/spoolhq/spool/internal/sniff"
)

// tus uploads (docs/DESIGN.md §tus). A tus client creates an upload
// with POST /files/, learns its offset with HEAD and appends bytes with
// PATCH at that offset; internal/tus speaks the protocol (through tusd's
// handler) and calls the methods here. A tus upload is a spool upload:
// created under initBatch's rules, stored in the same chunks, completed
// by the same assembly, published to the same subscribers. What differs
// is how bytes arrive: by offset, in PATCHes of any size, so a PATCH may
// end inside a chunk. The bytes it kept there are the session's tail.

// TusFile is what a tus creation request says of its upload.
type TusFile struct {
	FileSpec
	// Part marks a partial upload (Upload-Concat: partial): bytes to be
	// joined into another upload by ConcatTus. It has no name or type of
	// its own, so it is not type-checked, never sniffed, and never shown
	// to subscribers or GraphQL; its bytes count against the quota.
	Part bool
}

// partMIMEType is the type of a tus partial upload sent without one.
const partMIMEType = "application/octet-stream"

// castagnoli is CRC32C's table.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CreateTus creates one tus upload for userID with initBatch's rules
// (type, size limits, quota, fingerprint resume among the user's tus
// uploads) in a batch of its own, and returns it. A file whose
// fingerprint or sha256 matches one of the user's unfinished tus uploads
// resumes that one, at its offset. It returns what InitBatch returns for
// one file.
func (s *Service) CreateTus(ctx context.Context, userID string, f TusFile) (*Session, error) {
	if f.Part && f.FileName == "" {
		f.FileName = "part"
	}
	b, err := s.InitBatch(ctx, userID, BatchSpec{Files: []FileSpec{f.FileSpec}, tus: &f})
	if err != nil {
		return nil, err
	}
	return b.Uploads[0], nil
}

// tusSession loads the caller's tus upload, NOT_FOUND for any other.
func (s *Service) tusSession(ctx context.Context, userID, id string) (*ent.UploadSession, error) {
	sess, err := ownedSession(ctx, s.db, userID, id)
	if err != nil {
		return nil, err
	}
	if !sess.Tus {
		return nil, Errorf(CodeNotFound, "upload %s was not created by a tus client: send its chunks as requestChunkUrl says", id)
	}
	return sess, nil
}

// TusUpload returns the caller's tus upload with its progress (and its
// media once completed), reading the session's row and not its chunks'
// (a tus client asks for it on every request). It returns NOT_FOUND for
// another user's upload and for one not created by tus.
func (s *Service) TusUpload(ctx context.Context, userID, id string) (*Session, error) {
	sess, err := s.tusSession(ctx, userID, id)
	if err != nil {
		return nil, err
	}
	if !isTerminal(sess.Status) && !s.now().Before(sess.ExpiresAt) {
		s.expire(ctx, sess.ID)
		if sess, err = s.tusSession(ctx, userID, id); err != nil {
			return nil, err
		}
	}
	return s.tusProgress(ctx, sess)
}

// tusProgress adds a tus session's progress, read from its counts (a tus
// upload's chunks never fail: they are received or not yet sent).
func (s *Service) tusProgress(ctx context.Context, sess *ent.UploadSession) (*Session, error) {
	p := progressOf(sess, chunkTotals{received: sess.ReceivedChunks, receivedBytes: sess.ReceivedBytes, failed: []int{}})
	if sess.Status == StatusCompleted {
		m, err := s.UploadMedia(ctx, sess.OwnerID, sess.ID)
		if err != nil {
			return nil, fmt.Errorf("loading media of %s: %w", sess.ID, err)
		}
		if m != nil {
			p.MediaID, p.MediaStatus = &m.ID, &m.Status
		}
	}
	return &Session{UploadSession: sess, Progress: p}, nil
}

// notTus refuses the chunk API for a tus upload: its bytes arrive by
// offset, and a chunk written beside them would not be in its offset.
func notTus(sess *ent.UploadSession) error {
	if sess.Tus {
		return Errorf(CodeBadUserInput, "upload %s is a tus upload: send its bytes with PATCH /files/%s", sess.ID, sess.ID)
	}
	return nil
}

// appendPoint is where a tus upload's stored bytes end: after received
// whole chunks and tail bytes of the next, whose CRC32C is tailCRC.
type appendPoint struct {
	received int
	bytes    int64 // of the received chunks
	tail     int64
	tailCRC  uint32
}

func pointOf(sess *ent.UploadSession) appendPoint {
	return appendPoint{received: sess.ReceivedChunks, bytes: sess.ReceivedBytes, tail: sess.TailBytes, tailCRC: uint32(sess.TailCrc32c)}
}

// pieceReader passes through at most the rest of one chunk of a PATCH's
// body, carrying the chunk's CRC32C on from the bytes before it and
// feeding the body's declared digests.
type pieceReader struct {
	r         io.Reader
	remaining int64
	read      int64 // bytes passed through
	crc       uint32
	digests   []hash.Hash // over the whole body, shared by its pieces
	ended     bool        // the body ended (or broke) before the chunk did
}

func (p *pieceReader) Read(b []byte) (int, error) {
	if p.remaining == 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.remaining {
		b = b[:p.remaining]
	}
	n, err := p.r.Read(b)
	p.remaining -= int64(n)
	p.read += int64(n)
	p.crc = crc32.Update(p.crc, castagnoli, b[:n])
	for _, h := range p.digests {
		h.Write(b[:n])
	}
	if err != nil {
		// A broken body ends the PATCH as its end does: what arrived is
		// kept (tusd gives stores io.EOF for both).
		p.ended = true
		if err != io.EOF {
			return n, err
		}
	}
	return n, err
}

// sealedChunk is a chunk an append filled.
type sealedChunk struct {
	ref ChunkRef
	crc uint32
}

// Append stores body at offset of userID's tus upload id, which must be
// where the upload's stored bytes end (Offset), and returns the upload
// with its new offset. Every byte that arrives is kept, also when body
// ends or breaks inside a chunk, unless a declared checksum does not
// match. Each chunk it fills is stored (in place on disk, a part on GCS),
// recorded RECEIVED and published as a chunk PUT's is; the bytes of the
// chunk it ends in are the session's tail. The last byte does not
// complete the upload: the caller calls Complete.
//
// It returns NOT_FOUND (also for another user's upload and one not
// created by tus), OFFSET_MISMATCH when offset is not the upload's,
// CHUNK_TOO_LARGE for a body past the upload's size, CHECKSUM_MISMATCH,
// TYPE_MISMATCH (the first bytes), SESSION_EXPIRED, ALREADY_FINISHED,
// STORAGE_UNAVAILABLE, or what opts.Admit returns.
func (s *Service) Append(ctx context.Context, userID, id string, offset int64, body io.Reader, opts AppendOptions) (*Session, error) {
	sess, err := s.tusSession(ctx, userID, id)
	if err != nil {
		return nil, err
	}
	return s.AppendTo(ctx, &Session{UploadSession: sess}, offset, body, opts)
}

// AppendTo is Append to a tus upload the caller has just read with
// TusUpload (a tus request reads it first anyway): it saves reading it
// again. The record is conditional on the session's version, so an
// upload changed since is read afresh there, and an offset moved since
// answers OFFSET_MISMATCH.
func (s *Service) AppendTo(ctx context.Context, upload *Session, offset int64, body io.Reader, opts AppendOptions) (*Session, error) {
	sess, id := upload.UploadSession, upload.ID
	if !sess.Tus {
		return nil, Errorf(CodeNotFound, "upload %s was not created by a tus client", id)
	}
	var err error
	reqlog.SetUser(ctx, sess.OwnerID)
	if err := s.checkActive(ctx, sess); err != nil {
		return nil, err
	}
	if opts.Admit != nil {
		if err := opts.Admit.Admit(ctx, sess.OwnerID); err != nil {
			return nil, err
		}
	}
	start := pointOf(sess)
	if at := (&Session{UploadSession: sess}).Offset(); offset != at {
		return nil, Errorf(CodeOffsetMismatch, "upload %s has %d bytes stored, so the next ones start at %d, not %d", id, at, at, offset)
	}
	if left := sess.TotalSize - offset; opts.ContentLength > left {
		return nil, Errorf(CodeChunkTooLarge, "upload %s has %d bytes left to send; the request declares %d", id, left, opts.ContentLength)
	}
	// Buffered so that a body ending on a chunk's boundary is seen to end
	// before an empty piece is written; a large read of an empty buffer
	// goes straight to the body, without a copy.
	in := bufio.NewReaderSize(body, max(64<<10, sniff.HeadSize))
	if offset == 0 && !sess.TusPart {
		if err := checkFirstBytes(sess, in); err != nil {
			return nil, err
		}
	}
	var digests []hash.Hash
	for _, d := range opts.Expect {
		digests = append(digests, digest.NewHash(d.Alg))
	}
	// Under a declared checksum the body is all or nothing: chunks are
	// sealed and recorded only once it has matched. Otherwise each chunk
	// is recorded as it fills, so subscribers see a long PATCH progress.
	verifyFirst := len(digests) > 0
	var pending []sealedChunk
	at := start
	for at.received < sess.TotalChunks {
		if _, err := in.Peek(1); err != nil {
			break // the body ended (or broke) where a piece would start
		}
		ref, _ := chunkRef(sess.TotalSize, sess.ChunkSize, sess.TotalChunks, at.received)
		piece := &pieceReader{r: in, remaining: ref.Size - at.tail, crc: at.tailCRC, digests: digests}
		n, werr := s.store.WritePiece(ctx, sess.StorageKey, ref, at.tail, piece)
		switch {
		case errors.Is(werr, ErrNotExist):
			return nil, s.stoppedTaking(ctx, id, "bytes")
		case (werr != nil && !piece.ended) || n != piece.read:
			// The store failed, not the body (or kept other than what it
			// was given, whose CRC32C is known): what it holds of this
			// piece is unknown, so only the pieces recorded before count.
			if werr == nil {
				werr = fmt.Errorf("the store kept %d of the %d bytes it read", n, piece.read)
			}
			return nil, storageError("writing bytes", werr)
		}
		at.tail, at.tailCRC = at.tail+n, piece.crc
		if at.tail < ref.Size {
			break // the body ended inside this chunk
		}
		sealed := sealedChunk{ref: ref, crc: at.tailCRC}
		at = appendPoint{received: at.received + 1, bytes: at.bytes + ref.Size}
		if verifyFirst {
			pending = append(pending, sealed)
			continue
		}
		if sess, err = s.sealAndRecord(ctx, sess, start, at, []sealedChunk{sealed}); err != nil {
			return nil, err
		}
		start = at
	}
	if at.received == sess.TotalChunks {
		// Every byte is stored; anything more in the body is too much.
		var probe [1]byte
		if n, _ := io.ReadFull(in, probe[:]); n > 0 {
			return nil, Errorf(CodeChunkTooLarge, "the body goes past the end of upload %s (%d bytes)", id, sess.TotalSize)
		}
	}
	for i, d := range opts.Expect {
		if got := digests[i].Sum(nil); !bytes.Equal(got, d.Sum) {
			return nil, Errorf(CodeChecksumMismatch, "the request's body is corrupt: %s; nothing of it was kept, send it again from byte %d",
				describeMismatch(d.Alg, d.Sum, got), offset)
		}
	}
	if at != start {
		if sess, err = s.sealAndRecord(ctx, sess, start, at, pending); err != nil {
			return nil, err
		}
	}
	return s.tusProgress(ctx, sess)
}

// checkFirstBytes checks the bytes that begin a tus upload against its
// declared type, as chunk 0's are, leaving them in body to be read. A
// first PATCH shorter than what sniffing looks at is judged by what it
// has.
func checkFirstBytes(sess *ent.UploadSession, body *bufio.Reader) error {
	head, _ := body.Peek(int(min(int64(sniff.HeadSize), sess.TotalSize)))
	if len(head) > 0 && !sniff.Matches(sess.MimeType, head) {
		detected := sniff.Detect(head)
		if detected == "" {
			detected = "an unrecognised format"
		}
		return Errorf(CodeTypeMismatch, "the file was declared as %s but its first bytes are %s", sess.MimeType, detected)
	}
	return nil
}

// sealAndRecord makes the chunks an append filled whole in the store and
// moves the session from where the append started to where it ended, in
// one transaction conditional on the session being as it was read (its
// version); then it publishes the progress and returns the session as
// it now is. If something else changed the session meanwhile while
// leaving its offset, it records again on the fresh row.
func (s *Service) sealAndRecord(ctx context.Context, sess *ent.UploadSession, from, to appendPoint, sealed []sealedChunk) (*ent.UploadSession, error) {
	for _, c := range sealed {
		if err := s.store.SealChunk(ctx, sess.StorageKey, c.ref, c.crc); err != nil {
			if errors.Is(err, ErrNotExist) {
				return nil, s.stoppedTaking(ctx, sess.ID, "bytes")
			}
			return nil, storageError("sealing a chunk", err)
		}
	}
	// The outcome is recorded even if the client has hung up meanwhile.
	ctx = context.WithoutCancel(ctx)
	for attempt := 0; ; attempt++ {
		next, err := s.recordAppend(ctx, sess, to, sealed)
		if !errors.Is(err, errAppendMoved) {
			if err != nil {
				return nil, err
			}
			p, err := s.tusProgress(ctx, next)
			if err != nil {
				return nil, err
			}
			s.publish(ctx, p.Progress)
			return next, nil
		}
		fresh, err := ownedSession(ctx, s.db, "", sess.ID)
		if err != nil {
			return nil, err
		}
		if err := s.checkActive(ctx, fresh); err != nil {
			return nil, err
		}
		if pointOf(fresh) != from || attempt == 10 {
			return nil, Errorf(CodeOffsetMismatch, "another request appended to upload %s meanwhile; it now has %d bytes stored",
				sess.ID, (&Session{UploadSession: fresh}).Offset())
		}
		sess = fresh
	}
}

// recordAppend moves sess to point to, recording the chunks sealed on the
// way RECEIVED, in one transaction that fails with errAppendMoved unless
// the session row is still at sess's version. It returns the row as it
// now is.
func (s *Service) recordAppend(ctx context.Context, sess *ent.UploadSession, to appendPoint, sealed []sealedChunk) (*ent.UploadSession, error) {
	now := s.now()
	next := *sess
	next.ReceivedChunks, next.ReceivedBytes, next.TailBytes, next.TailCrc32c = to.received, to.bytes, to.tail, int64(to.tailCRC)
	next.Percent = max(sess.Percent, percentOf(to.bytes+to.tail, sess.TotalSize))
	next.Status, next.UpdatedAt, next.Version = StatusUploading, now, sess.Version+1
	err := s.withTx(ctx, func(tx *ent.Tx) error {
		upd := tx.UploadSession.Update().
			Where(uploadsession.ID(sess.ID), uploadsession.Version(sess.Version),
				uploadsession.StatusIn(activeStatuses...), uploadsession.ExpiresAtGT(now)).
			SetReceivedChunks(next.ReceivedChunks).SetReceivedBytes(next.ReceivedBytes).
			SetTailBytes(next.TailBytes).SetTailCrc32c(next.TailCrc32c).
			SetPercent(next.Percent).SetUpdatedAt(now).SetVersion(next.Version)
		if sess.Status != StatusUploading {
			// Only then: an UPDATE that sets the status rewrites the
			// status indexes even to the same value.
			upd.SetStatus(StatusUploading)
		}
		n, err := upd.Save(ctx)
		if err != nil {
			return fmt.Errorf("recording appended bytes: %w", err)
		}
		if n == 0 {
			return errAppendMoved
		}
		for _, c := range sealed {
			out := chunkOutcome{state: uploadchunk.StateRECEIVED, size: c.ref.Size, crc: c.crc}
			if err := s.moveChunk(ctx, tx, sess.ID, c.ref.Index, heldNone, out, true, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &next, nil
}

// errAppendMoved rolls back an append's record when the session is no
// longer where the append started.
var errAppendMoved = errors.New("the upload's offset moved meanwhile")

// ConcatTus creates an upload of f from userID's partial tus uploads,
// every byte of each stored, joined in the order given (tus
// concatenation), and completes it: the store joins the parts' bytes
// itself (GCS composes them), the file's first bytes are checked against
// its type, and the parts end, CANCELLED, their bytes freed. The new
// upload takes over the parts' quota (f.Size must be their sum). It
// returns the new upload and its media file, or BAD_USER_INPUT for a
// part that is not a finished part of the caller's (or a size that is
// not their sum), INVALID_TYPE, FILE_TOO_LARGE, TYPE_MISMATCH or
// STORAGE_UNAVAILABLE. Once the parts are taken, a failure fails the new
// upload and the parts are gone: the client sends the file again.
func (s *Service) ConcatTus(ctx context.Context, userID string, f FileSpec, partIDs []string) (*Session, *ent.MediaFile, error) {
	if len(partIDs) == 0 {
		return nil, nil, Errorf(CodeBadUserInput, "a final upload needs at least one partial upload")
	}
	cf, err := s.checkFile(0, f, &TusFile{FileSpec: f})
	if err != nil {
		return nil, nil, err
	}
	now := s.now()
	finalID := schema.NewID("upl")
	final := &ent.UploadSession{}
	var parts []JoinPart
	err = s.withTx(ctx, func(tx *ent.Tx) error {
		seen := map[string]bool{}
		var sum int64
		for _, id := range partIDs {
			if seen[id] {
				return Errorf(CodeBadUserInput, "partial upload %s is listed twice", id)
			}
			seen[id] = true
			// Taken in one statement: only a part with every byte
			// stored, still taking bytes. It ends here, its quota moving
			// to the new upload (so no quota moves at all), its bytes
			// marked freed so the sweeper leaves them to this call, which
			// discards them after the join. The owner is compared once
			// it is read back, and someone else's part rolls all of this
			// back: named in the UPDATE, the owner's index could be
			// planned for it (ownedSession says why).
			n, err := tx.UploadSession.Update().
				Where(uploadsession.ID(id), uploadsession.TusPart(true),
					uploadsession.StatusIn(activeStatuses...), uploadsession.ExpiresAtGT(now),
					uploadsession.TailBytes(0), receivedEveryChunk()).
				SetStatus(StatusCancelled).SetFinishedAt(now).SetBytesFreed(true).
				SetError("joined into upload " + finalID).AddVersion(1).
				Save(ctx)
			if err != nil {
				return fmt.Errorf("taking partial upload %s: %w", id, err)
			}
			if n == 0 {
				return Errorf(CodeBadUserInput, "%s is not a partial upload of yours with every byte sent", id)
			}
			part, err := tx.UploadSession.Get(ctx, id)
			if err != nil {
				return fmt.Errorf("reading partial upload %s: %w", id, err)
			}
			if part.OwnerID != userID {
				return Errorf(CodeBadUserInput, "%s is not a partial upload of yours with every byte sent", id)
			}
			parts = append(parts, JoinPart{Key: part.StorageKey, TotalChunks: part.TotalChunks, Size: part.TotalSize})
			sum += part.TotalSize
		}
		if sum != cf.Size {
			return Errorf(CodeBadUserInput, "the partial uploads hold %d bytes, not %d", sum, cf.Size)
		}
		batchID := schema.NewID("bat")
		if err := tx.UploadBatch.Create().SetID(batchID).SetOwnerID(userID).Exec(ctx); err != nil {
			return fmt.Errorf("creating batch: %w", err)
		}
		// One chunk, the whole file: the store joins the parts into it.
		final, err = tx.UploadSession.Create().
			SetID(finalID).SetOwnerID(userID).SetBatchID(batchID).
			SetFileName(cf.name).SetOriginalName(cf.FileName).
			SetMimeType(cf.mimeType).SetMediaType(uploadsession.MediaType(cf.mediaType)).
			SetTotalSize(cf.Size).SetNillableDurationSeconds(cf.DurationSeconds).
			SetStrategy(uploadsession.StrategyCHUNKED).SetChunkSize(cf.Size).SetTotalChunks(1).
			SetStorageKey(userID + "/" + finalID).SetExpiresAt(now.Add(s.cfg.SessionTTL)).
			SetStatus(StatusAssembling).SetTus(true).SetReceivedChunks(1).SetReceivedBytes(cf.Size).
			Save(ctx)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		for _, p := range parts {
			if err := s.store.Discard(context.WithoutCancel(ctx), p.Key); err != nil {
				s.log.WarnContext(ctx, "discarding a joined partial upload failed; the orphan sweep will", "key", p.Key, "err", err)
			}
		}
	}()
	ctx = context.WithoutCancel(ctx) // the parts are taken: see it through
	objectKey, err := s.joinParts(ctx, final, parts)
	if err != nil {
		return nil, nil, s.failJoined(ctx, final, err)
	}
	media, err := s.finishAssembly(ctx, final, objectKey)
	if err != nil {
		return nil, nil, err
	}
	sess, err := s.Session(ctx, userID, finalID)
	if err != nil {
		return nil, nil, err
	}
	return sess, media, nil
}

// receivedEveryChunk holds for a session whose chunks are all received.
func receivedEveryChunk() predicate.UploadSession {
	return func(sel *entsql.Selector) {
		sel.Where(entsql.ColumnsEQ(sel.C(uploadsession.FieldReceivedChunks), sel.C(uploadsession.FieldTotalChunks)))
	}
}

// joinParts has the store join the parts into final's one chunk, records
// it, assembles the object and checks its first bytes.
func (s *Service) joinParts(ctx context.Context, final *ent.UploadSession, parts []JoinPart) (string, error) {
	if err := s.store.Prepare(ctx, final.StorageKey, final.TotalSize); err != nil {
		return "", storageError("preparing storage", err)
	}
	crc, err := s.store.Join(ctx, final.StorageKey, final.TotalSize, parts)
	if err != nil {
		return "", storageError("joining the partial uploads", err)
	}
	out := chunkOutcome{state: uploadchunk.StateRECEIVED, size: final.TotalSize, crc: crc}
	if err := s.withTx(ctx, func(tx *ent.Tx) error {
		return s.moveChunk(ctx, tx, final.ID, 0, heldNone, out, true, s.now())
	}); err != nil {
		return "", err
	}
	objectKey, err := s.store.Assemble(ctx, final.StorageKey, 1, final.TotalSize)
	if err != nil {
		return "", storageError("assembling upload", err)
	}
	obj, err := s.store.Open(ctx, objectKey)
	if err != nil {
		return "", storageError("reading the joined file", err)
	}
	head := make([]byte, min(int64(sniff.HeadSize), final.TotalSize))
	_, err = io.ReadFull(obj, head)
	obj.Close()
	if err != nil {
		return "", storageError("reading the joined file", err)
	}
	if !sniff.Matches(final.MimeType, head) {
		if derr := s.store.Delete(ctx, objectKey); derr != nil {
			s.log.WarnContext(ctx, "deleting a refused joined file failed; the orphan sweep will", "upload_id", final.ID, "err", derr)
		}
		detected := sniff.Detect(head)
		if detected == "" {
			detected = "an unrecognised format"
		}
		return "", Errorf(CodeTypeMismatch, "the file was declared as %s but its first bytes are %s", final.MimeType, detected)
	}
	return objectKey, nil
}

// failJoined fails a final upload whose join failed, giving its quota
// back and freeing its storage, and returns cause.
func (s *Service) failJoined(ctx context.Context, final *ent.UploadSession, cause error) error {
	msg := ErrorMessage(cause)
	err := s.withTx(ctx, func(tx *ent.Tx) error {
		n, err := tx.UploadSession.Update().
			Where(uploadsession.ID(final.ID), uploadsession.StatusEQ(StatusAssembling)).
			SetStatus(StatusFailed).SetFinishedAt(s.now()).SetError(msg).AddVersion(1).Save(ctx)
		if err != nil || n == 0 {
			return err
		}
		return releaseQuota(ctx, tx, final.OwnerID, final.TotalSize)
	})
	if err != nil {
		s.log.ErrorContext(ctx, "failing a joined upload failed; the sweeper will expire it", "upload_id", final.ID, "err", err)
	}
	s.freeBytes(ctx, final)
	s.publishCurrent(ctx, final.ID)
	return cause
}

// Offset is how many bytes of a tus upload are stored, from the first:
// where the next PATCH must start. It equals TotalSize once every byte is
// stored.
func (sess *Session) Offset() int64 {
	return min(sess.TotalSize, int64(sess.UploadSession.ReceivedChunks)*sess.ChunkSize) + sess.TailBytes
}

// AppendOptions describe one PATCH's body.
type AppendOptions struct {
	// ContentLength is the body's declared length, or -1 if unknown.
	ContentLength int64
	// Expect are the checksums the client declared for the whole body
	// (tus's Upload-Checksum). With one, the body is all or nothing: if
	// it does not match, nothing of it is kept and Append returns
	// CHECKSUM_MISMATCH.
	Expect []Digest
	// Admit, if set, is asked before a byte is read, as for a chunk.
	Admit Admitter
}
