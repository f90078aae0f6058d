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

--------------------------------------------------------------------------------------------------
-- Encryption at rest (age): the recipients new backups are encrypted to (set_encryption()), and
-- on each backup whether it is stored encrypted and the fingerprints of its recipients.
ALTER TABLE backup_ext.artifacts ADD COLUMN encrypted boolean NOT NULL DEFAULT false;
ALTER TABLE backup_ext.artifacts ADD COLUMN recipients text[];
CREATE TABLE backup_ext.encryption_policy (
    database   text UNIQUE NULLS NOT DISTINCT,
    recipients text[] NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
SELECT pg_catalog.pg_extension_config_dump('backup_ext.encryption_policy', '');
CREATE OR REPLACE VIEW backup_ext.backups WITH (security_invoker = true) AS
SELECT a.backup_id,
       a.job_id,
       a.kind,
       a.database,
       a.format,
       CASE WHEN a.expired_at IS NOT NULL THEN 'expired' ELSE j.status END AS status,
       j.label,
       a.path,
       a.size_bytes,
       a.sha256,
       j.requested_by,
       j.requested_at,
       j.started_at,
       j.finished_at,
       j.finished_at - j.started_at AS duration,
       a.server_version,
       a.tool_version,
       j.error,
       a.compress,
       j.bytes_written,
       j.set_id,
       a.pinned,
       a.expired_at,
       a.verified_at,
       a.verify_status,
       a.verify_message,
       a.storage,
       a.key,
       (SELECT pg_catalog.jsonb_object_agg(c.storage, c.status ORDER BY c.storage)
          FROM backup_ext.backup_copies c WHERE c.backup_id = a.backup_id) AS copies,
       a.encrypted,
       a.recipients
  FROM backup_ext.artifacts a
  JOIN backup_ext.jobs j ON j.job_id = a.job_id;

CREATE VIEW backup_ext.encryption WITH (security_invoker = true) AS
SELECT p.database,
       p.recipients,
       ARRAY(SELECT pg_catalog.left(pg_catalog.encode(pg_catalog.sha256(
                        pg_catalog.convert_to(r.r, 'UTF8')), 'hex'), 16)
               FROM pg_catalog.unnest(p.recipients) WITH ORDINALITY AS r(r, n)
              ORDER BY r.n) AS fingerprints,
       p.updated_at
  FROM backup_ext.encryption_policy p;

-- set_encryption(): superusers only (no grant).
CREATE FUNCTION backup_ext."set_encryption"(
	"recipients" TEXT[], /* Option < Vec < Option < String > > > */
	"dbname" TEXT DEFAULT NULL /* Option < String > */
) RETURNS void
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'set_encryption_wrapper';
REVOKE ALL ON FUNCTION backup_ext.set_encryption(text[], text) FROM PUBLIC;
-- Superusers only, like every table and view (no grant).
REVOKE ALL ON backup_ext.encryption_policy, backup_ext.encryption FROM PUBLIC;
