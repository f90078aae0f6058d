-- backup_ext 0.2.0 -> 0.3.0: off-host storage targets (S3-compatible and file://), backups
-- streamed into them, and a JSON sidecar next to every backup.

--------------------------------------------------------------------------------------------------
-- Storage targets. The built-in target 'local' is backup_ext.directory and has no row; options
-- hold no secrets (credentials come from backup_ext.s3_credentials_file).
CREATE TABLE backup_ext.storage_targets (
    name       text PRIMARY KEY,
    url        text NOT NULL,
    options    jsonb NOT NULL DEFAULT '{}',
    created_by name NOT NULL DEFAULT session_user,
    created_at timestamptz NOT NULL DEFAULT now()
);
SELECT pg_catalog.pg_extension_config_dump('backup_ext.storage_targets', '');
REVOKE ALL ON backup_ext.storage_targets FROM PUBLIC;

--------------------------------------------------------------------------------------------------
-- Where each backup lies: 'local' (path) or a storage target (key), and the open multipart
-- upload of a running backup, so that recovery can abort it after a crash.
ALTER TABLE backup_ext.artifacts
    ADD COLUMN storage text NOT NULL DEFAULT 'local',
    ADD COLUMN key text,
    ADD COLUMN upload_id text;
-- Uploads of ended jobs still to abort (the worker's sweep).
CREATE INDEX artifacts_upload_idx ON backup_ext.artifacts (job_id) WHERE upload_id IS NOT NULL;

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
       a.key
  FROM backup_ext.artifacts a
  JOIN backup_ext.jobs j ON j.job_id = a.job_id;

CREATE VIEW backup_ext.storages WITH (security_invoker = true) AS
SELECT t.name, t.url, t.options, t.created_at,
       count(a.backup_id) AS backups, coalesce(sum(a.size_bytes), 0) AS bytes
  FROM (SELECT 'local'::text AS name,
               'file://' || coalesce(nullif(pg_catalog.current_setting('backup_ext.directory'), ''),
                                     pg_catalog.rtrim(pg_catalog.current_setting('data_directory'), '/')
                                     || '-backups') AS url,
               '{}'::jsonb AS options, NULL::timestamptz AS created_at
        UNION ALL
        SELECT s.name, s.url, s.options, s.created_at FROM backup_ext.storage_targets s) t
  LEFT JOIN backup_ext.artifacts a
         ON a.storage = t.name AND a.size_bytes IS NOT NULL AND a.expired_at IS NULL
 GROUP BY t.name, t.url, t.options, t.created_at;
REVOKE ALL ON backup_ext.storages FROM PUBLIC;

--------------------------------------------------------------------------------------------------
-- backup_globals() takes options (timeout, storage) like the other backup functions.
DROP FUNCTION backup_ext.backup_globals(text, boolean);
CREATE FUNCTION backup_ext."backup_globals"(
	"label" TEXT DEFAULT NULL, /* Option < String > */
	"no_role_passwords" bool DEFAULT false, /* Option < bool > */
	"options" jsonb DEFAULT '{}' /* Option < JsonB > */
) RETURNS bigint /* i64 */
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'backup_globals_wrapper';
REVOKE ALL ON FUNCTION backup_ext.backup_globals(text, boolean, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION backup_ext.backup_globals(text, boolean, jsonb) TO backup_ext_operator;

--------------------------------------------------------------------------------------------------
-- add_storage() / drop_storage(): superusers only (no grant).
CREATE FUNCTION backup_ext."add_storage"(
	"name" TEXT, /* Option < String > */
	"url" TEXT, /* Option < String > */
	"options" jsonb DEFAULT '{}' /* Option < JsonB > */
) RETURNS void
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'add_storage_wrapper';
REVOKE ALL ON FUNCTION backup_ext.add_storage(text, text, jsonb) FROM PUBLIC;

CREATE FUNCTION backup_ext."drop_storage"(
	"name" TEXT /* Option < String > */
) RETURNS bool /* bool */
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'drop_storage_wrapper';
REVOKE ALL ON FUNCTION backup_ext.drop_storage(text) FROM PUBLIC;
