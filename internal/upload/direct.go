package upload

import (
	"context"
	"errors"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/uploadchunk"
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
	p, err := s.recordChunk(ctx, sess, ref, out)
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
