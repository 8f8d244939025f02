package upload

import (
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/schema"
	"github.com/spoolhq/spool/ent/uploadsession"
	"github.com/spoolhq/spool/internal/filename"
)

// maxFingerprint bounds a client's fingerprint; it is an index key.
const maxFingerprint = 512

// checkedFile is a FileSpec that passed validation.
type checkedFile struct {
	FileSpec
	name      string
	mimeType  string
	mediaType MediaType
	plan      plan
}

// checkFile validates one file of a batch. It returns BAD_USER_INPUT,
// INVALID_TYPE or FILE_TOO_LARGE with a message naming the file.
func (s *Service) checkFile(i int, f FileSpec, tus *TusFile) (checkedFile, error) {
	label := fmt.Sprintf("file %d (%q)", i+1, f.FileName)
	if strings.TrimSpace(f.FileName) == "" {
		return checkedFile{}, Errorf(CodeBadUserInput, "file %d has no name", i+1)
	}
	if f.Size <= 0 {
		return checkedFile{}, Errorf(CodeBadUserInput, "%s: size must be positive, got %d", label, f.Size)
	}
	mimeType := normalizeMIME(f.MimeType)
	mt, ok := s.cfg.mediaTypeOf(mimeType)
	if !ok && tus != nil && tus.Part && f.MimeType == "" {
		// A tus partial upload's file is named and typed only when the
		// parts are joined, and checked then. Until then it is held to
		// the largest size limit, and its media type is the one of that
		// limit: nothing reads it, as a part never becomes media.
		mimeType, mt = partMIMEType, s.cfg.largestMediaType()
		ok = true
	}
	if !ok {
		return checkedFile{}, Errorf(CodeInvalidType, "%s: type %q is not accepted; send a video (%s), image (%s) or audio (%s) file",
			label, f.MimeType, formatList(s.cfg.AllowedTypes[MediaVideo]),
			formatList(s.cfg.AllowedTypes[MediaImage]), formatList(s.cfg.AllowedTypes[MediaAudio]))
	}
	if max := s.cfg.MaxSize[mt]; f.Size > max {
		return checkedFile{}, Errorf(CodeFileTooLarge, "%s: %s files may be at most %d bytes, this one is %d",
			label, strings.ToLower(string(mt)), max, f.Size)
	}
	if f.SHA256 != nil {
		h := strings.ToLower(*f.SHA256)
		if b, err := hex.DecodeString(h); err != nil || len(b) != 32 {
			return checkedFile{}, Errorf(CodeBadUserInput, "%s: sha256 must be 64 hex digits", label)
		}
		f.SHA256 = &h
	}
	if f.Fingerprint != nil && (len(*f.Fingerprint) == 0 || len(*f.Fingerprint) > maxFingerprint) {
		return checkedFile{}, Errorf(CodeBadUserInput, "%s: fingerprint must be 1 to %d bytes", label, maxFingerprint)
	}
	if f.DurationSeconds != nil && *f.DurationSeconds < 0 {
		return checkedFile{}, Errorf(CodeBadUserInput, "%s: durationSeconds must not be negative", label)
	}
	return checkedFile{
		FileSpec: f, name: filename.Sanitize(f.FileName), mimeType: mimeType,
		mediaType: mt, plan: s.cfg.planFile(f.Size),
	}, nil
}

// newSession is the insert of a batch's upload of f, with id: what every
// upload of a file is, whatever it goes on to be (a new one, a copy).
func (s *Service) newSession(tx *ent.Tx, userID, batchID, id string, f checkedFile) *ent.UploadSessionCreate {
	now := s.now()
	return tx.UploadSession.Create().
		SetID(id).SetOwnerID(userID).SetBatchID(batchID).
		SetCreatedAt(now).SetUpdatedAt(now).
		SetFileName(f.name).SetOriginalName(f.FileName).
		SetMimeType(f.mimeType).SetMediaType(uploadsession.MediaType(f.mediaType)).
		SetTotalSize(f.Size).SetNillableSha256(f.SHA256).SetNillableFingerprint(f.Fingerprint).
		SetNillableDurationSeconds(f.DurationSeconds).
		SetStrategy(f.plan.strategy).SetChunkSize(f.plan.chunkSize).SetTotalChunks(f.plan.totalChunks).
		SetStorageKey(userID + "/" + id).SetExpiresAt(now.Add(s.cfg.SessionTTL))
}

// sessionsPerInsert is how many sessions initBatch inserts in one
// statement: about 30 parameters each keeps a statement far below
// SQLite's 32,766 and PostgreSQL's 65,535.
const sessionsPerInsert = 100

// prepareAll prepares storage for keys, the nth of size(n) bytes: one
// after the other, or as many at once as a ConcurrentPreparer says. On
// GCS each is a round trip, made while the batch's transaction holds the
// user's quota row; one after the other they held it for as many round
// trips as the batch had files. It returns the keys it prepared, to
// discard if the batch fails, and the first error.
func (s *Service) prepareAll(ctx context.Context, keys []string, size func(n int) int64) ([]string, error) {
	prepared := make([]string, 0, len(keys))
	limit := 1
	if cp, ok := s.store.(ConcurrentPreparer); ok {
		limit = cp.PrepareConcurrency()
	}
	if limit <= 1 {
		for n, key := range keys {
			if err := s.store.Prepare(ctx, key, size(n)); err != nil {
				return prepared, storageError("preparing storage", err)
			}
			prepared = append(prepared, key)
		}
		return prepared, nil
	}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(limit)
	for n, key := range keys {
		g.Go(func() error {
			if err := s.store.Prepare(gctx, key, size(n)); err != nil {
				return storageError("preparing storage", err)
			}
			mu.Lock()
			prepared = append(prepared, key)
			mu.Unlock()
			return nil
		})
	}
	err := g.Wait() // before prepared is read
	return prepared, err
}

// InitBatch plans an upload for each file and reserves their bytes
// against the caller's quota, all or nothing. A file whose fingerprint (or
// sha256) matches one of the caller's unfinished uploads of the same size
// and type resumes that upload, which moves into the new batch.
//
// It returns BAD_USER_INPUT, BATCH_TOO_LARGE, INVALID_TYPE,
// FILE_TOO_LARGE or QUOTA_EXCEEDED, and creates nothing when it does.
func (s *Service) InitBatch(ctx context.Context, userID string, spec BatchSpec) (*Batch, error) {
	switch n := len(spec.Files); {
	case n == 0:
		return nil, Errorf(CodeBadUserInput, "a batch needs at least one file")
	case n > s.cfg.MaxBatchFiles:
		return nil, Errorf(CodeBatchTooLarge, "a batch may hold at most %d files, got %d", s.cfg.MaxBatchFiles, n)
	}
	if spec.ChannelID != nil && len(*spec.ChannelID) > 256 {
		return nil, Errorf(CodeBadUserInput, "channelId must be at most 256 bytes")
	}
	files := make([]checkedFile, len(spec.Files))
	for i, f := range spec.Files {
		cf, err := s.checkFile(i, f, spec.tus)
		if err != nil {
			return nil, err
		}
		files[i] = cf
	}

	var (
		batchID  = schema.NewID("bat")
		ids      = make([]string, len(files))
		prepared []string                          // storage keys to discard if the batch fails
		made     = map[string]*ent.UploadSession{} // the new uploads, as inserted
		// committing is set once every statement of the batch ran: a
		// failure after it is the COMMIT's, which the database may have
		// stored without its answer arriving (a cut connection).
		committing bool
	)
	err := s.withTx(ctx, func(tx *ent.Tx) (err error) {
		if err := tx.UploadBatch.Create().SetID(batchID).SetOwnerID(userID).
			SetNillableChannelID(spec.ChannelID).Exec(ctx); err != nil {
			return fmt.Errorf("creating batch: %w", err)
		}
		// Resumes first: they lock session rows, and every transaction
		// that touches both (cancel, expiry, complete) locks the session
		// before the user's quota row. Reserving as we went would take
		// the quota row first whenever a new file preceded a resumed one,
		// and deadlock against a cancel of that upload.
		seen, err := s.lookUpEarlier(ctx, tx, userID, files, spec.tus)
		if err != nil {
			return err
		}
		if ids, err = s.resumeUnfinished(ctx, tx, batchID, seen); err != nil {
			return err
		}
		var copies []int // files the user has READY: completed at once (dedup.go)
		for i, ready := range seen.ready {
			if ready {
				copies = append(copies, i)
			}
		}
		if len(copies) > 0 {
			// Once for every copy the batch makes: each lock is an UPDATE
			// of the user's row, a row version the next one walks past.
			if err := lockStoredBytes(ctx, tx, userID); err != nil {
				return err
			}
			copied, err := s.initDeduplicated(ctx, tx, userID, batchID, files, copies)
			if err != nil {
				return err
			}
			for n, i := range copies {
				ids[i] = copied[n]
			}
		}
		var fresh []int // files neither resumed nor copied
		var need int64  // their bytes
		for i, f := range files {
			if ids[i] == "" { // neither resumed nor copied
				fresh = append(fresh, i)
				need += f.Size
			}
		}
		if len(fresh) == 0 {
			return nil
		}
		// One reservation for all the new uploads: the batch is all or
		// nothing anyway, and on PostgreSQL every UPDATE of the quota row
		// in one transaction leaves a row version that the next one, and
		// every foreign-key check of the sessions inserted after it, walks
		// past (a 200-file batch reserving file by file spent most of its
		// time there).
		if err := reserveQuota(ctx, tx, userID, need, len(fresh)); err != nil {
			return err
		}
		creates := make([]*ent.UploadSessionCreate, 0, len(fresh))
		keys := make([]string, len(fresh))
		for n, i := range fresh {
			f := files[i]
			id := schema.NewID("upl")
			keys[n] = userID + "/" + id
			creates = append(creates, s.newSession(tx, userID, batchID, id, f).
				SetTus(spec.tus != nil).SetTusPart(spec.tus != nil && spec.tus.Part))
			ids[i] = id
		}
		if prepared, err = s.prepareAll(ctx, keys, func(n int) int64 { return files[fresh[n]].Size }); err != nil {
			return err
		}
		// A few statements for the whole batch instead of one per file,
		// each within the databases' limits on bound parameters.
		// ent builds each row it inserts from the values it was given
		// (every column's value is set here or by a default in Go), so
		// the rows it returns are what the database holds, and the
		// answer is built from them without reading them back.
		for part := range slices.Chunk(creates, sessionsPerInsert) {
			rows, err := tx.UploadSession.CreateBulk(part...).Save(ctx)
			if err != nil {
				return fmt.Errorf("creating uploads: %w", err)
			}
			for _, r := range rows {
				// Unwrapped: a row outlives its transaction, and one
				// still bound to it could not query once committed.
				made[r.ID] = r.Unwrap()
			}
		}
		committing = true
		return nil
	})
	if err != nil {
		if committing {
			// The uploads may exist: a retry with their fingerprints
			// resumes them, and must find their storage. What no session
			// names, the orphan sweep removes (RemoveOrphans).
			return nil, err
		}
		for _, key := range prepared {
			if derr := s.store.Discard(context.WithoutCancel(ctx), key); derr != nil {
				s.log.WarnContext(ctx, "discarding storage of a failed batch failed", "key", key, "err", derr)
			}
		}
		return nil, err
	}
	s.prepareFor(made)
	uploads, err := s.sessions(ctx, s.db, userID, ids, made)
	if err != nil {
		return nil, err
	}
	b := &Batch{ID: batchID, Uploads: uploads}
	for i, sess := range uploads {
		uploads[i] = s.expireIfDue(ctx, sess)
		s.publish(ctx, uploads[i].Progress)
	}
	s.log.InfoContext(ctx, "batch initialised", "batch_id", batchID, "user_id", userID, "files", len(files))
	return b, nil
}
