package upload

import (
	"context"
	"fmt"
	"slices"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/mediafile"
	"github.com/spoolhq/spool/ent/predicate"
	"github.com/spoolhq/spool/ent/uploadsession"
)

// filesPerLookup is how many of a batch's files one lookup of their
// earlier uploads takes: at most two IN lists of this length, far below
// both databases' limits on bound parameters.
const filesPerLookup = 200

// earlier is what the caller's earlier uploads hold of a batch's files
// that name their sha256 or fingerprint, by the file's index in the batch.
type earlier struct {
	// ready: the user has a READY copy of the file, which completes it at
	// once (dedup.go) instead of any upload resuming.
	ready []bool
	// unfinished: the newest unfinished, unexpired upload of the same
	// file, size and type, to resume; "" if none (or ready).
	unfinished []string
}

// lookUpEarlier finds, for every file of a batch that names its sha256 or
// fingerprint, a READY copy to share and an unfinished upload to resume:
// two statements for up to filesPerLookup files, where each file used to
// cost two (docs/DESIGN.md, "Sweeper and quota"). A tus file is not
// looked up for a copy: its client sends the bytes whatever the
// creation's answer, and an upload already complete would refuse them;
// processing deduplicates after the upload.
func (s *Service) lookUpEarlier(ctx context.Context, tx *ent.Tx, userID string, files []checkedFile, tus *TusFile) (earlier, error) {
	e := earlier{ready: make([]bool, len(files)), unfinished: make([]string, len(files))}
	var named []int
	for i, f := range files {
		if f.SHA256 != nil || f.Fingerprint != nil {
			named = append(named, i)
		}
	}
	for part := range slices.Chunk(named, filesPerLookup) {
		if tus == nil {
			if err := markReadyCopies(ctx, tx, userID, files, part, e.ready); err != nil {
				return e, err
			}
		}
		if err := s.findUnfinished(ctx, tx, userID, files, part, tus != nil, e.ready, e.unfinished); err != nil {
			return e, err
		}
	}
	return e, nil
}

// sameContent is what a READY copy shares with a file (readyCopies says
// why the type is part of it).
type sameContent struct {
	sha256   string
	size     int64
	mimeType string
}

// markReadyCopies sets ready[i] for the files of part (indexes into
// files) whose sha256, size and type match one of the user's READY,
// undeleted media files, with one statement for them all. It only reads;
// initDeduplicated decides under the lock.
func markReadyCopies(ctx context.Context, tx *ent.Tx, userID string, files []checkedFile, part []int, ready []bool) error {
	var sums []string
	for _, i := range part {
		if files[i].SHA256 != nil {
			sums = append(sums, *files[i].SHA256)
		}
	}
	if len(sums) == 0 {
		return nil
	}
	// DISTINCT: a user's copies of one file are rows of their own, all
	// alike in these three columns.
	var copies []struct {
		ContentHash string `json:"content_hash"`
		FileSize    int64  `json:"file_size"`
		MimeType    string `json:"mime_type"`
	}
	err := tx.MediaFile.Query().Where(append(readyOf(userID), mediafile.ContentHashIn(sums...))...).
		Unique(true).Select(mediafile.FieldContentHash, mediafile.FieldFileSize, mediafile.FieldMimeType).Scan(ctx, &copies)
	if err != nil {
		return fmt.Errorf("looking for copies of the batch's files: %w", err)
	}
	have := make(map[sameContent]bool, len(copies))
	for _, m := range copies {
		have[sameContent{m.ContentHash, m.FileSize, m.MimeType}] = true
	}
	for _, i := range part {
		if f := files[i]; f.SHA256 != nil {
			ready[i] = have[sameContent{*f.SHA256, f.Size, f.mimeType}]
		}
	}
	return nil
}

// findUnfinished sets unfinished[i] for the files of part that are not
// ready: the newest of the user's active, unexpired uploads with the
// file's fingerprint or sha256, size and type, of the same kind (a tus
// upload takes bytes only by offset and a GraphQL one only by chunk: each
// resumes its own kind). One statement reads the candidates of them all.
func (s *Service) findUnfinished(ctx context.Context, tx *ent.Tx, userID string, files []checkedFile, part []int, tus bool, ready []bool, unfinished []string) error {
	var fingerprints, sums []string
	for _, i := range part {
		if ready[i] {
			continue
		}
		if f := files[i]; f.Fingerprint != nil {
			fingerprints = append(fingerprints, *f.Fingerprint)
		}
		if f := files[i]; f.SHA256 != nil {
			sums = append(sums, *f.SHA256)
		}
	}
	var sameFile []predicate.UploadSession
	if len(fingerprints) > 0 {
		sameFile = append(sameFile, uploadsession.FingerprintIn(fingerprints...))
	}
	if len(sums) > 0 {
		sameFile = append(sameFile, uploadsession.Sha256In(sums...))
	}
	if len(sameFile) == 0 {
		return nil
	}
	// The user's uploads of these files, finished or not: the status, the
	// expiry, the size and the type are checked below, not in the query,
	// so that the only indexes that fit are (owner_id, fingerprint) and
	// (owner_id, sha256). With the status and expiry in the query,
	// PostgreSQL on a table it had not analysed yet walked all the user's
	// unfinished uploads by (owner_id, status), 6 ms a lookup at 4,000 of
	// them.
	candidates, err := tx.UploadSession.Query().Where(
		uploadsession.OwnerID(userID), uploadsession.Or(sameFile...), uploadsession.Tus(tus),
	).Order(ent.Desc(uploadsession.FieldCreatedAt)).Select(
		uploadsession.FieldID, uploadsession.FieldFingerprint, uploadsession.FieldSha256,
		uploadsession.FieldTotalSize, uploadsession.FieldMimeType,
		uploadsession.FieldStatus, uploadsession.FieldExpiresAt,
	).All(ctx)
	if err != nil {
		return fmt.Errorf("looking for resumable uploads: %w", err)
	}
	// The active ones, newest first; by fingerprint and by sha256, their
	// positions in it.
	now := s.now()
	var active []*ent.UploadSession
	byFingerprint, bySHA256 := map[string][]int{}, map[string][]int{}
	for _, c := range candidates {
		if !slices.Contains(activeStatuses, c.Status) || !c.ExpiresAt.After(now) {
			continue
		}
		if c.Fingerprint != nil {
			byFingerprint[*c.Fingerprint] = append(byFingerprint[*c.Fingerprint], len(active))
		}
		if c.Sha256 != nil {
			bySHA256[*c.Sha256] = append(bySHA256[*c.Sha256], len(active))
		}
		active = append(active, c)
	}
	for _, i := range part {
		if ready[i] {
			continue
		}
		f := files[i]
		fits := func(at int) bool { return active[at].TotalSize == f.Size && active[at].MimeType == f.mimeType }
		newest := -1
		if f.Fingerprint != nil {
			newest = firstFitting(byFingerprint[*f.Fingerprint], fits)
		}
		if f.SHA256 != nil {
			if at := firstFitting(bySHA256[*f.SHA256], fits); at >= 0 && (newest < 0 || at < newest) {
				newest = at
			}
		}
		if newest >= 0 {
			unfinished[i] = active[newest].ID
		}
	}
	return nil
}

// firstFitting returns the first of positions that fits, or -1.
func firstFitting(positions []int, fits func(int) bool) int {
	for _, at := range positions {
		if fits(at) {
			return at
		}
	}
	return -1
}

// resumeUnfinished moves the uploads e found into the batch and returns,
// by file, the id of the upload each resumes, or "" for a file to start
// afresh: one whose upload finished, failed or was cancelled since it was
// read. One statement moves them all.
func (s *Service) resumeUnfinished(ctx context.Context, tx *ent.Tx, batchID string, e earlier) ([]string, error) {
	var ids []string
	for _, id := range e.unfinished {
		if id != "" && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	resumed := make([]string, len(e.unfinished))
	if len(ids) == 0 {
		return resumed, nil
	}
	moved := 0
	for part := range slices.Chunk(ids, filesPerLookup) {
		n, err := tx.UploadSession.Update().
			Where(uploadsession.IDIn(part...), uploadsession.StatusIn(activeStatuses...)).
			SetBatchID(batchID).AddVersion(1).Save(ctx)
		if err != nil {
			return nil, fmt.Errorf("resuming uploads: %w", err)
		}
		moved += n
	}
	inBatch := ids
	if moved < len(ids) {
		// Some finished meanwhile (cancelled, completed, expired by
		// another replica): only those now in the batch resume.
		inBatch = nil
		for part := range slices.Chunk(ids, filesPerLookup) {
			in, err := tx.UploadSession.Query().
				Where(uploadsession.IDIn(part...), uploadsession.BatchID(batchID)).IDs(ctx)
			if err != nil {
				return nil, fmt.Errorf("resuming uploads: %w", err)
			}
			inBatch = append(inBatch, in...)
		}
	}
	for i, id := range e.unfinished {
		if id != "" && slices.Contains(inBatch, id) {
			resumed[i] = id
		}
	}
	for _, id := range inBatch {
		s.log.InfoContext(ctx, "upload resumed", "upload_id", id, "batch_id", batchID)
	}
	return resumed, nil
}
