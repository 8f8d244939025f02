package upload

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	entsql "entgo.io/ent/dialect/sql"
	"golang.org/x/sync/semaphore"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/mediafile"
	"github.com/spoolhq/spool/ent/uploadchunk"
	"github.com/spoolhq/spool/ent/uploadsession"
	"github.com/spoolhq/spool/internal/media"
)

// ProcessMedia checks a completed file: it computes the content hash
// (reading the stored object, never holding it in memory), compares each
// chunk with its recorded CRC32C and the whole with the declared
// SHA-256, derives what the file's type allows, then saves the media
// READY or FAILED with its upload's version bumped, in one transaction,
// and publishes the upload's progress. It runs as a job (internal/jobs),
// so it is idempotent: a media file that is no longer
// PROCESSING, or deleted, is left alone.
//
// The file's bytes are read, hashed and derived from under one of slots,
// processing's CPU; its rows are read and its outcome
// saved outside them, so a replica may run more processing jobs than
// slots and overlap their database round trips (docs/DESIGN.md, "Jobs").
// It waits at most processingSlotWait for a slot, then returns
// ErrProcessingBusy.
//
// It returns nil when the media file is done with: saved READY, saved
// FAILED for a problem no retry can fix (the content differs from what
// was declared or sent), or already settled by another run (its upload's
// progress is then published again, as completedMedia does). It returns
// an error when a retry may succeed (the store or the database failed);
// the caller retries, and on its last attempt calls FailProcessing.
func (s *Service) ProcessMedia(ctx context.Context, mediaID string, slots *semaphore.Weighted) error {
	m, err := s.db.MediaFile.Query().Where(mediafile.ID(mediaID)).WithUpload().Only(ctx)
	if ent.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("loading media %s to process: %w", mediaID, err)
	}
	if m.Status != mediafile.StatusPROCESSING || m.DeletedAt != nil {
		// Settled by an earlier run, which may not have published: the
		// database can fail as a commit goes through, and that run's
		// error is what runs this one. A subscriber drops an event whose
		// version it has seen, so the upload's progress is said again.
		if m.UploadID != nil {
			s.publishCurrent(context.WithoutCancel(ctx), *m.UploadID)
		}
		return nil
	}
	var chunks []*ent.UploadChunk
	if m.UploadID != nil {
		chunks, err = s.db.UploadChunk.Query().Where(uploadchunk.SessionID(*m.UploadID)).
			Order(uploadchunk.ByIndex()).All(ctx)
		if err != nil {
			return fmt.Errorf("loading the chunks of media %s: %w", mediaID, err)
		}
	}
	r, err := s.processBytesInSlot(ctx, m, chunks, slots)
	if err != nil {
		return err
	}
	return s.saveProcessed(ctx, m, r)
}

// processingSlotWait is the longest ProcessMedia waits for a processing
// slot. A job's whole run counts against its timeout and River's rescue
// of stuck jobs, so a job that finds the slots taken by large files goes
// back to the queue instead of waiting out its time there.
const processingSlotWait = time.Minute

// ErrProcessingBusy is ProcessMedia's answer when every processing slot
// stayed taken while it waited: nothing was done, and the job should run
// again later without counting an attempt.
var ErrProcessingBusy = errors.New("every processing slot is busy")

// processBytesInSlot is processBytes under one of slots, taken within
// s.slotWait (else ErrProcessingBusy) and given back however it ends: a
// slot lost to a panic in a decoder would stop processing on the replica
// for good.
func (s *Service) processBytesInSlot(ctx context.Context, m *ent.MediaFile, chunks []*ent.UploadChunk, slots *semaphore.Weighted) (processed, error) {
	wait, cancel := context.WithTimeout(ctx, s.slotWait)
	err := slots.Acquire(wait, 1)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return processed{}, ctx.Err()
		}
		return processed{}, ErrProcessingBusy
	}
	defer slots.Release(1)
	return s.processBytes(ctx, m, chunks)
}

// processBytes is ProcessMedia's work on the file's bytes: a local copy
// (a GCS object downloaded once, a local file read in place), its hash
// and chunks checked, and, when READY and not a copy of a file already
// processed, what its type allows derived and stored. The work directory
// is named after the media, so a run after a crash removes what the
// killed run left there.
func (s *Service) processBytes(ctx context.Context, m *ent.MediaFile, chunks []*ent.UploadChunk) (processed, error) {
	work := filepath.Join(cmp.Or(s.cfg.WorkDir, os.TempDir()), "spool-process-"+m.ID)
	if err := os.RemoveAll(work); err != nil {
		return processed{}, fmt.Errorf("clearing the work directory of media %s: %w", m.ID, err)
	}
	if err := os.Mkdir(work, 0o700); err != nil {
		return processed{}, fmt.Errorf("making a work directory for media %s: %w", m.ID, err)
	}
	defer os.RemoveAll(work)
	src, err := s.localCopy(ctx, m.StorageKey, work)
	if err != nil {
		return processed{}, fmt.Errorf("reading media %s: %w", m.ID, err)
	}
	sum, badChunk, err := verifyFile(ctx, src, chunks)
	if err != nil {
		return processed{}, fmt.Errorf("hashing media %s: %w", m.ID, err)
	}
	r := processed{status: mediafile.StatusREADY, sum: sum}
	switch up := m.Edges.Upload; {
	case badChunk >= 0:
		r.status, r.problem = mediafile.StatusFAILED, fmt.Sprintf("chunk %d changed after it was received; upload the file again", badChunk)
	case up != nil && up.Sha256 != nil && *up.Sha256 != sum:
		r.status, r.problem = mediafile.StatusFAILED, fmt.Sprintf("the content's SHA-256 is %s, the client declared %s", sum, *up.Sha256)
	}
	if r.status != mediafile.StatusREADY {
		return r, nil
	}
	copied, err := s.hasReadyCopy(ctx, m, sum)
	if err != nil {
		return processed{}, err
	}
	if copied {
		// saveProcessed's shareDuplicate gives it the copy's
		// derivatives: making its own would be wasted work.
		return r, nil
	}
	d, err := s.derive(ctx, m, src, work)
	var bad *badFileError
	switch {
	case errors.As(err, &bad):
		r.status, r.problem = mediafile.StatusFAILED, bad.problem
	case err != nil:
		return processed{}, fmt.Errorf("deriving from media %s: %w", m.ID, err)
	default:
		r.derived = d
	}
	return r, nil
}

// processed is the outcome of one processing run.
type processed struct {
	status  mediafile.Status
	sum     string // the content's SHA-256, hex; empty when unknown
	problem string // why FAILED, for the client
	derived derivation
}

// saveProcessed records a processing outcome on a media file still
// PROCESSING, bumps its upload's version in the same transaction and
// publishes the upload's progress. A run that finds the media already
// settled saves and publishes nothing.
func (s *Service) saveProcessed(ctx context.Context, m *ent.MediaFile, r processed) error {
	changed := false
	// The upload's row and the file's, as the transaction left them.
	var upload *ent.UploadSession
	var saved *ent.MediaFile
	err := s.withJobTx(ctx, func(tx *ent.Tx, jobs jobTx) error {
		upd := tx.MediaFile.Update().
			Where(mediafile.ID(m.ID), mediafile.StatusEQ(mediafile.StatusPROCESSING)).
			SetStatus(r.status).SetProcessedAt(s.now())
		switch {
		case r.sum != "":
			upd = upd.SetContentHash(r.sum)
		case r.status == mediafile.StatusFAILED:
			// Failed before it read the file: the hash Complete stored
			// was only declared, and nothing checked it.
			upd = upd.ClearContentHash()
		}
		if r.problem != "" {
			upd = upd.SetProcessingError(r.problem)
		}
		n, err := r.derived.apply(upd).Save(ctx)
		if err != nil || n == 0 {
			return err // n == 0: another run got there first, and publishes
		}
		changed = true
		if upload, err = s.bumpUploadVersion(ctx, tx, m.UploadID); err != nil {
			return err
		}
		if d := r.derived; d.storageKey != "" {
			// The faststart copy is what is stored now: the quota
			// follows its size (a few bytes either way, never refused),
			// and the original goes.
			if err := releaseQuota(ctx, tx, m.OwnerID, m.FileSize-d.size); err != nil {
				return err
			}
			note := "the original of " + m.ID + ", replaced by its faststart copy"
			if err := s.retireBytes(ctx, tx, jobs, m, m.StorageKey, nil, note); err != nil {
				return err
			}
		}
		// Read once for dedup's look for a copy and for the event: a
		// file deleted while it was processed is saved all the same, and
		// its upload's progress then names no media (publishSession).
		if saved, err = tx.MediaFile.Get(ctx, m.ID); err != nil {
			return fmt.Errorf("loading media %s: %w", m.ID, err)
		}
		return s.shareDuplicate(ctx, tx, jobs, saved) // dedup.go: share a READY copy's bytes
	})
	if err != nil {
		return fmt.Errorf("saving processed media %s: %w", m.ID, err)
	}
	if !changed {
		return nil
	}
	s.log.InfoContext(ctx, "media processed", "media_id", m.ID, "status", r.status)
	if upload != nil {
		s.publishSession(ctx, upload, saved)
	}
	return nil
}

// retireBytes records stored bytes that m no longer names (key and its
// thumbnails) as a deleted media row of m's owner, and queues its purge
// in tx: the purge (keysToPurge) removes them unless another file
// shares them, and a crash after the commit leaves the job, not orphans.
// note says, for an operator reading the row, where the bytes came from.
func (s *Service) retireBytes(ctx context.Context, tx *ent.Tx, jobs jobTx, m *ent.MediaFile, key string, thumbnails []media.Thumbnail, note string) error {
	create := tx.MediaFile.Create().
		SetOwnerID(m.OwnerID).SetFileName(m.FileName).SetMimeType(m.MimeType).
		SetMediaType(m.MediaType).SetFileSize(m.FileSize).SetStorageKey(key).
		SetStatus(mediafile.StatusREADY).SetNillableContentHash(m.ContentHash).
		SetCreatedAt(s.now()).SetDeletedAt(s.now()).
		SetMetadata(map[string]any{"retired": note})
	if thumbnails != nil {
		create.SetThumbnails(thumbnails)
	}
	retired, err := create.Save(ctx)
	if err != nil {
		return fmt.Errorf("recording the retired bytes of media %s: %w", m.ID, err)
	}
	return jobs.purge(ctx, retired.ID)
}

// FailProcessing ends the processing of a media file still PROCESSING
// as FAILED, with problem as its processingError (written for the
// client), and publishes it. The job queue calls it when ProcessMedia
// failed on its last attempt. It returns an error when the database
// fails.
func (s *Service) FailProcessing(ctx context.Context, mediaID, problem string) error {
	m, err := s.db.MediaFile.Get(ctx, mediaID)
	if ent.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("loading media %s: %w", mediaID, err)
	}
	return s.saveProcessed(ctx, m, processed{status: mediafile.StatusFAILED, problem: problem})
}

// bumpUploadVersion makes a change of an upload's media (its processing
// result, its deletion) a change of the upload's progress: subscribers
// drop an event whose version is not newer than what they have. Called in
// the transaction that changes the media; the media row is locked first,
// then the session's, in both callers. It returns the upload's row as
// the bump left it (nil for none), for the event the caller publishes
// once it commits.
func (s *Service) bumpUploadVersion(ctx context.Context, tx *ent.Tx, uploadID *string) (*ent.UploadSession, error) {
	if uploadID == nil {
		return nil, nil
	}
	upload, _, err := updateSession(ctx, tx, entsql.Dialect(s.dialect).Update(uploadsession.Table).
		Add(uploadsession.FieldVersion, 1).Set(uploadsession.FieldUpdatedAt, s.now()).
		Where(entsql.EQ(uploadsession.FieldID, *uploadID)))
	if err != nil {
		return nil, fmt.Errorf("bumping the version of upload %s: %w", *uploadID, err)
	}
	return upload, nil
}

// verifyFile reads the local copy of a stored object (name) once,
// computing its SHA-256 and checking each chunk's bytes against the
// CRC32C recorded when the chunk was received. badChunk is the first
// chunk that differs, or -1. This catches a chunk overwritten by a late
// duplicate send after complete() judged the upload whole (invariant 4).
func verifyFile(ctx context.Context, name string, chunks []*ent.UploadChunk) (sum string, badChunk int, err error) {
	obj, err := os.Open(name)
	if err != nil {
		return "", -1, err
	}
	defer obj.Close()
	whole := sha256.New()
	badChunk = -1
	table := crc32.MakeTable(crc32.Castagnoli)
	src := ctxReader{ctx, obj} // a stopping replica stops hashing
	r := io.TeeReader(src, whole)
	// One buffer for the whole file: io.CopyN allocates one per call, 4
	// MiB of garbage for a 1 GiB file in 8 MiB chunks, which raised
	// processing's peak RSS by about a megabyte (docs/BENCHMARKS.md).
	buf := make([]byte, verifyReadSize)
	for _, c := range chunks {
		part := crc32.New(table)
		n, err := io.CopyBuffer(part, io.LimitReader(r, c.Size), buf)
		if err == nil && n < c.Size {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return "", -1, fmt.Errorf("reading chunk %d: %w", c.Index, err)
		}
		if badChunk < 0 && int64(part.Sum32()) != c.Crc32c {
			badChunk = c.Index
		}
	}
	if _, err := io.CopyBuffer(whole, src, buf); err != nil {
		return "", -1, err
	}
	return hex.EncodeToString(whole.Sum(nil)), badChunk, nil
}

// verifyReadSize is how much of a stored file verifyFile reads at a time:
// 128 KiB took 9% less CPU than io.Copy's 32 KiB on a 512 MiB file, and
// 256 KiB no less than 128 (SHA-256 is most of it).
const verifyReadSize = 128 << 10

// ctxReader reads r until ctx is done: a store's reader (a local file)
// may not watch the context itself.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
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
// to the quota unless another of the caller's files shares them (then
// that one keeps them: dedup.go), and queues the removal of the stored
// bytes (PurgeMedia) in the same transaction. Its upload's progress then
// names no media, and is published so that subscribers waiting for the
// media's processing are done. It returns NOT_FOUND for a file that is
// missing, someone else's or already deleted.
func (s *Service) DeleteMedia(ctx context.Context, userID, id string) error {
	var m *ent.MediaFile
	var upload *ent.UploadSession // as the transaction left it
	err := s.withJobTx(ctx, func(tx *ent.Tx, jobs jobTx) error {
		// By primary key alone, the owner compared once the row is read
		// back: someone else's file rolls the delete back. Named in the
		// UPDATE, the owner's index could be planned for it
		// (ownedSession says why).
		n, err := tx.MediaFile.Update().
			Where(mediafile.ID(id), mediafile.DeletedAtIsNil()).
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
		if m.OwnerID != userID {
			return errNotFound("media file", id)
		}
		if upload, err = s.bumpUploadVersion(ctx, tx, m.UploadID); err != nil {
			return err
		}
		if err := releaseStoredBytes(ctx, tx, m); err != nil { // dedup.go: only the last reference gives bytes back
			return err
		}
		return jobs.purge(ctx, id)
	})
	if err != nil {
		return err
	}
	s.log.InfoContext(ctx, "media deleted", "media_id", id)
	if upload != nil {
		s.publishSession(context.WithoutCancel(ctx), upload, nil) // no media any more
	}
	return nil
}

// PurgeMedia removes the stored bytes of a deleted media file and notes
// that it did (purged_at). It runs as a job; a media file not deleted,
// or already purged, is left alone. It returns an error when the store
// or the database fails, for the job to retry.
func (s *Service) PurgeMedia(ctx context.Context, mediaID string) error {
	m, err := s.db.MediaFile.Get(ctx, mediaID)
	if ent.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("loading media %s to purge: %w", mediaID, err)
	}
	if m.DeletedAt == nil || m.PurgedAt != nil {
		return nil
	}
	keys, err := s.keysToPurge(ctx, m) // dedup.go: none while another file shares them
	if err != nil {
		return fmt.Errorf("finding the bytes of deleted media %s: %w", mediaID, err)
	}
	for _, key := range keys {
		if err := s.store.Delete(ctx, key); err != nil && !errors.Is(err, ErrNotExist) {
			return fmt.Errorf("removing the bytes of deleted media %s: %w", mediaID, err)
		}
	}
	if err := s.db.MediaFile.UpdateOneID(m.ID).SetPurgedAt(s.now()).Exec(ctx); err != nil {
		return fmt.Errorf("noting the removed bytes of media %s: %w", mediaID, err)
	}
	s.log.InfoContext(ctx, "deleted media's bytes removed", "media_id", mediaID)
	return nil
}

// Node returns the caller's object with a Relay global id. Only media
// files are nodes; anything else, or someone else's, is NOT_FOUND.
func (s *Service) Node(ctx context.Context, userID, id string) (ent.Noder, error) {
	if !strings.HasPrefix(id, "med_") {
		return nil, errNotFound("node", id)
	}
	return s.Media(ctx, userID, id)
}
