-- backup_ext catalog: the job queue with its history, the files those jobs produced, and the
-- read-only SQL functions over them. Functions written in Rust are created after this file.

DO $check$
BEGIN
    IF current_setting('backup_ext.database', true) IS NULL THEN
        RAISE EXCEPTION 'backup_ext must be loaded through shared_preload_libraries'
            USING ERRCODE = '55000',
                  HINT = 'Add backup_ext to shared_preload_libraries in postgresql.conf, restart the server, then CREATE EXTENSION again.';
    END IF;
    IF current_database() <> current_setting('backup_ext.database') THEN
        RAISE EXCEPTION 'backup_ext can only be created in database "%" (backup_ext.database)',
                current_setting('backup_ext.database')
            USING ERRCODE = '55000',
                  HINT = format('Connect to %I and create the extension there, or set backup_ext.database = %L in postgresql.conf and restart.',
                                current_setting('backup_ext.database'), current_database());
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'backup_ext_operator') THEN
        CREATE ROLE backup_ext_operator NOLOGIN;
    END IF;
END
$check$;

CREATE TABLE backup_ext.jobs (
    job_id           bigserial PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('database', 'globals')),
    database         text,
    request          jsonb NOT NULL DEFAULT '{}',
    label            text,
    status           text NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    requested_by     name NOT NULL DEFAULT session_user,
    requested_at     timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    worker_pid       int,
    bytes_written    bigint,
    cancel_requested boolean NOT NULL DEFAULT false,
    error            text,
    CHECK ((kind = 'globals') = (database IS NULL)),
    CHECK (status IN ('queued', 'running') = (finished_at IS NULL))
);
-- The worker's claim query and the "what is running" checks only look at unfinished jobs.
CREATE INDEX jobs_unfinished_idx ON backup_ext.jobs (job_id) WHERE status IN ('queued', 'running');

CREATE TABLE backup_ext.artifacts (
    backup_id      bigserial PRIMARY KEY,
    job_id         bigint NOT NULL UNIQUE REFERENCES backup_ext.jobs ON DELETE CASCADE,
    kind           text NOT NULL,
    database       text,
    format         text NOT NULL,
    compress       text,
    path           text,
    size_bytes     bigint,
    sha256         text,
    manifest       jsonb,
    server_version text,
    tool_version   text
);
CREATE INDEX artifacts_database_idx ON backup_ext.artifacts (database, backup_id DESC);

-- Keep the catalog in dumps of this database, so restoring it restores the backup history.
SELECT pg_catalog.pg_extension_config_dump('backup_ext.jobs', '');
SELECT pg_catalog.pg_extension_config_dump('backup_ext.jobs_job_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('backup_ext.artifacts', '');
SELECT pg_catalog.pg_extension_config_dump('backup_ext.artifacts_backup_id_seq', '');

CREATE VIEW backup_ext.backups AS
SELECT a.backup_id,
       a.job_id,
       a.kind,
       a.database,
       a.format,
       j.status,
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
       j.bytes_written
  FROM backup_ext.artifacts a
  JOIN backup_ext.jobs j ON j.job_id = a.job_id;

CREATE FUNCTION backup_ext.list_backups(dbname text DEFAULT NULL, status text DEFAULT NULL)
RETURNS SETOF backup_ext.backups
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF list_backups.status IS NOT NULL
       AND list_backups.status NOT IN ('queued', 'running', 'succeeded', 'failed', 'cancelled') THEN
        RAISE EXCEPTION 'unknown status "%"', list_backups.status
            USING ERRCODE = '22023',
                  HINT = 'Statuses are: queued, running, succeeded, failed, cancelled.';
    END IF;
    RETURN QUERY
        SELECT b.*
          FROM backup_ext.backups b
         WHERE (list_backups.dbname IS NULL OR b.database = list_backups.dbname)
           AND (list_backups.status IS NULL OR b.status = list_backups.status)
         ORDER BY b.backup_id DESC;
END
$fn$;

CREATE FUNCTION backup_ext.job_status(job_id bigint)
RETURNS SETOF backup_ext.jobs
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RETURN QUERY SELECT * FROM backup_ext.jobs j WHERE j.job_id = job_status.job_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'backup_ext job % does not exist', job_status.job_id
            USING ERRCODE = '42704',
                  HINT = 'List jobs with: SELECT job_id, kind, status FROM backup_ext.jobs ORDER BY job_id DESC;';
    END IF;
END
$fn$;
