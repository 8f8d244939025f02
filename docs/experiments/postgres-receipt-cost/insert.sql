SELECT 's' || nextval('zzseq') AS sid \gset
INSERT INTO "upload_chunks"("session_id", "index", "state", "size", "crc32c", "digest", "error_code", "error", "attempts", "updated_at") VALUES (:sid, 0, 'RECEIVED', 2, 12345, NULL, NULL, NULL, 1, now());
