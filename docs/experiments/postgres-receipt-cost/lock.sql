SELECT 's' || nextval('zzseq') AS sid \gset
SELECT "id" FROM "upload_sessions" WHERE "id" = :sid AND "status" IN ('INITIALIZED', 'UPLOADING') AND "expires_at" > now() FOR UPDATE;
