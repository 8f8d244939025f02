package upload

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/uploadchunk"
	"github.com/spoolhq/spool/ent/uploadsession"
	"github.com/spoolhq/spool/internal/sniff"
)

// syncDirectChunk records what the store holds for a chunk a client sent
// to it directly (direct mode), judged as the data plane judges a chunk:
// its size, and for chunk 0 its type. It reports whether the chunk is now
// RECEIVED; a chunk the store does not hold is CHUNK_MISSING.
func (s *Service) syncDirectChunk(ctx context.Context, sess *ent.UploadSession, ref ChunkRef) (bool, error) {
	info, err := s.direct.StatChunk(ctx, sess.StorageKey, ref)
	if errors.Is(err, ErrNotExist) {
		return false, Errorf(CodeChunkMissing, "chunk %d of upload %s is not in storage; PUT it to its URL first", ref.Index, sess.ID)
	}
	if err != nil {
		return false, storageError("checking a chunk in storage", err)
	}
	out := chunkOutcome{state: uploadchunk.StateRECEIVED, size: info.Size, crc: info.CRC32C}
	switch {
	case info.Size > ref.Size:
		out = failed(CodeChunkTooLarge, false, "chunk %d must be %d bytes, storage holds %d", ref.Index, ref.Size, info.Size)
	case info.Size < ref.Size:
		out = failed(CodeChunkTooSmall, false, "chunk %d must be %d bytes, storage holds %d", ref.Index, ref.Size, info.Size)
	case ref.Index == 0:
		head, err := s.direct.ReadChunkHead(ctx, sess.StorageKey, ref, sniff.HeadSize)
		if err != nil {
			return false, storageError("reading a chunk's first bytes", err)
		}
		if !sniff.Matches(sess.MimeType, head) {
			out = failed(CodeTypeMismatch, false, "the file was declared as %s but its first bytes are not", sess.MimeType)
		}
	}
	p, err := s.recordChunk(ctx, sess, ref, heldUnknown, out)
	if err != nil {
		return false, err
	}
	s.publish(ctx, p)
	return out.state == uploadchunk.StateRECEIVED, out.err()
}

// syncDirectChunks records every chunk the store holds that the database
// does not yet count, before complete() or retry() judge the upload. A
// chunk the store does not hold is simply still missing.
func (s *Service) syncDirectChunks(ctx context.Context, sess *ent.UploadSession) error {
	if s.direct == nil {
		return nil
	}
	chunks, err := chunksOf(ctx, s.db, sess.ID)
	if err != nil {
		return err
	}
	for _, i := range missingIndexes(sess.TotalChunks, chunks) {
		ref, _ := chunkRef(sess.TotalSize, sess.ChunkSize, sess.TotalChunks, i)
		_, err := s.syncDirectChunk(ctx, sess, ref)
		var coded *Error
		if err != nil && !errors.As(err, &coded) {
			return err // storage trouble; judged chunks are already recorded
		}
	}
	return nil
}

// resumableChunkURL is where a direct SINGLE upload's bytes go: the
// store's resumable session for it, from the first byte the store lacks.
// The session is opened on first need and kept on the upload, for the
// browser origin of the request (a request from another origin gets a
// session of its own, since the store answers CORS for one origin per
// session). A session the store has forgotten, or one already finished
// (the chunk is being sent again), is replaced by a new one.
func (s *Service) resumableChunkURL(ctx context.Context, sess *ent.UploadSession, ref ChunkRef, exp time.Time) (ChunkURL, error) {
	origin := originFrom(ctx)
	sessionURL, offset := "", int64(0)
	if sess.ResumableURL != nil && (origin == "" || origin == deref(sess.ResumableOrigin)) {
		persisted, done, err := s.resumable.ResumableOffset(ctx, *sess.ResumableURL, ref.Size)
		switch {
		case errors.Is(err, ErrNotExist):
			// Expired or cancelled in the store: open another.
		case err != nil:
			return ChunkURL{}, storageError("asking a resumable session how far it got", err)
		case done || persisted >= ref.Size:
			// The chunk is whole in the store, and asked for again: the
			// new session's bytes will replace it, so it no longer counts.
			if _, err := s.invalidateForResend(ctx, sess.ID, ref); err != nil {
				return ChunkURL{}, err
			}
		default:
			sessionURL, offset = *sess.ResumableURL, persisted
		}
	}
	if sessionURL == "" {
		var err error
		if sessionURL, err = s.startResumable(ctx, sess, ref, origin); err != nil {
			return ChunkURL{}, err
		}
	}
	return ChunkURL{
		ChunkIndex: ref.Index,
		URL:        sessionURL,
		Method:     "PUT",
		Headers:    []Header{{Name: "Content-Range", Value: fmt.Sprintf("bytes %d-%d/%d", offset, ref.Size-1, ref.Size)}},
		Offset:     ref.Offset + offset,
		Size:       ref.Size - offset,
		ExpiresAt:  exp,
	}, nil
}

// startResumable opens a resumable session for the chunk and keeps its
// URL on the upload, if the upload still takes chunks.
func (s *Service) startResumable(ctx context.Context, sess *ent.UploadSession, ref ChunkRef, origin string) (string, error) {
	sessionURL, err := s.resumable.StartResumable(ctx, sess.StorageKey, ref, origin)
	if errors.Is(err, ErrNotExist) {
		return "", s.stoppedTaking(ctx, sess.ID, "chunks")
	}
	if err != nil {
		return "", storageError("opening a resumable session", err)
	}
	update := s.db.UploadSession.Update().
		Where(uploadsession.ID(sess.ID), uploadsession.StatusIn(activeStatuses...), uploadsession.ExpiresAtGT(s.now())).
		SetResumableURL(sessionURL)
	if origin != "" {
		update.SetResumableOrigin(origin)
	} else {
		update.ClearResumableOrigin()
	}
	n, err := update.Save(ctx)
	if err != nil {
		return "", fmt.Errorf("keeping the resumable session of %s: %w", sess.ID, err)
	}
	if n == 0 {
		return "", Errorf(CodeAlreadyFinished, "upload %s stopped taking chunks", sess.ID)
	}
	return sessionURL, nil
}

// errJudgeAgain sends complete() back to judging the upload: what the
// store holds changed since the chunk was recorded.
var errJudgeAgain = errors.New("the stored chunk changed; judge again")

// recheckResumable makes sure the object of a direct SINGLE upload is
// still the one recorded, size and CRC32C, right before it is assembled:
// a client holding the session URL (or a new session) may have replaced
// it since it was checked. A changed object is judged again (errJudgeAgain
// once recorded); a vanished one no longer counts and makes complete
// INCOMPLETE.
func (s *Service) recheckResumable(ctx context.Context, sess *ent.UploadSession) error {
	ref, _ := chunkRef(sess.TotalSize, sess.ChunkSize, sess.TotalChunks, 0)
	row, err := s.db.UploadChunk.Query().Where(uploadchunk.SessionID(sess.ID), uploadchunk.Index(0)).Only(ctx)
	if err != nil {
		return fmt.Errorf("reading chunk: %w", err)
	}
	info, err := s.direct.StatChunk(ctx, sess.StorageKey, ref)
	switch {
	case errors.Is(err, ErrNotExist):
		if _, err := s.invalidateForResend(ctx, sess.ID, ref); err != nil {
			return err
		}
		return Errorf(CodeIncomplete, "upload %s: its file is no longer in storage; send it again", sess.ID)
	case err != nil:
		return storageError("checking a chunk in storage", err)
	case info.Size == row.Size && int64(info.CRC32C) == row.Crc32c:
		return nil
	}
	s.log.InfoContext(ctx, "stored file changed since it was checked", "upload_id", sess.ID, "bytes", info.Size)
	if _, err := s.syncDirectChunk(ctx, sess, ref); err != nil && ErrorCode(err) == CodeInternal {
		return err
	}
	return errJudgeAgain
}
