-- Written by hand: `make migrations` generated a rebuild of the whole
-- upload_sessions table (copy, drop, rename) for this change, which only
-- replaces two indexes; the schema it leaves is the same (the drift check
-- in internal/database compares it with ent/schema). Never edit a
-- migration once released; add one.

-- +goose Up
DROP INDEX `uploadsession_owner_id_fingerprint`;
DROP INDEX `uploadsession_owner_id_sha256`;
CREATE INDEX `uploadsession_owner_id_fingerprint` ON `upload_sessions` (`owner_id`, `fingerprint`) WHERE finished_at IS NULL;
CREATE INDEX `uploadsession_owner_id_sha256` ON `upload_sessions` (`owner_id`, `sha256`) WHERE finished_at IS NULL;
