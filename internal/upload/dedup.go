package upload

// Dedup (docs/DESIGN.md §Dedup): a user's files with the same bytes share one stored object.
//
// Sharing is a storage key named by several MediaFile rows of one user.
// The references to a key are the rows naming it that are not deleted;
// they are counted from the rows, never kept in a counter. A key's bytes
// are charged to the quota once, by whichever rows reference it: a row
// that starts sharing bytes already charged gives its own reservation
// back (or never takes one), and a deleted row gives the bytes back only
// when it was the last reference. The stored object and its derivatives
// are removed only once no row references them.
//
// Every transaction that adds or removes a reference to a user's stored
// bytes takes the user's row first (lockStoredBytes), then reads the
// references. Two deletions of two sharers, on two replicas, therefore
// run one after the other, and the second sees the first's deletion
// (PostgreSQL's READ COMMITTED gives each statement a fresh snapshot,
// taken after the lock was granted; SQLite has one writer). A new
// reference is only ever made from a live one, checked under the same
// lock, so once a key has no references it never gains one again, and
// the purge may judge it without a lock. The user's row comes after the
// media and session rows in every transaction, as the quota row always
// does (docs/DESIGN.md §Concurrency across replicas).

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"

	"entgo.io/ent/dialect"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/mediafile"
	"github.com/spoolhq/spool/ent/predicate"
	"github.com/spoolhq/spool/ent/schema"
	"github.com/spoolhq/spool/ent/user"
	"github.com/spoolhq/spool/internal/database"
)

// readyCopies selects a user's READY, undeleted media files with the
// given content: the files whose bytes another file of theirs may share.
// The type must match too: the stored bytes were checked against their
// file's declared type, and a copy must not wear a type they never
// passed. firstCopies asks the same of a batch's contents at once.
func readyCopies(ownerID, sha256 string, size int64, mimeType string) []predicate.MediaFile {
	return []predicate.MediaFile{
		mediafile.ContentHash(sha256), mediafile.OwnerID(ownerID), mediafile.StatusEQ(mediafile.StatusREADY),
		mediafile.DeletedAtIsNil(), mediafile.FileSize(size), mediafile.MimeType(mimeType),
	}
}

// lockStoredBytes takes the user's row for the rest of the transaction,
// so that the references to the user's stored bytes read after it cannot
// change under the caller. It is an UPDATE (of nothing that matters) so
// that it locks on every database ent runs on.
func lockStoredBytes(ctx context.Context, tx *ent.Tx, userID string) error {
	if err := tx.User.Update().Where(user.ID(userID)).AddReservedBytes(0).Exec(ctx); err != nil {
		return fmt.Errorf("locking the stored bytes of user %s: %w", userID, err)
	}
	return nil
}

// initDeduplicated makes the uploads of the files at copies (indexes
// into files), whose declared SHA-256, size and type match one of the
// user's READY, undeleted files: for each a session COMPLETED at once
// (deduplicated) and a READY media file sharing the earliest such file's
// stored object and derivatives. Nothing is reserved: the bytes are
// charged once, and are already. It returns, by position in copies, the
// new upload's id, or "" where the user no longer has such a file (the
// caller then plans an upload as usual). initBatch calls it for the files
// markReadyCopies found a copy of, holding lockStoredBytes. Two reads and
// two inserts make the copies of up to filesPerLookup files, not three
// statements each.
func (s *Service) initDeduplicated(ctx context.Context, tx *ent.Tx, userID, batchID string, files []checkedFile, copies []int) ([]string, error) {
	origs, err := s.originals(ctx, tx, userID, files, copies)
	if err != nil {
		return nil, err
	}
	now := s.now()
	ids := make([]string, len(copies))
	var sessions []*ent.UploadSessionCreate
	var media []*ent.MediaFileCreate
	for n, i := range copies {
		f := files[i]
		orig := origs[sameContent{*f.SHA256, f.Size, f.mimeType}]
		if orig == nil {
			continue // deleted since markReadyCopies read it
		}
		id := schema.NewID("upl")
		ids[n] = id
		sessions = append(sessions, s.newSession(tx, userID, batchID, id, f).
			SetStatus(StatusCompleted).SetDeduplicated(true).SetPercent(100).SetFinishedAt(now))
		create := tx.MediaFile.Create().
			SetOwnerID(userID).SetUploadID(id).
			SetFileName(f.name).SetMimeType(f.mimeType).SetMediaType(f.mediaType).SetFileSize(f.Size).
			SetNillableDurationSeconds(f.DurationSeconds).
			SetStorageKey(orig.StorageKey).SetNillableContentHash(orig.ContentHash).
			SetStatus(mediafile.StatusREADY).SetNillableProcessedAt(orig.ProcessedAt).SetCreatedAt(now).
			SetBucket(orig.Bucket).SetNillablePublicURL(orig.PublicURL).SetNillableThumbnailURL(orig.ThumbnailURL).
			SetNillableWidth(orig.Width).SetNillableHeight(orig.Height).SetNillableDuration(orig.Duration).
			SetNillablePlaceholder(orig.Placeholder)
		if orig.Thumbnails != nil {
			create.SetThumbnails(orig.Thumbnails)
		}
		if orig.Video != nil {
			create.SetVideo(orig.Video)
		}
		if orig.Audio != nil {
			create.SetAudio(orig.Audio)
		}
		media = append(media, create)
		s.log.InfoContext(ctx, "upload deduplicated", "upload_id", id, "batch_id", batchID, "original_media_id", orig.ID)
	}
	for part := range slices.Chunk(sessions, sessionsPerInsert) {
		if err := tx.UploadSession.CreateBulk(part...).Exec(ctx); err != nil {
			return nil, fmt.Errorf("creating deduplicated uploads: %w", err)
		}
	}
	for part := range slices.Chunk(media, sessionsPerInsert) {
		if err := tx.MediaFile.CreateBulk(part...).Exec(ctx); err != nil {
			return nil, fmt.Errorf("creating deduplicated media files: %w", err)
		}
	}
	return ids, nil
}

// originals reads, for the files at copies, the user's earliest READY,
// undeleted media file of the same content: read again under the lock,
// since one may have been deleted after markReadyCopies, and then it is
// no reference to copy. firstCopies picks them; a second read takes
// their whole rows.
func (s *Service) originals(ctx context.Context, tx *ent.Tx, userID string, files []checkedFile, copies []int) (map[sameContent]*ent.MediaFile, error) {
	contents := make([]sameContent, 0, len(copies))
	for _, i := range copies {
		contents = append(contents, sameContent{*files[i].SHA256, files[i].Size, files[i].mimeType})
	}
	first, err := s.firstCopies(ctx, tx, userID, contents)
	if err != nil {
		return nil, fmt.Errorf("loading the files copied: %w", err)
	}
	ids := make([]string, 0, len(first))
	for _, id := range first {
		ids = append(ids, id)
	}
	origs := make(map[sameContent]*ent.MediaFile, len(ids))
	for part := range slices.Chunk(ids, filesPerLookup) {
		rows, err := tx.MediaFile.Query().Where(mediafile.IDIn(part...)).All(ctx)
		if err != nil {
			return nil, fmt.Errorf("loading the files copied: %w", err)
		}
		for _, m := range rows {
			if m.ContentHash != nil {
				origs[sameContent{*m.ContentHash, m.FileSize, m.MimeType}] = m
			}
		}
	}
	return origs, nil
}

// firstCopies returns, for each of contents the user has a READY,
// undeleted media file of, the id of the earliest such file (by
// created_at, then id): the one a copy shares. One statement asks for up
// to filesPerLookup contents, one probe each down
// (content_hash, owner_id, status, deleted_at, created_at, id) to its
// first live entry. Other users' files of a content, and the user's
// deleted or failed ones, are not read, nor are the user's later copies:
// given as IN lists, the lookup read every row of a content through
// (content_hash), or PostgreSQL walked all of a user's media by owner
// (docs/BENCHMARKS.md).
func (s *Service) firstCopies(ctx context.Context, tx *ent.Tx, userID string, contents []sameContent) (map[sameContent]string, error) {
	first := make(map[sameContent]string, len(contents))
	for part := range slices.Chunk(contents, filesPerLookup) {
		if err := s.readFirstCopies(ctx, tx, userID, part, first); err != nil {
			return nil, err
		}
	}
	return first, nil
}

// readFirstCopies runs firstCopies' statement for part and adds the
// copies it finds to first. The statement answers a row for each content,
// the content itself and its first copy's id or NULL; it is written per
// database, since each takes the list of contents its own way.
func (s *Service) readFirstCopies(ctx context.Context, tx *ent.Tx, userID string, part []sameContent, first map[sameContent]string) error {
	var rows *sql.Rows
	var err error
	if s.dialect == dialect.Postgres {
		sums, sizes, types := make([]string, len(part)), make([]int64, len(part)), make([]string, len(part))
		for i, c := range part {
			sums[i], sizes[i], types[i] = c.sha256, c.size, c.mimeType
		}
		rows, err = tx.QueryContext(ctx, firstCopiesOnPostgresSQL, database.PlannedEachRun, userID, sums, sizes, types)
	} else {
		list := make([][3]any, len(part))
		for i, c := range part {
			list[i] = [3]any{c.sha256, c.size, c.mimeType}
		}
		var encoded []byte
		if encoded, err = json.Marshal(list); err != nil {
			return err
		}
		rows, err = tx.QueryContext(ctx, firstCopiesOnSQLiteSQL, userID, string(encoded))
	}
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var c sameContent
		var id sql.NullString
		if err := rows.Scan(&c.sha256, &c.size, &c.mimeType, &id); err != nil {
			return err
		}
		if id.Valid {
			first[c] = id.String
		}
	}
	return rows.Err()
}

// firstCopiesOnPostgresSQL is firstCopies' statement on PostgreSQL: a
// subquery for each content of the arrays, which LIMIT keeps a probe of
// its own. Every row it may return has deleted_at NULL, so ordering by
// deleted_at first changes nothing but lets PostgreSQL read the index in
// its order and stop at the first entry: it does not take IS NULL as a
// fixed value for ordering, and by created_at alone it read all of the
// user's live copies of a content to sort them. It is planned at every
// run (database.PlannedEachRun): a generic plan takes every user for an
// average one, and on a table where one user held a sixth of the rows
// and the others one file each it probed by (owner_id, media_type,
// created_at), walking that user's library.
// 'READY' is mediafile.StatusREADY.
const firstCopiesOnPostgresSQL = `
SELECT c.sha256, c.size, c.mime_type, (SELECT m.id FROM media_files m
	WHERE m.content_hash = c.sha256 AND m.owner_id = $1 AND m.status = 'READY' AND m.deleted_at IS NULL
		AND m.file_size = c.size AND m.mime_type = c.mime_type
	ORDER BY m.deleted_at, m.created_at, m.id LIMIT 1)
FROM unnest($2::text[], $3::bigint[], $4::text[]) AS c(sha256, size, mime_type)`

// firstCopiesOnSQLiteSQL is firstCopies' statement on SQLite: the
// contents come as one JSON array of [sha256, size, type] triples.
const firstCopiesOnSQLiteSQL = `
SELECT c.value ->> 0, c.value ->> 1, c.value ->> 2, (SELECT m.id FROM media_files m
	WHERE m.content_hash = c.value ->> 0 AND m.owner_id = ?1 AND m.status = 'READY' AND m.deleted_at IS NULL
		AND m.file_size = c.value ->> 1 AND m.mime_type = c.value ->> 2
	ORDER BY m.deleted_at, m.created_at, m.id LIMIT 1)
FROM json_each(?2) AS c`

// deduplicatedProgress is what a deduplicated upload's progress counts:
// it has no chunk rows, since nothing was sent, yet every byte is there.
func deduplicatedProgress(sess *ent.UploadSession, p Progress) Progress {
	if sess.Deduplicated {
		p.UploadedBytes, p.UploadedChunks, p.Percent = p.TotalBytes, p.TotalChunks, 100
	}
	return p
}

// shareDuplicate runs in the transaction that saves a processed media
// file, once the file's row (then its upload's) is updated. If the file
// is READY and the user has another READY, undeleted file with the same
// content hash, size and type stored under another key, the file starts
// sharing that file's object and derivatives and gives back its own
// reservation, since the bytes are charged once. Its own object and
// derivatives become a deleted media row that no file references, whose
// purge is queued in the same transaction (invariant 7). m is the file's
// row as the transaction has it.
func (s *Service) shareDuplicate(ctx context.Context, tx *ent.Tx, jobs jobTx, m *ent.MediaFile) error {
	if m.Status != mediafile.StatusREADY || m.ContentHash == nil || m.DeletedAt != nil {
		return nil
	}
	copies := append(readyCopies(m.OwnerID, *m.ContentHash, m.FileSize, m.MimeType),
		mediafile.IDNEQ(m.ID), mediafile.StorageKeyNEQ(m.StorageKey))
	if ok, err := tx.MediaFile.Query().Where(copies...).Exist(ctx); !ok || err != nil {
		return err
	}
	if err := lockStoredBytes(ctx, tx, m.OwnerID); err != nil {
		return err
	}
	// deleted_at first, though NULL in every copy: firstCopiesOnPostgresSQL says why.
	orig, err := tx.MediaFile.Query().Where(copies...).
		Order(ent.Asc(mediafile.FieldDeletedAt), ent.Asc(mediafile.FieldCreatedAt), ent.Asc(mediafile.FieldID)).First(ctx)
	if ent.IsNotFound(err) {
		return nil // deleted meanwhile: keep this file's own bytes
	}
	if err != nil {
		return fmt.Errorf("loading the copy of media %s: %w", m.ID, err)
	}
	// This file's own bytes go once it names the copy's (their purge is
	// queued below, in this transaction).
	ownKey, ownThumbnails := m.StorageKey, m.Thumbnails
	upd := tx.MediaFile.UpdateOneID(m.ID).
		SetStorageKey(orig.StorageKey).SetBucket(orig.Bucket).
		SetNillablePublicURL(orig.PublicURL).SetNillableThumbnailURL(orig.ThumbnailURL).
		SetNillableWidth(orig.Width).SetNillableHeight(orig.Height).SetNillableDuration(orig.Duration).
		SetNillablePlaceholder(orig.Placeholder)
	// The thumbnails must be the original's, since this file's own go
	// with its own object; the other facts describe the same bytes
	// either way.
	if orig.Thumbnails != nil {
		upd.SetThumbnails(orig.Thumbnails)
	} else {
		upd.ClearThumbnails()
	}
	if orig.Video != nil {
		upd.SetVideo(orig.Video)
	}
	if orig.Audio != nil {
		upd.SetAudio(orig.Audio)
	}
	if err := upd.Exec(ctx); err != nil {
		return fmt.Errorf("sharing the bytes of media %s with %s: %w", orig.ID, m.ID, err)
	}
	if err := releaseQuota(ctx, tx, m.OwnerID, m.FileSize); err != nil {
		return err
	}
	s.log.InfoContext(ctx, "media deduplicated", "media_id", m.ID, "original_media_id", orig.ID)
	return s.retireBytes(ctx, tx, jobs, m, ownKey, ownThumbnails, "the bytes "+m.ID+" held before it shared "+orig.ID+"'s")
}

// releaseStoredBytes gives a just-deleted media file's bytes back to the
// quota if no other file of its owner references them; else they stay
// charged to the files that share them. Called in the deleting
// transaction, after the media row (and its upload's) is updated.
func releaseStoredBytes(ctx context.Context, tx *ent.Tx, m *ent.MediaFile) error {
	if err := lockStoredBytes(ctx, tx, m.OwnerID); err != nil {
		return err
	}
	// By the key alone, the owner compared here: given the owner too, a
	// plan kept from a young table walked all of the owner's files
	// (sharing never crosses owners, so the key's rows are few).
	owners, err := tx.MediaFile.Query().Where(mediafile.StorageKey(m.StorageKey), mediafile.DeletedAtIsNil()).
		Select(mediafile.FieldOwnerID).Strings(ctx)
	if err != nil {
		return fmt.Errorf("counting the references to media %s's bytes: %w", m.ID, err)
	}
	if slices.Contains(owners, m.OwnerID) {
		return nil
	}
	return releaseQuota(ctx, tx, m.OwnerID, m.FileSize)
}

// keysToPurge returns the stored keys of a deleted media file (its object
// and derivatives) that no undeleted file of its owner references: the
// ones its purge may remove. While another file shares the bytes it
// returns none. It needs no lock: a key without references never gains
// one (see the top of this file).
func (s *Service) keysToPurge(ctx context.Context, m *ent.MediaFile) ([]string, error) {
	// By the key alone, the owner compared here (releaseStoredBytes says
	// why).
	sharers, err := s.db.MediaFile.Query().Where(mediafile.StorageKey(m.StorageKey), mediafile.DeletedAtIsNil()).
		Select(mediafile.FieldOwnerID, mediafile.FieldStorageKey, mediafile.FieldThumbnails).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("finding who shares media %s's bytes: %w", m.ID, err)
	}
	inUse := map[string]bool{}
	for _, o := range sharers {
		if o.OwnerID != m.OwnerID {
			continue
		}
		for _, k := range storedKeys(o) {
			inUse[k] = true
		}
	}
	var keys []string
	for _, k := range storedKeys(m) {
		if !inUse[k] {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

// storedKeys lists what a media file keeps in the store: its object, then
// its derivatives.
func storedKeys(m *ent.MediaFile) []string {
	keys := []string{m.StorageKey}
	for _, t := range m.Thumbnails {
		if t.Key != "" {
			keys = append(keys, t.Key)
		}
	}
	return keys
}
