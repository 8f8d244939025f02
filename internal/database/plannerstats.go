package database

import (
	"context"
	"database/sql"
	"fmt"
)

// plannerStats are the statistics SQLite's query planner reads from
// sqlite_stat1 (https://sqlite.org/fileformat2.html#stat1tab), written by
// hand: the table's rows, then for each prefix of the index's columns how
// many rows share a value. They describe a large instance (a thousand
// users, a million uploads and media files) rather than the data at hand.
//
// Without statistics SQLite guesses, and for several of spool's lookups it
// guessed an index that walks every row of a status or of a user: a
// resumable upload by fingerprint or sha256 went through every unfinished
// upload of the instance by (status, expires_at), and (before migration
// 00008) a READY copy by content_hash through every READY media file by
// (status, created_at), at every initBatch of a file naming them.
// Statistics gathered by ANALYZE would depend on the data of the moment
// (a young database would teach it the same mistakes); these make the
// plans the same on every database, and the tests run the plans
// production runs (TestPlannerUsesSelectiveIndexes,
// TestHousekeepingReadsGoByIndex).
var plannerStats = []struct{ table, index, stat string }{
	{"upload_sessions", "sqlite_autoindex_upload_sessions_1", "1000000 1"},
	{"upload_sessions", "uploadsession_owner_id_status", "1000000 1000 150"},
	{"upload_sessions", "uploadsession_fingerprint_owner_id_finished_at", "1000000 2 1 1"},
	{"upload_sessions", "uploadsession_sha256_owner_id_finished_at", "1000000 2 1 1"},
	{"upload_sessions", "uploadsession_status_expires_at", "1000000 150000 2"},
	{"upload_sessions", "uploadsession_bytes_freed_status", "1000000 500000 150000"},
	{"upload_sessions", "uploadsession_batch_id", "1000000 20"},
	{"upload_chunks", "uploadchunk_session_id_index", "10000000 100 1"},
	{"media_files", "sqlite_autoindex_media_files_1", "1000000 1"},
	{"media_files", "media_files_upload_id_key", "1000000 1"},
	{"media_files", "mediafile_owner_id_created_at", "1000000 1000 1"},
	{"media_files", "mediafile_owner_id_media_type_created_at", "1000000 1000 350 1"},
	{"media_files", "mediafile_content_hash_owner_id_status_deleted_at_created_at_id", "1000000 2 1 1 1 1 1"},
	{"media_files", "mediafile_status_created_at", "1000000 250000 1"},
	{"media_files", "mediafile_storage_key_owner_id_deleted_at", "1000000 2 2 1"},
	{"media_files", "mediafile_deleted_unpurged", "1000 1"},
	{"upload_batches", "sqlite_autoindex_upload_batches_1", "100000 1"},
	{"users", "sqlite_autoindex_users_1", "1000 1"},
	{"users", "users_subject_key", "1000 1"},
}

// writePlannerStats replaces sqlite_stat1's rows for spool's tables with
// plannerStats, on db's one writing connection, and has SQLite load them.
// Connections opened afterwards load them when they read the schema.
func writePlannerStats(ctx context.Context, db *sql.DB) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	// ANALYZE of the schema table analyses nothing of ours but creates
	// sqlite_stat1 if it does not exist yet.
	if _, err := conn.ExecContext(ctx, "ANALYZE sqlite_schema"); err != nil {
		return fmt.Errorf("creating sqlite_stat1: %w", err)
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	for _, s := range plannerStats {
		if _, err := tx.ExecContext(ctx, "DELETE FROM sqlite_stat1 WHERE tbl = ? AND idx = ?", s.table, s.index); err != nil {
			return fmt.Errorf("writing planner statistics: %w", err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?, ?, ?)", s.table, s.index, s.stat); err != nil {
			return fmt.Errorf("writing planner statistics: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("writing planner statistics: %w", err)
	}
	// Loads the statistics on this connection (the others load them when
	// they first read the schema).
	if _, err := conn.ExecContext(ctx, "ANALYZE sqlite_schema"); err != nil {
		return fmt.Errorf("loading planner statistics: %w", err)
	}
	return nil
}
