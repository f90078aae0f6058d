-- backup_ext 0.3.0 -> 0.4.0.

--------------------------------------------------------------------------------------------------
-- The ETag of a backup in an S3 target, so that a restore can tell an object replaced behind
-- our back before it reads it.
ALTER TABLE backup_ext.artifacts ADD COLUMN etag text;
