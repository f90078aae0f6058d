-- backup_ext 0.3.0 -> 0.4.0.

--------------------------------------------------------------------------------------------------
-- The ETag of a backup in an S3 target, so that a restore can tell an object replaced behind
-- our back before it reads it.
ALTER TABLE backup_ext.artifacts ADD COLUMN etag text;

--------------------------------------------------------------------------------------------------
-- Directory-format backups in storage targets are uploaded file by file under <key>/: the key of
-- the file whose upload is open, for recovery.
ALTER TABLE backup_ext.artifacts ADD COLUMN upload_key text;

--------------------------------------------------------------------------------------------------
-- The open multipart upload of a running copy, so that one left by a crash is aborted.
ALTER TABLE backup_ext.backup_copies ADD COLUMN upload_id text;
