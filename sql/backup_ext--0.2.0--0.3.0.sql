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

--------------------------------------------------------------------------------------------------
-- Copies to further storage targets: a job kind, the policy, one row per backup and target.
ALTER TABLE backup_ext.jobs
    DROP CONSTRAINT jobs_kind_check,
    ADD CONSTRAINT jobs_kind_check
        CHECK (kind IN ('database', 'globals', 'restore', 'verify', 'copy'));
CREATE TABLE backup_ext.copy_policy (
    database   text UNIQUE NULLS NOT DISTINCT,
    storages   text[] NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE backup_ext.backup_copies (
    backup_id   bigint NOT NULL REFERENCES backup_ext.artifacts ON DELETE CASCADE,
    storage     text NOT NULL,
    key         text,
    status      text NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'expired')),
    size_bytes  bigint,
    sha256      text,
    finished_at timestamptz,
    error       text,
    attempts    int NOT NULL DEFAULT 0,
    next_try_at timestamptz,
    job_id      bigint,
    PRIMARY KEY (backup_id, storage)
);
CREATE INDEX backup_copies_retry_idx ON backup_ext.backup_copies (next_try_at)
    WHERE status = 'failed';
CREATE INDEX backup_copies_job_idx ON backup_ext.backup_copies (job_id);
ALTER TABLE backup_ext.backup_copies ENABLE ROW LEVEL SECURITY;
-- A copy is visible to whoever may see its backup (artifacts has row security of its own).
CREATE POLICY readable_backups ON backup_ext.backup_copies FOR SELECT
    USING (EXISTS (SELECT 1 FROM backup_ext.artifacts a
                    WHERE a.backup_id OPERATOR(pg_catalog.=) backup_copies.backup_id));
SELECT pg_catalog.pg_extension_config_dump('backup_ext.copy_policy', '');
SELECT pg_catalog.pg_extension_config_dump('backup_ext.backup_copies', '');
REVOKE ALL ON backup_ext.copy_policy, backup_ext.backup_copies FROM PUBLIC;

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
          FROM backup_ext.backup_copies c WHERE c.backup_id = a.backup_id) AS copies
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

CREATE VIEW backup_ext.copies WITH (security_invoker = true) AS
SELECT c.backup_id, c.storage, c.key, c.status, c.size_bytes, c.sha256, c.finished_at, c.error,
       c.attempts, c.next_try_at, c.job_id
  FROM backup_ext.backup_copies c;
REVOKE ALL ON backup_ext.copies FROM PUBLIC;
GRANT SELECT ON backup_ext.backup_copies, backup_ext.copies
    TO backup_ext_operator, backup_ext_restorer;

-- set_copies(): superusers only (no grant).
CREATE FUNCTION backup_ext.set_copies(dbname text, storages text[])
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    target text;
BEGIN
    IF storages IS NULL OR cardinality(storages) = 0 THEN
        DELETE FROM backup_ext.copy_policy p WHERE p.database IS NOT DISTINCT FROM dbname;
        RETURN;
    END IF;
    FOREACH target IN ARRAY storages LOOP
        IF target IS NULL OR target = 'local' THEN
            RAISE EXCEPTION 'copies go to storage targets added with add_storage(), not to %',
                    coalesce(quote_literal(target), 'NULL')
                USING ERRCODE = '22023',
                      HINT = 'Backups are written to their primary target first (options.storage, backup_ext.default_storage); list the other targets here.';
        END IF;
        IF NOT EXISTS (SELECT 1 FROM backup_ext.storage_targets t WHERE t.name = target) THEN
            RAISE EXCEPTION 'storage target "%" does not exist', target
                USING ERRCODE = '42704',
                      HINT = 'Add it first with backup_ext.add_storage(name, url, options); see SELECT name FROM backup_ext.storages;';
        END IF;
    END LOOP;
    IF (SELECT count(DISTINCT s) FROM unnest(storages) s) <> cardinality(storages) THEN
        RAISE EXCEPTION 'storage targets are listed more than once: %', storages
            USING ERRCODE = '22023', HINT = 'Name each target once.';
    END IF;
    INSERT INTO backup_ext.copy_policy AS p (database, storages)
    VALUES (dbname, storages)
    ON CONFLICT (database) DO UPDATE SET storages = EXCLUDED.storages, updated_at = now();
END
$fn$;
REVOKE ALL ON FUNCTION backup_ext.set_copies(text, text[]) FROM PUBLIC;

--------------------------------------------------------------------------------------------------
-- status(): a database whose newest backup still lacks a copy after backup_ext.copy_lag is a
-- warning, with the reason in last_error; check_status() quotes it.
CREATE OR REPLACE FUNCTION backup_ext.status()
RETURNS TABLE (database text, last_success_at timestamptz, last_success_age interval,
               last_size_bytes bigint, last_failure_at timestamptz, last_error text,
               backups_kept bigint, bytes_kept numeric, status text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
WITH RECURSIVE live(name) AS (
    -- databases with live backups (also dropped ones), by skipping through the index
    SELECT min(coalesce(a.database, '')) FROM backup_ext.artifacts a
     WHERE a.kind = 'database' AND a.size_bytes IS NOT NULL AND a.expired_at IS NULL
    UNION ALL
    SELECT (SELECT min(coalesce(a.database, '')) FROM backup_ext.artifacts a
             WHERE a.kind = 'database' AND a.size_bytes IS NOT NULL AND a.expired_at IS NULL
               AND coalesce(a.database, '') > live.name)
      FROM live WHERE live.name IS NOT NULL
),
all_targets(kind, name) AS (
    -- datname is of type name (collation "C"); the indexes use the default collation.
    SELECT 'database', datname::text COLLATE "default" FROM pg_database WHERE datallowconn AND NOT datistemplate
    UNION
    SELECT 'database', name FROM live WHERE name IS NOT NULL
    UNION
    SELECT 'globals', ''
),
targets(kind, name) AS (
    -- A role sees the databases it may connect to; globals and dropped databases are for
    -- superusers (as in the catalog's row security).
    SELECT t.kind, t.name FROM all_targets t
     WHERE (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user)
        OR (t.kind = 'database' AND backup_ext.may_read_database(t.name))
),
per_db AS (
    SELECT CASE WHEN t.kind = 'globals' THEN 'globals' ELSE t.name END AS database,
           s.finished_at AS last_success_at, s.size_bytes AS last_size_bytes,
           f.finished_at AS last_failure_at,
           CASE WHEN s.missing THEN format('newest backup %s is missing: %s', s.backup_id, s.path)
                WHEN cl.lagging IS NOT NULL AND NOT coalesce(f.finished_at > s.finished_at, false)
                    THEN format('newest backup %s has no copy in %s yet', s.backup_id, cl.lagging)
                ELSE f.error END AS last_error,
           coalesce(s.missing, false) AS missing,
           cl.lagging,
           k.kept, k.bytes
      FROM targets t
      LEFT JOIN LATERAL (
          -- backup_file_exists() is volatile: computed once, for the one row LIMIT keeps.
          SELECT j.finished_at, a.size_bytes, a.backup_id, a.path,
                 backup_ext.backup_file_exists(a.path) IS FALSE AS missing
            FROM backup_ext.jobs j JOIN backup_ext.artifacts a ON a.job_id = j.job_id
           WHERE j.kind = t.kind AND coalesce(j.database, '') = t.name AND j.status = 'succeeded'
             AND a.expired_at IS NULL
           ORDER BY j.finished_at DESC LIMIT 1) s ON true
      LEFT JOIN LATERAL (
          SELECT j.finished_at, j.error
            FROM backup_ext.jobs j
           WHERE j.kind = t.kind AND coalesce(j.database, '') = t.name AND j.status = 'failed'
           ORDER BY j.finished_at DESC LIMIT 1) f ON true
      LEFT JOIN LATERAL (
          -- copies (set_copies()) of the newest backup still missing after backup_ext.copy_lag
          SELECT string_agg(c.storage, ', ' ORDER BY c.storage) AS lagging
            FROM backup_ext.backup_copies c
           WHERE c.backup_id = s.backup_id AND c.status <> 'succeeded'
             AND s.finished_at < now() - current_setting('backup_ext.copy_lag')::interval) cl ON true
      LEFT JOIN LATERAL (
          SELECT count(*) AS kept, coalesce(sum(a.size_bytes), 0) AS bytes
            FROM backup_ext.artifacts a
           WHERE a.kind = t.kind AND coalesce(a.database, '') = t.name
             AND a.size_bytes IS NOT NULL AND a.expired_at IS NULL) k ON true
)
SELECT p.database, p.last_success_at, now() - p.last_success_at, p.last_size_bytes,
       p.last_failure_at, p.last_error, p.kept, p.bytes,
       CASE
           WHEN p.last_success_at IS NULL THEN 'critical'
           WHEN p.missing THEN 'critical'
           WHEN now() - p.last_success_at >= current_setting('backup_ext.critical_age')::interval THEN 'critical'
           WHEN now() - p.last_success_at >= current_setting('backup_ext.warn_age')::interval THEN 'warning'
           WHEN p.last_failure_at > p.last_success_at THEN 'warning'
           WHEN p.lagging IS NOT NULL THEN 'warning'
           ELSE 'ok'
       END
  FROM per_db p
 ORDER BY p.database;
$fn$;

CREATE OR REPLACE FUNCTION backup_ext.check_status()
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
SELECT 'BACKUP ' ||
       CASE WHEN bool_or(s.status = 'critical') THEN 'CRITICAL'
            WHEN bool_or(s.status = 'warning') THEN 'WARNING' ELSE 'OK' END ||
       ' - ' ||
       coalesce(string_agg(format('%s: %s', s.database,
                    CASE WHEN s.last_success_at IS NULL THEN 'never backed up'
                         ELSE 'last success ' || date_trunc('minute', s.last_success_age)::text || ' ago' END)
                    || CASE WHEN s.last_failure_at > s.last_success_at THEN ' (failed since)' ELSE '' END
                    || CASE WHEN s.last_error LIKE 'newest backup % is missing: %'
                              OR s.last_error LIKE 'newest backup % has no copy in % yet'
                            THEN ' (' || s.last_error || ')' ELSE '' END,
                    '; ' ORDER BY s.database) FILTER (WHERE s.status <> 'ok'), 'all databases backed up') ||
       format(' | ok=%s warning=%s critical=%s',
              count(*) FILTER (WHERE s.status = 'ok'),
              count(*) FILTER (WHERE s.status = 'warning'),
              count(*) FILTER (WHERE s.status = 'critical'))
  FROM backup_ext.status() s;
$fn$;

--------------------------------------------------------------------------------------------------
-- list_remote(): the backups a storage target holds, from their sidecars. Superusers only.
CREATE FUNCTION backup_ext."remote_sidecars"(
	"storage" TEXT, /* Option < String > */
	"all_clusters" bool DEFAULT false /* Option < bool > */
) RETURNS TABLE (
	"backup_id" bigint,  /* i64 */
	"database" TEXT,  /* Option < String > */
	"kind" TEXT,  /* String */
	"finished_at" TEXT,  /* String */
	"size_bytes" bigint,  /* i64 */
	"sha256" TEXT,  /* String */
	"system_identifier" TEXT,  /* String */
	"key" TEXT  /* String */
)
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'remote_sidecars_wrapper';
REVOKE ALL ON FUNCTION backup_ext.remote_sidecars(text, boolean) FROM PUBLIC;

-- What a storage target holds, read from the sidecars there; in_catalog says whether this
-- catalog knows the backup at that place (as written, or as a copy).
CREATE FUNCTION backup_ext.list_remote(storage text, all_clusters boolean DEFAULT false)
RETURNS TABLE (backup_id bigint, database text, kind text, finished_at timestamptz,
               size_bytes bigint, sha256 text, system_identifier text, key text,
               in_catalog boolean)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
SELECT r.backup_id, r.database, r.kind, r.finished_at::timestamptz, r.size_bytes, r.sha256,
       r.system_identifier, r.key,
       r.system_identifier = (SELECT s.system_identifier::text FROM pg_control_system() s)
       AND (EXISTS (SELECT 1 FROM backup_ext.artifacts a
                     WHERE a.backup_id = r.backup_id AND a.expired_at IS NULL
                       AND ((a.storage = $1 AND a.key = r.key)
                            OR (a.storage = 'local' AND $1 = 'local'
                                AND right(a.path, length(r.key) + 1) = '/' || r.key)))
            OR EXISTS (SELECT 1 FROM backup_ext.backup_copies c
                        WHERE c.backup_id = r.backup_id AND c.storage = $1 AND c.key = r.key
                          AND c.status = 'succeeded'))
  FROM backup_ext.remote_sidecars($1, $2) r
 ORDER BY r.finished_at, r.key;
$fn$;
REVOKE ALL ON FUNCTION backup_ext.list_remote(text, boolean) FROM PUBLIC;
