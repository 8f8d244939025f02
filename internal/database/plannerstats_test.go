package database_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spoolhq/spool/internal/database"
	"github.com/spoolhq/spool/internal/database/dbtest"
)

// TestPlannerUsesSelectiveIndexes asks SQLite how it would run the lookups
// initBatch makes for the files that name their sha256 and fingerprint,
// processing's read of the copy a file shares, and the read of a batch's
// sessions: each must go by the index that finds its few rows, not one
// that walks every upload of a status or a user. Without the planner
// statistics Open writes, SQLite chose (owner_id, status) by owner alone
// for the resume lookup ((owner_id, sha256) before migration 00007, and
// (status, expires_at) when the query held the status and expiry) and
// for a batch's sessions. The copies lookups took (status, created_at)
// before migration 00008; its index fixes every column they name, and
// SQLite takes it with or without the statistics (checked).
func TestPlannerUsesSelectiveIndexes(t *testing.T) {
	t.Parallel()
	db, err := database.Open(context.Background(), "", filepath.Join(t.TempDir(), database.SQLiteFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for _, tc := range []struct {
		what, query string
		want        []string // in the plan
	}{
		{"unfinished uploads of a batch's files, to resume",
			`SELECT id, fingerprint, sha256, total_size, mime_type, status, expires_at FROM upload_sessions
			   WHERE owner_id = ? AND ((fingerprint IN (?, ?, ?) AND finished_at IS NULL) OR (sha256 IN (?, ?, ?) AND finished_at IS NULL))
			   AND tus = ? ORDER BY created_at DESC`,
			[]string{"uploadsession_fingerprint_owner_id_finished_at (fingerprint=? AND owner_id=? AND finished_at=?)", "uploadsession_sha256_owner_id_finished_at (sha256=? AND owner_id=? AND finished_at=?)"}},
		{"the first READY copy of each of a batch's contents",
			`SELECT c.value ->> 0, c.value ->> 1, c.value ->> 2, (SELECT m.id FROM media_files m
			   WHERE m.content_hash = c.value ->> 0 AND m.owner_id = ? AND m.status = 'READY' AND m.deleted_at IS NULL
			   AND m.file_size = c.value ->> 1 AND m.mime_type = c.value ->> 2
			   ORDER BY m.deleted_at, m.created_at, m.id LIMIT 1) FROM json_each(?) AS c`,
			[]string{"mediafile_content_hash_owner_id_status_deleted_at_created_at_id (content_hash=? AND owner_id=? AND status=? AND deleted_at=?)"}},
		{"the READY copy a processed file shares",
			`SELECT * FROM media_files WHERE content_hash = ? AND owner_id = ? AND status = ? AND deleted_at IS NULL
			   AND file_size = ? AND mime_type = ? AND id <> ? AND storage_key <> ? ORDER BY deleted_at, created_at, id LIMIT 1`,
			[]string{"mediafile_content_hash_owner_id_status_deleted_at_created_at_id (content_hash=? AND owner_id=? AND status=? AND deleted_at=?)"}},
		{"a batch's sessions",
			`SELECT * FROM upload_sessions WHERE id IN (?, ?, ?) AND owner_id = ?`,
			[]string{"sqlite_autoindex_upload_sessions_1 (id=?)"}},
	} {
		args := make([]any, strings.Count(tc.query, "?"))
		for i := range args {
			args[i] = "x"
		}
		text := dbtest.SQLitePlan(t, db.SQL(), tc.query, args...)
		for _, w := range tc.want {
			if !strings.Contains(text, w) {
				t.Errorf("%s: plan\n%s\ndoes not use %s", tc.what, text, w)
			}
		}
	}
}
