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
// the read of a copy's original, and the read of a batch's sessions: each must go by the index that finds
// its few rows, not one that walks every upload of a status or a user.
// Without the planner statistics Open writes, SQLite chose
// (owner_id, status) by owner alone for the first ((owner_id, sha256)
// before migration 00007, and (status, expires_at) when the query held
// the status and expiry), (status, created_at) for the second and
// (owner_id, ...) for the third.
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
		{"READY copies of a batch's files",
			`SELECT DISTINCT content_hash, file_size, mime_type FROM media_files WHERE owner_id = ? AND content_hash IN (?, ?, ?)
			   AND status = 'READY' AND deleted_at IS NULL`,
			[]string{"mediafile_content_hash (content_hash=?)"}},
		{"the READY copy a copy shares",
			`SELECT * FROM media_files WHERE owner_id = ? AND content_hash = ? AND file_size = ? AND mime_type = ?
			   AND status = 'READY' AND deleted_at IS NULL ORDER BY created_at, id LIMIT 1`,
			[]string{"mediafile_content_hash (content_hash=?)"}},
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
