package upload

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/mediafile"
	"github.com/spoolhq/spool/ent/uploadchunk"
	"github.com/spoolhq/spool/internal/media"
)

// process checks a completed file in the background: it computes the
// content hash (reading the stored object, never holding it in memory),
// compares it with the declared SHA-256, marks the media READY or FAILED
// and publishes the upload's progress with that result. It is idempotent,
// so the sweeper can rerun it after a crash or a storage failure.
func (s *Service) process(ctx context.Context, mediaID string) {
	m, err := s.db.MediaFile.Query().Where(mediafile.ID(mediaID)).WithUpload().Only(ctx)
	if err != nil {
		s.log.Warn("loading media to process failed", "media_id", mediaID, "err", err)
		return
	}
	if m.Status != mediafile.StatusPROCESSING {
		return
	}
	var chunks []*ent.UploadChunk
	if m.UploadID != nil {
		chunks, err = s.db.UploadChunk.Query().Where(uploadchunk.SessionID(*m.UploadID)).
			Order(uploadchunk.ByIndex()).All(ctx)
		if err != nil {
			s.log.Warn("loading chunks to verify failed; will retry", "media_id", mediaID, "err", err)
			return
		}
	}
	sum, badChunk, err := s.verifyObject(ctx, m.StorageKey, chunks)
	if err != nil {
		s.log.Warn("hashing media failed; will retry", "media_id", mediaID, "err", err)
		return
	}
	status, problem := mediafile.StatusREADY, ""
	switch up := m.Edges.Upload; {
	case badChunk >= 0:
		status, problem = mediafile.StatusFAILED, fmt.Sprintf("chunk %d changed after it was received; upload the file again", badChunk)
	case up != nil && up.Sha256 != nil && *up.Sha256 != sum:
		status, problem = mediafile.StatusFAILED, fmt.Sprintf("the content's SHA-256 is %s, the client declared %s", sum, *up.Sha256)
	}
	changed := false
	err = s.withTx(ctx, func(tx *ent.Tx) error {
		upd := tx.MediaFile.Update().
			Where(mediafile.ID(mediaID), mediafile.StatusEQ(mediafile.StatusPROCESSING)).
			SetStatus(status).SetContentHash(sum).SetProcessedAt(s.now())
		if problem != "" {
			upd = upd.SetProcessingError(problem)
		}
		n, err := upd.Save(ctx)
		if err != nil || n == 0 {
			return err // n == 0: another run got there first, and publishes
		}
		changed = true
		if err := bumpUploadVersion(ctx, tx, m.UploadID); err != nil {
			return err
		}
		return s.shareDuplicate(ctx, tx, mediaID) // dedup.go: share a READY copy's bytes
	})
	if err != nil {
		s.log.Warn("saving processed media failed; will retry", "media_id", mediaID, "err", err)
		return
	}
	if !changed {
		return
	}
	s.log.Info("media processed", "media_id", mediaID, "status", status)
	if m.UploadID != nil {
		s.publishCurrent(ctx, *m.UploadID)
	}
}

// bumpUploadVersion makes a change of an upload's media (its processing
// result, its deletion) a change of the upload's progress: subscribers
// drop an event whose version is not newer than what they have. Called in
// the transaction that changes the media; the media row is locked first,
// then the session's, in both callers.
func bumpUploadVersion(ctx context.Context, tx *ent.Tx, uploadID *string) error {
	if uploadID == nil {
		return nil
	}
	if err := tx.UploadSession.UpdateOneID(*uploadID).AddVersion(1).Exec(ctx); err != nil && !ent.IsNotFound(err) {
		return fmt.Errorf("bumping the version of upload %s: %w", *uploadID, err)
	}
	return nil
}

// verifyObject reads a stored object once, computing its SHA-256 and
// checking each chunk's bytes against the CRC32C recorded when the chunk
// was received. badChunk is the first chunk that differs, or -1. This
// catches a chunk overwritten by a late duplicate send after complete()
// judged the upload whole (invariant 4).
func (s *Service) verifyObject(ctx context.Context, key string, chunks []*ent.UploadChunk) (sum string, badChunk int, err error) {
	obj, err := s.store.Open(ctx, key)
	if err != nil {
		return "", -1, err
	}
	defer obj.Close()
	whole := sha256.New()
	badChunk = -1
	table := crc32.MakeTable(crc32.Castagnoli)
	r := io.TeeReader(obj, whole)
	for _, c := range chunks {
		part := crc32.New(table)
		if _, err := io.CopyN(part, r, c.Size); err != nil {
			return "", -1, fmt.Errorf("reading chunk %d: %w", c.Index, err)
		}
		if badChunk < 0 && int64(part.Sum32()) != c.Crc32c {
			badChunk = c.Index
		}
	}
	if _, err := io.Copy(whole, obj); err != nil {
		return "", -1, err
	}
	return hex.EncodeToString(whole.Sum(nil)), badChunk, nil
}

// OpenMedia opens a media file's bytes for download. The caller has
// checked a signature binding the id, so there is no owner check. It
// returns NOT_FOUND for a missing or deleted file.
func (s *Service) OpenMedia(ctx context.Context, mediaID string) (*ent.MediaFile, Object, error) {
	m, err := s.db.MediaFile.Query().Where(mediafile.ID(mediaID), mediafile.DeletedAtIsNil()).Only(ctx)
	if ent.IsNotFound(err) {
		return nil, nil, errNotFound("media file", mediaID)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("loading media %s: %w", mediaID, err)
	}
	obj, err := s.store.Open(ctx, m.StorageKey)
	if errors.Is(err, ErrNotExist) {
		return nil, nil, errNotFound("media file", mediaID)
	}
	if err != nil {
		return nil, nil, storageError("opening media", err)
	}
	return m, obj, nil
}

// OpenThumbnail opens the media file's thumbnail number n, as OpenMedia
// opens its bytes. It returns NOT_FOUND for a missing or deleted file or
// a thumbnail it does not have.
func (s *Service) OpenThumbnail(ctx context.Context, mediaID string, n int) (media.Thumbnail, Object, error) {
	m, err := s.db.MediaFile.Query().Where(mediafile.ID(mediaID), mediafile.DeletedAtIsNil()).Only(ctx)
	if ent.IsNotFound(err) {
		return media.Thumbnail{}, nil, errNotFound("media file", mediaID)
	}
	if err != nil {
		return media.Thumbnail{}, nil, fmt.Errorf("loading media %s: %w", mediaID, err)
	}
	if n < 0 || n >= len(m.Thumbnails) {
		return media.Thumbnail{}, nil, Errorf(CodeNotFound, "media file %s has no thumbnail %d", mediaID, n)
	}
	t := m.Thumbnails[n]
	obj, err := s.store.Open(ctx, t.Key)
	if errors.Is(err, ErrNotExist) {
		return media.Thumbnail{}, nil, Errorf(CodeNotFound, "media file %s has no thumbnail %d", mediaID, n)
	}
	if err != nil {
		return media.Thumbnail{}, nil, storageError("opening a thumbnail", err)
	}
	return t, obj, nil
}

// DeleteMedia soft-deletes the caller's media file, gives its bytes back
// to the quota and removes the stored object, unless another of the
// caller's files shares them (then that one keeps them: dedup.go). Its
// upload's progress then names no media, and is published so that
// subscribers waiting for the media's processing are done. It returns NOT_FOUND for a file that is
// missing, someone else's or already deleted.
func (s *Service) DeleteMedia(ctx context.Context, userID, id string) error {
	var m *ent.MediaFile
	err := s.withTx(ctx, func(tx *ent.Tx) error {
		n, err := tx.MediaFile.Update().
			Where(mediafile.ID(id), mediafile.OwnerID(userID), mediafile.DeletedAtIsNil()).
			SetDeletedAt(s.now()).Save(ctx)
		if err != nil {
			return fmt.Errorf("deleting media: %w", err)
		}
		if n == 0 {
			return errNotFound("media file", id)
		}
		if m, err = tx.MediaFile.Get(ctx, id); err != nil {
			return err
		}
		if err := bumpUploadVersion(ctx, tx, m.UploadID); err != nil {
			return err
		}
		return releaseStoredBytes(ctx, tx, m) // dedup.go: only the last reference gives bytes back
	})
	if err != nil {
		return err
	}
	s.log.Info("media deleted", "media_id", id)
	if m.UploadID != nil {
		s.publishCurrent(context.WithoutCancel(ctx), *m.UploadID)
	}
	s.goBackground(func(ctx context.Context) { s.deleteObject(ctx, m) })
	return nil
}

func (s *Service) deleteObject(ctx context.Context, m *ent.MediaFile) {
	keys, err := s.keysToPurge(ctx, m) // dedup.go: none while another file shares them
	if err != nil {
		s.log.Warn("finding deleted media's bytes failed; the sweeper will retry", "media_id", m.ID, "err", err)
		return
	}
	for _, key := range keys {
		if err := s.store.Delete(ctx, key); err != nil {
			s.log.Warn("removing deleted media's bytes failed; the sweeper will retry", "media_id", m.ID, "key", key, "err", err)
			return
		}
	}
	if err := s.db.MediaFile.UpdateOneID(m.ID).SetPurgedAt(s.now()).Exec(ctx); err != nil {
		s.log.Warn("noting removed media bytes failed", "media_id", m.ID, "err", err)
	}
}

// Node returns the caller's object with a Relay global id. Only media
// files are nodes; anything else, or someone else's, is NOT_FOUND.
func (s *Service) Node(ctx context.Context, userID, id string) (ent.Noder, error) {
	if !strings.HasPrefix(id, "med_") {
		return nil, errNotFound("node", id)
	}
	return s.Media(ctx, userID, id)
}
