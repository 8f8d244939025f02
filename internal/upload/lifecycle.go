package upload

import (
	"context"
	"errors"
	"fmt"

	entsql "entgo.io/ent/dialect/sql"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/mediafile"
	"github.com/spoolhq/spool/ent/uploadsession"
)

// Terminal statuses never change again.
func isTerminal(st Status) bool {
	switch st {
	case StatusCompleted, StatusFailed, StatusCancelled, StatusExpired:
		return true
	}
	return false
}

// checkActive returns nil if sess still takes chunks, else
// ALREADY_FINISHED or (expiring it on the way) SESSION_EXPIRED.
func (s *Service) checkActive(ctx context.Context, sess *ent.UploadSession) error {
	switch {
	case sess.Status == StatusExpired:
		return Errorf(CodeSessionExpired, "upload %s expired at %s; start a new one", sess.ID, sess.ExpiresAt.UTC().Format("2006-01-02T15:04:05Z"))
	case isTerminal(sess.Status) || sess.Status == StatusAssembling:
		return Errorf(CodeAlreadyFinished, "upload %s is %s", sess.ID, sess.Status)
	case !s.now().Before(sess.ExpiresAt):
		s.expire(ctx, sess.ID)
		return Errorf(CodeSessionExpired, "upload %s expired at %s; start a new one", sess.ID, sess.ExpiresAt.UTC().Format("2006-01-02T15:04:05Z"))
	}
	return nil
}

// stoppedTaking is the error of an upload found to take no more chunks
// (or bytes: what) midway through a request, when its file or row was
// gone or its receipt's condition failed. The row is read again so that
// the answer says what happened, as checkActive's does: the user may
// have cancelled the upload elsewhere, or its time run out meanwhile
// (SESSION_EXPIRED, not ALREADY_FINISHED), and "no longer takes chunks"
// left them guessing.
func (s *Service) stoppedTaking(ctx context.Context, id, what string) error {
	ctx = context.WithoutCancel(ctx)
	row, err := s.db.UploadSession.Query().Where(uploadsession.ID(id)).
		Select(uploadsession.FieldStatus, uploadsession.FieldExpiresAt).Only(ctx)
	if err != nil {
		return Errorf(CodeAlreadyFinished, "upload %s no longer takes %s", id, what)
	}
	row.ID = id
	if err := s.checkActive(ctx, row); ErrorCode(err) == CodeSessionExpired {
		return err
	}
	if !isTerminal(row.Status) && row.Status != StatusAssembling {
		return Errorf(CodeAlreadyFinished, "upload %s no longer takes %s", id, what)
	}
	return Errorf(CodeAlreadyFinished, "upload %s is %s: it takes no more %s", id, row.Status, what)
}

// expireIfDue expires an unfinished session whose time is up, so readers
// see EXPIRED at once rather than when the sweeper passes.
func (s *Service) expireIfDue(ctx context.Context, sess *Session) *Session {
	if isTerminal(sess.Status) || s.now().Before(sess.ExpiresAt) {
		return sess
	}
	s.expire(ctx, sess.ID)
	if fresh, err := s.session(ctx, s.db, "", sess.ID); err == nil {
		return fresh
	}
	return sess
}

// stop moves an unfinished session to a terminal status, gives its bytes
// back to the quota and frees its storage. It reports whether this call
// made the change.
func (s *Service) stop(ctx context.Context, id string, to Status, from ...Status) (bool, error) {
	var sess *ent.UploadSession
	err := s.withTx(ctx, func(tx *ent.Tx) error {
		n, err := tx.UploadSession.Update().
			Where(uploadsession.ID(id), uploadsession.StatusIn(from...)).
			SetStatus(to).SetFinishedAt(s.now()).AddVersion(1).Save(ctx)
		if err != nil || n == 0 {
			return err
		}
		if sess, err = tx.UploadSession.Get(ctx, id); err != nil {
			return err
		}
		return releaseQuota(ctx, tx, sess.OwnerID, sess.TotalSize)
	})
	if err != nil {
		return false, fmt.Errorf("moving upload %s to %s: %w", id, to, err)
	}
	if sess == nil {
		return false, nil
	}
	s.log.InfoContext(ctx, "upload stopped", "upload_id", id, "status", to)
	s.afterStop(ctx, sess)
	return true, nil
}

// expire stops a session whose time is up; failures are left to the
// sweeper.
func (s *Service) expire(ctx context.Context, id string) {
	ctx = context.WithoutCancel(ctx)
	if _, err := s.stop(ctx, id, StatusExpired, StatusInitialized, StatusUploading, StatusAssembling); err != nil {
		s.log.WarnContext(ctx, "expiring upload failed", "upload_id", id, "err", err)
	}
}

// afterStop does what follows a stop's commit: it frees the session's
// storage and publishes its progress. The sweep does it again for a
// stopped session whose bytes are not noted freed: that stop's storage
// failed, or its commit went through as the database failed (its caller
// got an error), or its process died after the commit. Its subscribers
// may have heard nothing of the stop; they drop an event they have seen.
func (s *Service) afterStop(ctx context.Context, sess *ent.UploadSession) {
	s.freeBytes(ctx, sess)
	s.publishCurrent(ctx, sess.ID)
}

// freeBytes discards a stopped session's storage and notes that it did,
// so the sweeper retries only what failed.
func (s *Service) freeBytes(ctx context.Context, sess *ent.UploadSession) {
	if err := s.store.Discard(ctx, sess.StorageKey); err != nil {
		s.log.WarnContext(ctx, "freeing upload bytes failed; the sweeper will retry", "upload_id", sess.ID, "err", err)
		return
	}
	if err := s.db.UploadSession.UpdateOneID(sess.ID).SetBytesFreed(true).Exec(ctx); err != nil {
		s.log.WarnContext(ctx, "noting freed bytes failed", "upload_id", sess.ID, "err", err)
	}
}

// Cancel stops the caller's unfinished upload and frees its bytes. It
// returns NOT_FOUND, SESSION_EXPIRED, or ALREADY_FINISHED for an upload
// that is completed, assembling, cancelled or failed.
func (s *Service) Cancel(ctx context.Context, userID, id string) (*Session, error) {
	sess, err := ownedSession(ctx, s.db, userID, id)
	if err != nil {
		return nil, err
	}
	if err := s.checkActive(ctx, sess); err != nil {
		s.cancelledAgain(ctx, sess)
		return nil, err
	}
	ok, err := s.stop(context.WithoutCancel(ctx), id, StatusCancelled, activeStatuses...)
	if err != nil {
		return nil, err
	}
	if !ok {
		fresh, err := ownedSession(ctx, s.db, userID, id)
		if err != nil {
			return nil, err
		}
		s.cancelledAgain(ctx, fresh)
		return nil, Errorf(CodeAlreadyFinished, "upload %s is %s", id, fresh.Status)
	}
	return s.Session(ctx, userID, id)
}

// cancelledAgain publishes the progress of an upload a cancel found
// CANCELLED already. The cancel may retry one whose commit went through
// while the database failed, which published nothing (as complete's
// completedMedia does; subscribers drop what they have seen).
func (s *Service) cancelledAgain(ctx context.Context, sess *ent.UploadSession) {
	if sess.Status == StatusCancelled {
		s.publishCurrent(context.WithoutCancel(ctx), sess.ID)
	}
}

// ChunkURL returns a freshly signed URL for one chunk of the caller's
// upload. It returns NOT_FOUND, INVALID_CHUNK, SESSION_EXPIRED or
// ALREADY_FINISHED.
func (s *Service) ChunkURL(ctx context.Context, userID, id string, index int) (ChunkURL, error) {
	sess, err := ownedSession(ctx, s.db, userID, id)
	if err != nil {
		return ChunkURL{}, err
	}
	if err := s.checkActive(ctx, sess); err != nil {
		return ChunkURL{}, err
	}
	if err := notTus(sess); err != nil {
		return ChunkURL{}, err
	}
	ref, err := sessionChunk(sess, index)
	if err != nil {
		return ChunkURL{}, err
	}
	return s.chunkURL(ctx, sess, ref)
}

// chunkURL signs where one chunk goes: spool's own data plane, or the
// store itself in direct mode.
func (s *Service) chunkURL(ctx context.Context, sess *ent.UploadSession, ref ChunkRef) (ChunkURL, error) {
	exp := s.now().Add(s.cfg.ChunkURLTTL)
	if sess.ExpiresAt.Before(exp) {
		exp = sess.ExpiresAt
	}
	exp = exp.Truncate(1e9) // signatures carry whole seconds
	if s.resumable != nil && sess.Strategy == StrategySingle {
		return s.resumableChunkURL(ctx, sess, ref, exp)
	}
	u := ChunkURL{
		ChunkIndex: ref.Index,
		URL:        s.signer.ChunkURL(sess.ID, ref.Index, exp),
		Method:     "PUT",
		Headers:    []Header{{Name: "Content-Type", Value: "application/octet-stream"}},
		Offset:     ref.Offset,
		Size:       ref.Size,
		ExpiresAt:  exp,
	}
	if s.direct != nil {
		d, err := s.direct.ChunkUploadURL(ctx, sess.StorageKey, ref, exp)
		if err != nil {
			return ChunkURL{}, storageError("signing a direct chunk URL", err)
		}
		u.URL, u.Method, u.Headers = d.URL, d.Method, d.Headers
	}
	return u, nil
}

// ChunkURLs lists signed URLs for the chunks of sess not yet received, at
// most the configured cap; none once the upload stopped taking chunks.
func (s *Service) ChunkURLs(ctx context.Context, sess *Session) ([]ChunkURL, error) {
	if isTerminal(sess.Status) || sess.Status == StatusAssembling || !s.now().Before(sess.ExpiresAt) || sess.Tus {
		return []ChunkURL{}, nil
	}
	urls := make([]ChunkURL, 0, min(len(sess.missing), s.cfg.MaxChunkURLs))
	for _, i := range sess.missing[:min(len(sess.missing), s.cfg.MaxChunkURLs)] {
		ref, _ := chunkRef(sess.TotalSize, sess.ChunkSize, sess.TotalChunks, i)
		u, err := s.chunkURL(ctx, sess.UploadSession, ref)
		if err != nil {
			return nil, err
		}
		urls = append(urls, u)
	}
	return urls, nil
}

// Retry returns fresh URLs for every chunk of the caller's upload that is
// not received (failed or never sent). It returns NOT_FOUND,
// SESSION_EXPIRED or ALREADY_FINISHED.
func (s *Service) Retry(ctx context.Context, userID, id string) ([]ChunkURL, error) {
	sess, err := ownedSession(ctx, s.db, userID, id)
	if err != nil {
		return nil, err
	}
	if err := s.checkActive(ctx, sess); err != nil {
		return nil, err
	}
	if err := notTus(sess); err != nil {
		return nil, err
	}
	if err := s.syncDirectChunks(ctx, sess); err != nil {
		return nil, err
	}
	chunks, err := chunksOf(ctx, s.db, id)
	if err != nil {
		return nil, err
	}
	urls := []ChunkURL{}
	for _, i := range missingIndexes(sess.TotalChunks, chunks) {
		ref, _ := chunkRef(sess.TotalSize, sess.ChunkSize, sess.TotalChunks, i)
		u, err := s.chunkURL(ctx, sess, ref)
		if err != nil {
			return nil, err
		}
		urls = append(urls, u)
	}
	return urls, nil
}

// ConfirmChunk checks that a chunk of the caller's upload is stored with
// the given size (and checksum, when given) and returns the upload's
// progress. It changes nothing, so confirming twice is harmless. It
// returns NOT_FOUND, INVALID_CHUNK, BAD_USER_INPUT, CHUNK_MISSING,
// TYPE_MISMATCH, CHECKSUM_MISMATCH, SESSION_EXPIRED or ALREADY_FINISHED.
func (s *Service) ConfirmChunk(ctx context.Context, userID, id string, index int, size int64, checksum *string) (Progress, error) {
	// One read on the common path: the session joined to the chunk's row,
	// the progress from the session's counts.
	sess, row, err := s.sessionWithChunk(ctx, userID, id, chunkAt{index: index})
	if err != nil {
		return Progress{}, err
	}
	if err := s.checkActive(ctx, sess); err != nil {
		return Progress{}, err
	}
	if err := notTus(sess); err != nil {
		return Progress{}, err
	}
	ref, err := sessionChunk(sess, index)
	if err != nil {
		return Progress{}, err
	}
	if size != ref.Size {
		return Progress{}, Errorf(CodeBadUserInput, "chunk %d is %d bytes, not %d", index, ref.Size, size)
	}
	var want *Digest
	if checksum != nil {
		d, err := ParseDigest(*checksum)
		if err != nil {
			return Progress{}, err
		}
		want = &d
	}
	if s.direct != nil && row.held != heldReceived {
		// The bytes went to the store directly: look there.
		if _, err := s.syncDirectChunk(ctx, sess, ref); err != nil {
			return Progress{}, err
		}
		if sess, row, err = s.sessionWithChunk(ctx, userID, id, chunkAt{index: index}); err != nil {
			return Progress{}, err
		}
	}
	switch {
	case row.held == heldNone:
		return Progress{}, Errorf(CodeChunkMissing, "chunk %d of upload %s has not arrived; PUT it to its URL first", index, id)
	case row.held == heldFailed && row.errorCode == string(CodeTypeMismatch):
		return Progress{}, Errorf(CodeTypeMismatch, "chunk %d was refused: %s", index, row.err)
	case row.held == heldFailed:
		return Progress{}, Errorf(CodeChunkMissing, "chunk %d of upload %s failed (%s); send it again", index, id, row.err)
	case row.size != size:
		return Progress{}, Errorf(CodeChunkMissing, "chunk %d holds %d bytes, not %d", index, row.size, size)
	}
	if want != nil {
		var digest *string
		if row.digest != "" {
			digest = &row.digest
		}
		match, known := digestMatchesStored(*want, uint32(row.crc32c), digest)
		if !known {
			return Progress{}, Errorf(CodeBadUserInput, "spool recorded no %s for chunk %d; confirm with its crc32c, or send the %s with the chunk", want.Alg, index, want.Alg)
		}
		if !match {
			return Progress{}, Errorf(CodeChecksumMismatch, "chunk %d's stored %s does not match %s", index, want.Alg, *checksum)
		}
	}
	return countedProgress(ctx, s.db, sess)
}

// countedProgress is an active session's progress from its counts,
// listing its failed chunks (through c, the client or a transaction's)
// only when it has some.
func countedProgress(ctx context.Context, c *ent.Client, sess *ent.UploadSession) (Progress, error) {
	totals := chunkTotals{received: sess.ReceivedChunks, receivedBytes: sess.ReceivedBytes, failed: []int{}}
	if sess.FailedChunks > 0 {
		var err error
		if totals.failed, err = failedIndexes(ctx, c, sess.ID); err != nil {
			return Progress{}, err
		}
	}
	return progressOf(sess, totals), nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// Complete assembles the caller's upload once every chunk is received,
// marks it COMPLETED and creates its MediaFile (PROCESSING until its
// content hash is checked). Calling it again returns the same MediaFile;
// a call after a crash mid-assembly finishes the job. It returns
// NOT_FOUND, INCOMPLETE, SESSION_EXPIRED, ALREADY_FINISHED or
// STORAGE_UNAVAILABLE.
func (s *Service) Complete(ctx context.Context, userID, id string) (*ent.MediaFile, error) {
	sess, err := ownedSession(ctx, s.db, userID, id)
	if err != nil {
		return nil, err
	}
	switch sess.Status {
	case StatusCompleted:
		return s.completedMedia(ctx, userID, id)
	case StatusInitialized, StatusUploading:
		if err := s.checkActive(ctx, sess); err != nil {
			return nil, err
		}
		if s.direct != nil {
			if err := s.syncDirectChunks(ctx, sess); err != nil {
				return nil, err
			}
			// Syncing records chunks and so bumps the version. Without a
			// direct store nothing ran since the read; a receipt that
			// lands meanwhile fails the version guard below, which judges
			// again.
			if sess, err = ownedSession(ctx, s.db, userID, id); err != nil {
				return nil, err
			}
		}
		chunks, err := chunksOf(ctx, s.db, id)
		if err != nil {
			return nil, err
		}
		if missing := missingIndexes(sess.TotalChunks, chunks); len(missing) > 0 {
			return nil, Errorf(CodeIncomplete, "upload %s is missing %d of %d chunks: %s",
				id, len(missing), sess.TotalChunks, describeIndexes(missing))
		}
		if s.resumable != nil && sess.Strategy == StrategySingle {
			if err := s.recheckResumable(ctx, sess); errors.Is(err, errJudgeAgain) {
				return s.Complete(ctx, userID, id)
			} else if err != nil {
				return nil, err
			}
		}
		// The version guard makes sure no chunk changed since the check,
		// so the chunk rows read above are the assembling upload's.
		assembling, ok, err := updateSession(ctx, s.db, entsql.Dialect(s.dialect).Update(uploadsession.Table).
			Set(uploadsession.FieldStatus, string(StatusAssembling)).Add(uploadsession.FieldVersion, 1).
			Set(uploadsession.FieldUpdatedAt, s.now()).
			Where(entsql.And(entsql.EQ(uploadsession.FieldID, id), entsql.EQ(uploadsession.FieldVersion, sess.Version),
				statusIn(activeStatuses...))))
		if err != nil {
			return nil, fmt.Errorf("starting assembly: %w", err)
		}
		if !ok {
			return s.Complete(ctx, userID, id) // something changed; judge again
		}
		s.publish(ctx, newSession(assembling, chunks, nil).Progress)
	case StatusAssembling:
		// Another call is assembling, or one died mid-way: assembling and
		// creating the media are idempotent, so carry on.
	default:
		return nil, s.checkActive(ctx, sess)
	}
	return s.assemble(context.WithoutCancel(ctx), sess)
}

// errStoppedWhileAssembling ends assemble's transaction when the session
// left ASSEMBLING without becoming COMPLETED.
var errStoppedWhileAssembling = errors.New("upload stopped while assembling")

// assemble turns an ASSEMBLING session into a COMPLETED one with its
// MediaFile.
func (s *Service) assemble(ctx context.Context, sess *ent.UploadSession) (*ent.MediaFile, error) {
	objectKey, err := s.store.Assemble(ctx, sess.StorageKey, sess.TotalChunks, sess.TotalSize)
	if err != nil {
		return nil, storageError("assembling upload", err)
	}
	return s.finishAssembly(ctx, sess, objectKey)
}

// finishAssembly turns an ASSEMBLING session whose object the store has
// made into a COMPLETED one with its MediaFile and processing job.
func (s *Service) finishAssembly(ctx context.Context, sess *ent.UploadSession, objectKey string) (*ent.MediaFile, error) {
	var media *ent.MediaFile
	// completed is the session as this call completed it, nil when
	// another call had.
	var completed *ent.UploadSession
	err := s.withJobTx(ctx, func(tx *ent.Tx, jobs jobTx) error {
		// The session's UPDATE comes first: it locks the row, so a
		// concurrent complete (another replica) waits here until this one
		// commits, then finds its media instead of creating a second.
		now := s.now()
		var err error
		completed, _, err = updateSession(ctx, tx, entsql.Dialect(s.dialect).Update(uploadsession.Table).
			Set(uploadsession.FieldStatus, string(StatusCompleted)).Set(uploadsession.FieldFinishedAt, now).
			Set(uploadsession.FieldPercent, 100).Add(uploadsession.FieldVersion, 1).Set(uploadsession.FieldUpdatedAt, now).
			Where(entsql.And(entsql.EQ(uploadsession.FieldID, sess.ID), statusIn(StatusAssembling))))
		if err != nil {
			return err
		}
		// A media row is made only by the transaction that completes its
		// upload (upload_id is unique), so one that just did has none to
		// find.
		var existing *ent.MediaFile
		if completed == nil {
			existing, err = tx.MediaFile.Query().Where(mediafile.UploadID(sess.ID)).Only(ctx)
			if err != nil && !ent.IsNotFound(err) {
				return err
			}
		}
		if completed == nil && existing == nil {
			// Neither this call nor another completed it: the sweeper
			// expired it while the store assembled, and gave its quota
			// back. A media file now would hold bytes nobody pays for.
			return errStoppedWhileAssembling
		}
		media = existing
		if media == nil {
			media, err = tx.MediaFile.Create().
				SetOwnerID(sess.OwnerID).SetUploadID(sess.ID).
				SetFileName(sess.FileName).SetMimeType(sess.MimeType).
				SetMediaType(mediafile.MediaType(sess.MediaType)).SetFileSize(sess.TotalSize).
				SetStorageKey(objectKey).SetNillableDurationSeconds(sess.DurationSeconds).
				// The declared SHA-256 until processing sets what it read:
				// a client can find the file by it while it is processed
				// (no dedup reads a PROCESSING file's hash).
				SetNillableContentHash(sess.Sha256).
				SetStatus(mediafile.StatusPROCESSING).SetCreatedAt(s.now()).
				Save(ctx)
			if err != nil {
				return fmt.Errorf("creating media: %w", err)
			}
		}
		if media.Status != mediafile.StatusPROCESSING {
			return nil
		}
		// In this transaction: no upload completes without its job.
		return jobs.process(ctx, media.ID)
	})
	if errors.Is(err, errStoppedWhileAssembling) {
		if derr := s.store.Delete(ctx, objectKey); derr != nil {
			s.log.WarnContext(ctx, "deleting the object of an upload stopped while assembling failed", "upload_id", sess.ID, "err", derr)
		}
		fresh, rerr := s.db.UploadSession.Get(ctx, sess.ID)
		if rerr != nil {
			return nil, fmt.Errorf("completing upload %s: %w", sess.ID, rerr)
		}
		return nil, s.checkActive(ctx, fresh)
	}
	if err != nil {
		return nil, fmt.Errorf("completing upload %s: %w", sess.ID, err)
	}
	s.log.InfoContext(ctx, "upload completed", "upload_id", sess.ID, "media_id", media.ID, "bytes", sess.TotalSize)
	if completed == nil {
		// Another call completed it, and published; this one may be a
		// retry whose first answer was lost, so it publishes what is now.
		s.publishCurrent(ctx, sess.ID)
		return media, nil
	}
	s.publishSession(ctx, completed, media)
	return media, nil
}

// completedMedia answers a complete of an upload already COMPLETED. The
// call may retry one whose commit went through but whose answer was lost
// (the database failed mid-commit, a crash after it): that call may not
// have published COMPLETED, so this one publishes the current progress
// (subscribers drop what they have seen), and makes sure a media file
// still PROCESSING has its job (a no-op when it has one).
func (s *Service) completedMedia(ctx context.Context, userID, uploadID string) (*ent.MediaFile, error) {
	m, err := s.UploadMedia(ctx, userID, uploadID)
	if err != nil {
		return nil, fmt.Errorf("loading media of %s: %w", uploadID, err)
	}
	if m == nil {
		return nil, Errorf(CodeAlreadyFinished, "upload %s completed but its media file was deleted", uploadID)
	}
	if m.Status == mediafile.StatusPROCESSING {
		if err := s.queue.EnqueueProcessing(ctx, nil, m.ID); err != nil {
			return nil, fmt.Errorf("queueing the processing of %s: %w", m.ID, err)
		}
	}
	s.publishCurrent(context.WithoutCancel(ctx), uploadID)
	return m, nil
}
