package upload

import (
	"context"
	"fmt"
	"slices"

	"entgo.io/ent/dialect"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/predicate"
	"github.com/spoolhq/spool/ent/uploadsession"
	"github.com/spoolhq/spool/internal/database"
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
			if err := s.markReadyCopies(ctx, tx, userID, files, part, e.ready); err != nil {
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
// undeleted media files, with one statement for them all (firstCopies).
// It only reads; initDeduplicated decides under the lock.
func (s *Service) markReadyCopies(ctx context.Context, tx *ent.Tx, userID string, files []checkedFile, part []int, ready []bool) error {
	var contents []sameContent
	for _, i := range part {
		if f := files[i]; f.SHA256 != nil {
			contents = append(contents, sameContent{*f.SHA256, f.Size, f.mimeType})
		}
	}
	if len(contents) == 0 {
		return nil
	}
	first, err := s.firstCopies(ctx, tx, userID, contents)
	if err != nil {
		return fmt.Errorf("looking for copies of the batch's files: %w", err)
	}
	for _, i := range part {
		if f := files[i]; f.SHA256 != nil {
			_, ready[i] = first[sameContent{*f.SHA256, f.Size, f.mimeType}]
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
	if len(fingerprints) == 0 && len(sums) == 0 {
		return nil
	}
	var candidates []*ent.UploadSession
	var err error
	if s.dialect == dialect.Postgres {
		candidates, err = unfinishedOnPostgres(ctx, tx, userID, fingerprints, sums, tus)
	} else {
		candidates, err = unfinishedOnSQLite(ctx, tx, userID, fingerprints, sums, tus)
	}
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

// unfinishedOnSQLite reads the user's uploads of kind tus, not finished,
// that have one of the fingerprints or one of the sums, newest first.
// SQLite goes by (fingerprint, owner_id, finished_at) and (sha256,
// owner_id, finished_at), one probe per value, down to the entries with
// finished_at NULL: however many finished, cancelled or expired uploads
// of a file the user has, none is read (TestResumeLookupReadsOnlyUnfinished).
// finished_at IS NULL is in each arm of the OR, where SQLite looks for it
// when it plans the arm by its own index. The status, the expiry, the
// size and the type are left to findUnfinished, so that no other index
// fits: with the status in the query, SQLite walked every unfinished
// upload by (status, expires_at) before it had planner statistics.
func unfinishedOnSQLite(ctx context.Context, tx *ent.Tx, userID string, fingerprints, sums []string, tus bool) ([]*ent.UploadSession, error) {
	var sameFile []predicate.UploadSession
	if len(fingerprints) > 0 {
		sameFile = append(sameFile, uploadsession.And(uploadsession.FingerprintIn(fingerprints...), uploadsession.FinishedAtIsNil()))
	}
	if len(sums) > 0 {
		sameFile = append(sameFile, uploadsession.And(uploadsession.Sha256In(sums...), uploadsession.FinishedAtIsNil()))
	}
	return tx.UploadSession.Query().Where(
		uploadsession.OwnerID(userID), uploadsession.Or(sameFile...), uploadsession.Tus(tus),
	).Order(ent.Desc(uploadsession.FieldCreatedAt)).Select(
		uploadsession.FieldID, uploadsession.FieldFingerprint, uploadsession.FieldSha256,
		uploadsession.FieldTotalSize, uploadsession.FieldMimeType,
		uploadsession.FieldStatus, uploadsession.FieldExpiresAt,
	).All(ctx)
}

// unfinishedOnPostgresSQL is unfinishedOnSQLite's read written for
// PostgreSQL: one index probe for each value, each a subquery of its own
// (OFFSET 0 keeps the planner from merging it into a join it could plan
// otherwise), down to the unfinished uploads of that value and user by
// (fingerprint, owner_id, finished_at) or (sha256, owner_id, finished_at).
// It is planned at every run (database.PlannedEachRun). Given the lists
// as IN (…), PostgreSQL planned by its estimates and with 200 values
// walked all of the user's uploads: on a small table whole, on one it had
// not analysed yet by owner, 10–13 ms for a 200-file batch of a user
// with 20,000 unfinished uploads and growing with them; in
// BenchmarkInitBatch a tenth of the lookups took 294 ms or more. Probed,
// 0.36–0.63 ms, and 1.4 ms at p90 in that benchmark (docs/BENCHMARKS.md).
// UNION drops an upload found by both its fingerprint and its sha256 the
// second time.
const unfinishedOnPostgresSQL = `
SELECT id, fingerprint, sha256, total_size, mime_type, status, expires_at, created_at FROM (
	SELECT s.* FROM unnest($2::text[]) AS named(v) CROSS JOIN LATERAL (
		SELECT id, fingerprint, sha256, total_size, mime_type, status, expires_at, created_at FROM upload_sessions
		WHERE owner_id = $1 AND fingerprint = named.v AND finished_at IS NULL AND tus = $4 OFFSET 0) s
	UNION
	SELECT s.* FROM unnest($3::text[]) AS named(v) CROSS JOIN LATERAL (
		SELECT id, fingerprint, sha256, total_size, mime_type, status, expires_at, created_at FROM upload_sessions
		WHERE owner_id = $1 AND sha256 = named.v AND finished_at IS NULL AND tus = $4 OFFSET 0) s
) found ORDER BY created_at DESC`

// unfinishedOnPostgres is unfinishedOnSQLite on PostgreSQL
// (unfinishedOnPostgresSQL).
func unfinishedOnPostgres(ctx context.Context, tx *ent.Tx, userID string, fingerprints, sums []string, tus bool) ([]*ent.UploadSession, error) {
	rows, err := tx.QueryContext(ctx, unfinishedOnPostgresSQL, database.PlannedEachRun, userID, fingerprints, sums, tus)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var found []*ent.UploadSession
	for rows.Next() {
		c := &ent.UploadSession{}
		if err := rows.Scan(&c.ID, &c.Fingerprint, &c.Sha256, &c.TotalSize, &c.MimeType, &c.Status, &c.ExpiresAt, &c.CreatedAt); err != nil {
			return nil, err
		}
		found = append(found, c)
	}
	return found, rows.Err()
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
