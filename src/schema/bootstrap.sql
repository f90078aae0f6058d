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
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'backup_ext_restorer') THEN
        CREATE ROLE backup_ext_restorer NOLOGIN;
    END IF;
    -- Every short-lived login of a restore acting for a non-superuser is a member, so one
    -- pg_hba.conf line can let them in.
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'backup_ext_sandbox') THEN
        CREATE ROLE backup_ext_sandbox NOLOGIN;
    END IF;
END
$check$;

CREATE TABLE backup_ext.jobs (
    job_id           bigserial PRIMARY KEY,
    kind             text NOT NULL
                     CHECK (kind IN ('database', 'globals', 'restore', 'verify', 'copy')),
    -- the database dumped, restored into, or whose backup is verified
    database         text,
    -- for restore and verify jobs: the backup they read
    backup_id        bigint,
    set_id           bigint,
    schedule         text,
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
    tables_done      int,
    tables_total     int,
    timeout_seconds  int,
    error            text,
    -- what a successful job has to say (verification result, roles that already existed)
    message          text,
    -- the role whose rights the job uses: the caller's current_user when it was requested
    run_as           name,
    CHECK (kind <> 'database' OR database IS NOT NULL),
    CHECK (kind NOT IN ('restore', 'verify') OR backup_id IS NOT NULL),
    CHECK (status IN ('queued', 'running') = (finished_at IS NULL))
);
-- The worker's claim query and the "what is running" checks only look at unfinished jobs.
CREATE INDEX jobs_unfinished_idx ON backup_ext.jobs (job_id) WHERE status IN ('queued', 'running');

CREATE TABLE backup_ext.artifacts (
    -- equal to the job id of the backup job, so both orders agree
    backup_id      bigint PRIMARY KEY,
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
    tool_version   text,
    pinned         boolean NOT NULL DEFAULT false,
    expired_at     timestamptz,
    verified_at    timestamptz,
    verify_status  text CHECK (verify_status IN ('passed', 'failed')),
    verify_message text,
    -- rows per table counted from the archive by the last test-restore verification
    table_rows     jsonb,
    -- where the backup lies: 'local' (path, under backup_ext.directory) or a storage target
    -- (key, relative to the target's URL)
    storage        text NOT NULL DEFAULT 'local',
    key            text,
    -- the open multipart upload while the job runs, so recovery can abort one left by a crash
    upload_id      text,
    -- the object's ETag in an S3 target, compared before a restore reads the object
    etag           text,
    -- the key of that upload when it is not the backup's own: a file of a directory-format
    -- backup, uploaded under <key>/
    upload_key     text,
    -- why a succeeded backup looks wrong (the size guardrail), NULL when it looks normal
    anomaly        text,
    -- stored age-encrypted (set_encryption()), to the recipients with these fingerprints
    encrypted      boolean NOT NULL DEFAULT false,
    recipients     text[],
    -- pg_database_size() of the source database when the backup was requested, for the
    -- space estimate of restore_plan() and restore_backup(); NULL for globals
    source_size_bytes bigint,
    -- 'local': made by this catalog's worker; 'imported': taken in from a storage target's
    -- sidecar by import_backups(), with what the sidecar said of it where it was made (system
    -- identifier, backup and set id, storage, key, times) in imported_from
    origin         text NOT NULL DEFAULT 'local' CHECK (origin IN ('local', 'imported')),
    imported_from  jsonb
);
CREATE INDEX artifacts_database_idx ON backup_ext.artifacts (database, backup_id DESC);
-- Live backups (size_bytes is only ever set on success) per database, for status().
CREATE INDEX artifacts_live_idx ON backup_ext.artifacts (kind, (coalesce(database, '')))
    INCLUDE (size_bytes, database) WHERE size_bytes IS NOT NULL AND expired_at IS NULL;

-- Uploads of ended jobs still to abort (the worker's sweep).
CREATE INDEX artifacts_upload_idx ON backup_ext.artifacts (job_id) WHERE upload_id IS NOT NULL;

CREATE INDEX jobs_backup_idx ON backup_ext.jobs (backup_id) WHERE backup_id IS NOT NULL;
CREATE INDEX jobs_set_idx ON backup_ext.jobs (set_id) WHERE set_id IS NOT NULL;
-- Last success and last failure per database, for status().
CREATE INDEX jobs_outcome_idx ON backup_ext.jobs (kind, (coalesce(database, '')), status, finished_at DESC);

-- One row per backup_cluster() call; its members are the jobs with this set_id.
CREATE TABLE backup_ext.backup_sets (
    set_id       bigserial PRIMARY KEY,
    format       text NOT NULL,
    label        text,
    options      jsonb NOT NULL DEFAULT '{}',
    requested_by name NOT NULL DEFAULT session_user,
    requested_at timestamptz NOT NULL DEFAULT now()
);

-- Retention policies: database NULL is the default for every database, 'globals' for globals.
CREATE TABLE backup_ext.retention (
    database     text UNIQUE NULLS NOT DISTINCT,
    keep_last    int CHECK (keep_last > 0),
    keep_days    int CHECK (keep_days > 0),
    keep_daily   int CHECK (keep_daily > 0),
    keep_weekly  int CHECK (keep_weekly > 0),
    keep_monthly int CHECK (keep_monthly > 0),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Built-in schedules for servers without pg_cron.
CREATE TABLE backup_ext.schedule_entries (
    name        text PRIMARY KEY,
    cron        text NOT NULL,
    command     jsonb NOT NULL,
    created_by  name NOT NULL DEFAULT session_user,
    created_at  timestamptz NOT NULL DEFAULT now(),
    last_run_at timestamptz,
    last_job_id bigint,
    last_set_id bigint,
    last_error  text
);

-- Off-host storage targets (add_storage()). The built-in target 'local' is
-- backup_ext.directory and has no row. Options hold no secrets: credentials come from the
-- file named by backup_ext.s3_credentials_file.
CREATE TABLE backup_ext.storage_targets (
    name       text PRIMARY KEY,
    url        text NOT NULL,
    options    jsonb NOT NULL DEFAULT '{}',
    created_by name NOT NULL DEFAULT session_user,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Copies of backups in further storage targets (set_copies()): the policy per database (NULL:
-- the default for all, 'globals' for globals), and one row per backup and target copied to.
CREATE TABLE backup_ext.copy_policy (
    database   text UNIQUE NULLS NOT DISTINCT,
    storages   text[] NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- age recipients new backups are encrypted to (set_encryption()): per database (NULL: the
-- default for all, 'globals' for globals). Public keys only; identities are never stored.
CREATE TABLE backup_ext.encryption_policy (
    database   text UNIQUE NULLS NOT DISTINCT,
    recipients text[] NOT NULL,
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
    -- the open multipart upload of a running copy, so that one left by a crash is aborted
    upload_id   text,
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

-- Cancel requests for running jobs: a table of their own, so that a cancel() whose transaction
-- stays open holds no lock on a row the worker updates.
CREATE TABLE backup_ext.cancel_requests (
    job_id       bigint PRIMARY KEY,
    requested_by name NOT NULL DEFAULT session_user,
    requested_at timestamptz NOT NULL DEFAULT now()
);

-- Whether the current role may connect to a database: the rule for seeing its backups and
-- jobs. Globals (NULL) belong to superusers, who bypass row security anyway.
CREATE FUNCTION backup_ext.may_read_database(dbname text)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
RETURN coalesce((SELECT pg_catalog.has_database_privilege(d.oid, 'CONNECT')
                   FROM pg_catalog.pg_database d
                  WHERE d.datname OPERATOR(pg_catalog.=) dbname::name), false);

ALTER TABLE backup_ext.jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE backup_ext.artifacts ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable_databases ON backup_ext.jobs FOR SELECT
    USING (backup_ext.may_read_database(database) OR run_as OPERATOR(pg_catalog.=) current_user);
CREATE POLICY readable_databases ON backup_ext.artifacts FOR SELECT
    USING (backup_ext.may_read_database(database));

-- Keep the catalog in dumps of this database, so restoring it restores the backup history.
SELECT pg_catalog.pg_extension_config_dump('backup_ext.jobs', '');
SELECT pg_catalog.pg_extension_config_dump('backup_ext.jobs_job_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('backup_ext.artifacts', '');
SELECT pg_catalog.pg_extension_config_dump('backup_ext.backup_sets', '');
SELECT pg_catalog.pg_extension_config_dump('backup_ext.backup_sets_set_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('backup_ext.retention', '');
SELECT pg_catalog.pg_extension_config_dump('backup_ext.schedule_entries', '');
SELECT pg_catalog.pg_extension_config_dump('backup_ext.cancel_requests', '');
SELECT pg_catalog.pg_extension_config_dump('backup_ext.storage_targets', '');
SELECT pg_catalog.pg_extension_config_dump('backup_ext.copy_policy', '');
SELECT pg_catalog.pg_extension_config_dump('backup_ext.backup_copies', '');
SELECT pg_catalog.pg_extension_config_dump('backup_ext.encryption_policy', '');

-- Views read as the caller (security_invoker), so the row security above applies to them.
CREATE VIEW backup_ext.backups WITH (security_invoker = true) AS
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
       a.anomaly,
       a.encrypted,
       a.recipients,
       a.origin
  FROM backup_ext.artifacts a
  JOIN backup_ext.jobs j ON j.job_id = a.job_id;

-- The encryption policy (set_encryption()): recipients per database (NULL: the default) with
-- the fingerprints recorded on the backups encrypted to them.
CREATE VIEW backup_ext.encryption WITH (security_invoker = true) AS
SELECT p.database,
       p.recipients,
       ARRAY(SELECT pg_catalog.left(pg_catalog.encode(pg_catalog.sha256(
                        pg_catalog.convert_to(r.r, 'UTF8')), 'hex'), 16)
               FROM pg_catalog.unnest(p.recipients) WITH ORDINALITY AS r(r, n)
              ORDER BY r.n) AS fingerprints,
       p.updated_at
  FROM backup_ext.encryption_policy p;

-- Copies of backups in further storage targets, with their attempts.
CREATE VIEW backup_ext.copies WITH (security_invoker = true) AS
SELECT c.backup_id, c.storage, c.key, c.status, c.size_bytes, c.sha256, c.finished_at, c.error,
       c.attempts, c.next_try_at, c.job_id
  FROM backup_ext.backup_copies c;

-- Every storage target with what lives there (superusers only: no grant).
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

-- Raises for an unknown status; IMMUTABLE so that with a constant argument the planner folds it
-- (and so raises) once, at plan time.
CREATE FUNCTION backup_ext.checked_status(status text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF status IS NOT NULL
       AND status NOT IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'expired') THEN
        RAISE EXCEPTION 'unknown status "%"', status
            USING ERRCODE = '22023',
                  HINT = 'Statuses are: queued, running, succeeded, failed, cancelled, expired.';
    END IF;
    RETURN status;
END
$fn$;

-- A plain SQL function, so the planner inlines it: LIMIT and WHERE clauses of the caller reach
-- the indexes instead of filtering a materialized result.
CREATE FUNCTION backup_ext.list_backups(dbname text DEFAULT NULL, status text DEFAULT NULL)
RETURNS SETOF backup_ext.backups
LANGUAGE sql STABLE
AS $fn$
    SELECT b.*
      FROM backup_ext.backups b
     WHERE ($1 IS NULL OR b.database = $1)
       AND (backup_ext.checked_status($2) IS NULL OR b.status = backup_ext.checked_status($2))
     ORDER BY b.backup_id DESC
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

-- A backup_cluster() set is succeeded only when every member is.
CREATE VIEW backup_ext.sets WITH (security_invoker = true) AS
SELECT s.set_id,
       s.format,
       s.label,
       s.requested_by,
       s.requested_at,
       max(j.finished_at) FILTER (WHERE j.status NOT IN ('queued', 'running')) AS finished_at,
       count(j.job_id) AS members,
       count(j.job_id) FILTER (WHERE j.status = 'succeeded') AS succeeded,
       count(j.job_id) FILTER (WHERE j.status IN ('failed', 'cancelled')) AS failed,
       CASE
           WHEN count(j.job_id) FILTER (WHERE j.status IN ('queued', 'running')) > 0 THEN 'running'
           WHEN count(j.job_id) = count(j.job_id) FILTER (WHERE j.status = 'succeeded') THEN 'succeeded'
           ELSE 'failed'
       END AS status,
       sum(a.size_bytes) AS size_bytes
  FROM backup_ext.backup_sets s
  LEFT JOIN backup_ext.jobs j ON j.set_id = s.set_id
  LEFT JOIN backup_ext.artifacts a ON a.job_id = j.job_id
 GROUP BY s.set_id;

-- Running jobs with their progress.
CREATE VIEW backup_ext.activity WITH (security_invoker = true) AS
SELECT j.job_id,
       j.kind,
       j.database,
       j.set_id,
       j.requested_by,
       j.started_at,
       clock_timestamp() - j.started_at AS elapsed,
       j.bytes_written,
       round(j.bytes_written / greatest(extract(epoch FROM clock_timestamp() - j.started_at), 0.001))::bigint
           AS bytes_per_second,
       j.tables_done,
       j.tables_total,
       CASE WHEN j.tables_total > 0
            THEN round(100.0 * j.tables_done / j.tables_total, 1) END AS percent_tables,
       j.worker_pid
  FROM backup_ext.jobs j
 WHERE j.status = 'running';

CREATE FUNCTION backup_ext.set_retention(dbname text, keep_last int DEFAULT NULL,
                                         keep_days int DEFAULT NULL, keep_daily int DEFAULT NULL,
                                         keep_weekly int DEFAULT NULL, keep_monthly int DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF least(keep_last, keep_days, keep_daily, keep_weekly, keep_monthly) < 1 THEN
        RAISE EXCEPTION 'retention counts must be at least 1'
            USING ERRCODE = '22023',
                  HINT = 'Leave a rule NULL to disable it; the newest backup is always kept.';
    END IF;
    IF num_nonnulls(keep_last, keep_days, keep_daily, keep_weekly, keep_monthly) = 0 THEN
        -- No rule at all: forget the policy (keep everything, or fall back to the default).
        DELETE FROM backup_ext.retention r WHERE r.database IS NOT DISTINCT FROM dbname;
        RETURN;
    END IF;
    INSERT INTO backup_ext.retention AS r
           (database, keep_last, keep_days, keep_daily, keep_weekly, keep_monthly)
    VALUES (dbname, keep_last, keep_days, keep_daily, keep_weekly, keep_monthly)
    ON CONFLICT (database) DO UPDATE
       SET keep_last = EXCLUDED.keep_last, keep_days = EXCLUDED.keep_days,
           keep_daily = EXCLUDED.keep_daily, keep_weekly = EXCLUDED.keep_weekly,
           keep_monthly = EXCLUDED.keep_monthly, updated_at = now();
END
$fn$;

-- Which further storage targets every backup of a database is copied to after it succeeds
-- (dbname NULL: the default for all databases; 'globals' for globals). An empty or NULL list
-- removes the policy.
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
