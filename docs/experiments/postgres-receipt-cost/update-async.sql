SELECT 's' || nextval('zzseq') AS sid \gset
UPDATE "upload_sessions" SET "version" = "version" + 1, "received_chunks" = "received_chunks" + 1, "received_bytes" = "received_bytes" + 2, "updated_at" = now(), "status" = 'UPLOADING' WHERE "id" = :sid RETURNING "version", set_config('synchronous_commit', 'off', true);
