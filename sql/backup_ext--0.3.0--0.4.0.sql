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
-- Alerts: add_alert() / drop_alert() / test_alert(), the outbox the worker sends from, and the
-- events raised once per crossing. Superusers only (no grant).
CREATE TABLE backup_ext.alert_targets (
    name       text PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('webhook', 'slack', 'discord', 'teams', 'email')),
    target     text NOT NULL,
    events     text[] NOT NULL,
    options    jsonb NOT NULL DEFAULT '{}',
    created_by name NOT NULL DEFAULT session_user,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE backup_ext.alert_deliveries (
    delivery_id  bigserial PRIMARY KEY,
    alert        text NOT NULL REFERENCES backup_ext.alert_targets ON DELETE CASCADE,
    event        text NOT NULL,
    payload      jsonb NOT NULL,
    attempts     int NOT NULL DEFAULT 0,
    next_try_at  timestamptz DEFAULT now(),
    delivered_at timestamptz,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_deliveries_due_idx ON backup_ext.alert_deliveries (next_try_at)
    WHERE delivered_at IS NULL AND next_try_at IS NOT NULL;
CREATE INDEX alert_deliveries_alert_idx ON backup_ext.alert_deliveries (alert);
CREATE INDEX alert_deliveries_created_idx ON backup_ext.alert_deliveries (created_at);

CREATE TABLE backup_ext.alert_raised (
    event     text NOT NULL,
    subject   text NOT NULL,
    as_of     timestamptz,
    raised_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event, subject)
);

SELECT pg_catalog.pg_extension_config_dump('backup_ext.alert_targets', '');

CREATE VIEW backup_ext.alerts WITH (security_invoker = true) AS
SELECT a.name, a.kind, a.target, a.events, a.options, a.created_by, a.created_at,
       coalesce(d.pending, 0) AS pending, coalesce(d.given_up, 0) AS given_up,
       d.last_delivered_at, d.last_error
  FROM backup_ext.alert_targets a
  LEFT JOIN LATERAL (
      SELECT count(*) FILTER (WHERE x.next_try_at IS NOT NULL) AS pending,
             count(*) FILTER (WHERE x.next_try_at IS NULL AND x.delivered_at IS NULL) AS given_up,
             max(x.delivered_at) AS last_delivered_at,
             (array_agg(x.last_error ORDER BY x.created_at DESC)
                  FILTER (WHERE x.last_error IS NOT NULL AND x.delivered_at IS NULL))[1] AS last_error
        FROM backup_ext.alert_deliveries x
       WHERE x.alert = a.name) d ON true;
REVOKE ALL ON backup_ext.alert_targets, backup_ext.alert_deliveries, backup_ext.alert_raised,
              backup_ext.alerts FROM PUBLIC;

CREATE FUNCTION backup_ext."add_alert"(
	"name" TEXT, /* Option < String > */
	"kind" TEXT, /* Option < String > */
	"target" TEXT, /* Option < String > */
	"events" TEXT[] DEFAULT '{failed,stale,verify_failed}', /* :: std :: option :: Option < Vec < Option < String > > > */
	"options" jsonb DEFAULT '{}' /* Option < JsonB > */
) RETURNS void
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'add_alert_wrapper';
REVOKE ALL ON FUNCTION backup_ext.add_alert(text, text, text, text[], jsonb) FROM PUBLIC;

CREATE FUNCTION backup_ext."drop_alert"(
	"name" TEXT /* Option < String > */
) RETURNS bool /* bool */
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'drop_alert_wrapper';
REVOKE ALL ON FUNCTION backup_ext.drop_alert(text) FROM PUBLIC;

CREATE FUNCTION backup_ext."test_alert"(
	"name" TEXT /* Option < String > */
) RETURNS TEXT /* String */
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'test_alert_wrapper';
REVOKE ALL ON FUNCTION backup_ext.test_alert(text) FROM PUBLIC;
-- End of the alerts section.
-- ---------------------------------------------------------------------------
-- Metrics, restore drills and guardrails (issue 13): the per-database summary behind status()
-- and metrics(), the job counters, the size guardrail's anomaly column.

ALTER TABLE backup_ext.artifacts ADD COLUMN anomaly text;

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
       a.anomaly
  FROM backup_ext.artifacts a
  JOIN backup_ext.jobs j ON j.job_id = a.job_id;

-- Per-database summary behind status() and metrics(): one row per database (and one for the
-- globals, database ''), kept current by triggers on jobs and artifacts in the same transaction
-- as every change the worker (or anyone) makes, so status() reads a handful of rows instead of
-- the whole history.
CREATE TABLE backup_ext.database_summary (
    kind                    text NOT NULL CHECK (kind IN ('database', 'globals')),
    -- '' for the globals
    database                text NOT NULL,
    -- the newest succeeded backup still kept
    last_backup_id          bigint,
    last_success_at         timestamptz,
    last_started_at         timestamptz,
    last_size_bytes         bigint,
    last_path               text,
    -- the size guardrail's reason when the newest backup is suspiciously small
    last_anomaly            text,
    last_failure_at         timestamptz,
    last_error              text,
    -- the newest passed verification of a kept backup
    last_verified_at        timestamptz,
    last_verified_backup_id bigint,
    backups_kept            bigint NOT NULL DEFAULT 0,
    bytes_kept              numeric NOT NULL DEFAULT 0,
    updated_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, database)
);
ALTER TABLE backup_ext.database_summary ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable_databases ON backup_ext.database_summary FOR SELECT
    USING (kind OPERATOR(pg_catalog.=) 'database' AND backup_ext.may_read_database(database));

-- Finished jobs per kind, database ('' for none) and final status since the extension was
-- installed (or upgraded: the history then known is counted): metrics()'s jobs_total counters,
-- which do not go down when purge() forgets old history.
CREATE TABLE backup_ext.job_totals (
    kind     text NOT NULL,
    database text NOT NULL,
    status   text NOT NULL,
    jobs     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, database, status)
);
ALTER TABLE backup_ext.job_totals ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable_databases ON backup_ext.job_totals FOR SELECT
    USING (backup_ext.may_read_database(database));

-- Recomputes one summary row from the history, each figure an index lookup. The row is locked
-- first: a concurrent refresh of the same database waits, and its figures, read by the next
-- statement (a new snapshot), include what this one committed. PL/pgSQL rather than SQL: a
-- session (the worker's) plans these statements once, not at every call.
CREATE FUNCTION backup_ext.refresh_database_summary(target_kind text, target_database text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
INSERT INTO backup_ext.database_summary (kind, database) VALUES ($1, $2)
ON CONFLICT (kind, database) DO NOTHING;
PERFORM FROM backup_ext.database_summary d WHERE d.kind = $1 AND d.database = $2 FOR UPDATE;
INSERT INTO backup_ext.database_summary AS d
       (kind, database, last_backup_id, last_success_at, last_started_at, last_size_bytes,
        last_path, last_anomaly, last_failure_at, last_error, last_verified_at,
        last_verified_backup_id, backups_kept, bytes_kept, updated_at)
SELECT $1, $2, s.backup_id, s.finished_at, s.started_at, s.size_bytes, s.path, s.anomaly,
       f.finished_at, f.error, v.verified_at, v.backup_id, k.kept, k.bytes, clock_timestamp()
  FROM (SELECT 1) one
  LEFT JOIN LATERAL (
      SELECT a.backup_id, j.finished_at, j.started_at, a.size_bytes, a.path, a.anomaly
        FROM backup_ext.jobs j JOIN backup_ext.artifacts a ON a.job_id = j.job_id
       WHERE j.kind = $1 AND coalesce(j.database, '') = $2 AND j.status = 'succeeded'
         AND a.expired_at IS NULL
       ORDER BY j.finished_at DESC LIMIT 1) s ON true
  LEFT JOIN LATERAL (
      SELECT j.finished_at, j.error
        FROM backup_ext.jobs j
       WHERE j.kind = $1 AND coalesce(j.database, '') = $2 AND j.status = 'failed'
       ORDER BY j.finished_at DESC LIMIT 1) f ON true
  LEFT JOIN LATERAL (
      SELECT a.verified_at, a.backup_id
        FROM backup_ext.artifacts a
       WHERE a.kind = $1 AND coalesce(a.database, '') = $2
         AND a.size_bytes IS NOT NULL AND a.expired_at IS NULL AND a.verify_status = 'passed'
       ORDER BY a.verified_at DESC LIMIT 1) v ON true
  CROSS JOIN LATERAL (
      SELECT count(*) AS kept, coalesce(sum(a.size_bytes), 0) AS bytes
        FROM backup_ext.artifacts a
       WHERE a.kind = $1 AND coalesce(a.database, '') = $2
         AND a.size_bytes IS NOT NULL AND a.expired_at IS NULL) k
ON CONFLICT (kind, database) DO UPDATE
   SET last_backup_id = EXCLUDED.last_backup_id, last_success_at = EXCLUDED.last_success_at,
       last_started_at = EXCLUDED.last_started_at, last_size_bytes = EXCLUDED.last_size_bytes,
       last_path = EXCLUDED.last_path, last_anomaly = EXCLUDED.last_anomaly,
       last_failure_at = EXCLUDED.last_failure_at, last_error = EXCLUDED.last_error,
       last_verified_at = EXCLUDED.last_verified_at,
       last_verified_backup_id = EXCLUDED.last_verified_backup_id,
       backups_kept = EXCLUDED.backups_kept, bytes_kept = EXCLUDED.bytes_kept,
       updated_at = EXCLUDED.updated_at;
END
$fn$;

-- Statement triggers with transition tables: one refresh per database a statement touched,
-- whatever the number of rows (a purge, a bulk load of the catalog, the worker's outcome).
CREATE FUNCTION backup_ext.jobs_changed()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO backup_ext.job_totals AS t (kind, database, status, jobs)
        SELECT n.kind, coalesce(n.database, ''), n.status, count(*)
          FROM new_rows n WHERE n.status IN ('succeeded', 'failed', 'cancelled')
         GROUP BY 1, 2, 3
        ON CONFLICT (kind, database, status) DO UPDATE SET jobs = t.jobs + EXCLUDED.jobs;
        PERFORM backup_ext.refresh_database_summary(x.kind, x.database)
           FROM (SELECT DISTINCT n.kind, coalesce(n.database, '') AS database
                   FROM new_rows n
                  WHERE n.kind IN ('database', 'globals')
                    AND n.status IN ('succeeded', 'failed')) x;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO backup_ext.job_totals AS t (kind, database, status, jobs)
        SELECT n.kind, coalesce(n.database, ''), n.status, count(*)
          FROM new_rows n JOIN old_rows o ON o.job_id = n.job_id
         WHERE n.status IN ('succeeded', 'failed', 'cancelled') AND n.status <> o.status
         GROUP BY 1, 2, 3
        ON CONFLICT (kind, database, status) DO UPDATE SET jobs = t.jobs + EXCLUDED.jobs;
        PERFORM backup_ext.refresh_database_summary(x.kind, x.database)
           FROM (SELECT n.kind, coalesce(n.database, '') AS database
                   FROM new_rows n JOIN old_rows o ON o.job_id = n.job_id
                  WHERE n.kind IN ('database', 'globals')
                    -- only finished jobs are summarised: claiming a job or its progress
                    -- changes no figure
                    AND (n.status IN ('succeeded', 'failed') OR o.status IN ('succeeded', 'failed'))
                    AND (n.status, n.started_at, n.finished_at, n.error, n.kind, n.database)
                        IS DISTINCT FROM (o.status, o.started_at, o.finished_at, o.error, o.kind, o.database)
                 UNION
                 SELECT o.kind, coalesce(o.database, '')
                   FROM new_rows n JOIN old_rows o ON o.job_id = n.job_id
                  WHERE o.kind IN ('database', 'globals')
                    AND (o.kind, o.database) IS DISTINCT FROM (n.kind, n.database)) x;
    ELSE
        PERFORM backup_ext.refresh_database_summary(x.kind, x.database)
           FROM (SELECT DISTINCT o.kind, coalesce(o.database, '') AS database
                   FROM old_rows o WHERE o.kind IN ('database', 'globals')) x;
    END IF;
    RETURN NULL;
END
$fn$;

CREATE FUNCTION backup_ext.artifacts_changed()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM backup_ext.refresh_database_summary(x.kind, x.database)
           FROM (SELECT DISTINCT n.kind, coalesce(n.database, '') AS database
                   FROM new_rows n
                  WHERE n.kind IN ('database', 'globals') AND n.size_bytes IS NOT NULL) x;
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM backup_ext.refresh_database_summary(x.kind, x.database)
           FROM (SELECT n.kind, coalesce(n.database, '') AS database
                   FROM new_rows n JOIN old_rows o ON o.backup_id = n.backup_id
                  WHERE n.kind IN ('database', 'globals')
                    -- a backup counts once its size is recorded: not while its job runs
                    AND (n.size_bytes IS NOT NULL OR o.size_bytes IS NOT NULL)
                    AND (n.size_bytes, n.expired_at, n.path, n.verified_at, n.verify_status,
                         n.anomaly, n.kind, n.database)
                        IS DISTINCT FROM (o.size_bytes, o.expired_at, o.path, o.verified_at,
                                          o.verify_status, o.anomaly, o.kind, o.database)
                 UNION
                 SELECT o.kind, coalesce(o.database, '')
                   FROM new_rows n JOIN old_rows o ON o.backup_id = n.backup_id
                  WHERE o.kind IN ('database', 'globals')
                    AND (o.kind, o.database) IS DISTINCT FROM (n.kind, n.database)) x;
    ELSE
        PERFORM backup_ext.refresh_database_summary(x.kind, x.database)
           FROM (SELECT DISTINCT o.kind, coalesce(o.database, '') AS database
                   FROM old_rows o WHERE o.kind IN ('database', 'globals')) x;
    END IF;
    RETURN NULL;
END
$fn$;

-- Restore drills and every other verification: which backup, when, how, the tables and rows a
-- test restore compared (read from the job's message, which the worker writes as "test
-- restore: N tables, M rows"), the result. Kept as long as the job history (history_days).
CREATE VIEW backup_ext.verifications WITH (security_invoker = true) AS
SELECT j.job_id,
       j.backup_id,
       j.database,
       j.schedule,
       coalesce((j.request ->> 'test_restore')::boolean, false) AS test_restore,
       j.requested_by,
       j.started_at,
       j.finished_at,
       CASE j.status WHEN 'succeeded' THEN 'passed' ELSE j.status END AS result,
       substring(coalesce(j.message, j.error) FROM 'test restore: ([0-9]+) tables')::bigint
           AS tables_compared,
       substring(coalesce(j.message, j.error) FROM 'test restore: [0-9]+ tables, ([0-9]+) rows')::bigint
           AS rows_compared,
       coalesce(j.message, j.error) AS detail
  FROM backup_ext.jobs j
 WHERE j.kind = 'verify';

-- How many alert deliveries wait to be sent, for metrics(). Alerts are superuser business;
-- the count alone is no secret, hence a definer function.
CREATE FUNCTION backup_ext.alert_deliveries_pending()
RETURNS bigint
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
SELECT count(*) FROM backup_ext.alert_deliveries d
 WHERE d.delivered_at IS NULL AND d.next_try_at IS NOT NULL;
$fn$;

-- Fill the summary and the counters from the history kept so far, then keep them current.
INSERT INTO backup_ext.job_totals (kind, database, status, jobs)
SELECT j.kind, coalesce(j.database, ''), j.status, count(*)
  FROM backup_ext.jobs j WHERE j.status IN ('succeeded', 'failed', 'cancelled')
 GROUP BY 1, 2, 3;
SELECT backup_ext.refresh_database_summary(x.kind, x.database)
  FROM (SELECT DISTINCT j.kind, coalesce(j.database, '') AS database
          FROM backup_ext.jobs j WHERE j.kind IN ('database', 'globals')) x;

CREATE TRIGGER summary_on_insert AFTER INSERT ON backup_ext.jobs
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION backup_ext.jobs_changed();
CREATE TRIGGER summary_on_update AFTER UPDATE ON backup_ext.jobs
    REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION backup_ext.jobs_changed();
CREATE TRIGGER summary_on_delete AFTER DELETE ON backup_ext.jobs
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION backup_ext.jobs_changed();
CREATE TRIGGER summary_on_insert AFTER INSERT ON backup_ext.artifacts
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION backup_ext.artifacts_changed();
CREATE TRIGGER summary_on_update AFTER UPDATE ON backup_ext.artifacts
    REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION backup_ext.artifacts_changed();
CREATE TRIGGER summary_on_delete AFTER DELETE ON backup_ext.artifacts
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION backup_ext.artifacts_changed();


-- status() gains last_verified_at, last_duration and anomaly: a new result type.
DROP FUNCTION backup_ext.status();
-- One row per database (and one for globals), also for databases never backed up. The figures
-- come from backup_ext.database_summary (kept current by triggers), so the cost does not grow
-- with the length of the history; the newest live backup's file is looked at (one stat per
-- database), since a backup whose file is gone cannot be restored. Defined here because it
-- calls backup_file_exists() (Rust).
CREATE FUNCTION backup_ext.status()
RETURNS TABLE (database text, last_success_at timestamptz, last_success_age interval,
               last_size_bytes bigint, last_failure_at timestamptz, last_error text,
               backups_kept bigint, bytes_kept numeric, status text,
               last_verified_at timestamptz, last_duration interval, anomaly text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
WITH all_targets(kind, name) AS (
    -- datname is of type name (collation "C"); the summary uses the default collation.
    SELECT 'database', datname::text COLLATE "default" FROM pg_database WHERE datallowconn AND NOT datistemplate
    UNION
    -- dropped databases whose backups are still kept
    SELECT 'database', d.database FROM backup_ext.database_summary d
     WHERE d.kind = 'database' AND d.backups_kept > 0
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
           d.last_success_at, d.last_size_bytes, d.last_failure_at,
           CASE WHEN s.missing THEN format('newest backup %s is missing: %s', d.last_backup_id, d.last_path)
                WHEN vf.verify_message IS NOT NULL
                    THEN format('newest backup %s failed its verification: %s', d.last_backup_id,
                                split_part(vf.verify_message, E'\n', 1))
                WHEN cl.lagging IS NOT NULL AND NOT coalesce(d.last_failure_at > d.last_success_at, false)
                    THEN format('newest backup %s has no copy in %s yet', d.last_backup_id, cl.lagging)
                ELSE d.last_error END AS last_error,
           coalesce(s.missing, false) AS missing,
           vf.verify_message IS NOT NULL AS verify_failed,
           cl.lagging,
           coalesce(d.backups_kept, 0) AS kept, coalesce(d.bytes_kept, 0) AS bytes,
           d.last_verified_at,
           d.last_success_at - d.last_started_at AS last_duration,
           d.last_anomaly
      FROM targets t
      LEFT JOIN backup_ext.database_summary d ON d.kind = t.kind AND d.database = t.name
      LEFT JOIN LATERAL (
          -- backup_file_exists() is volatile: computed once per database.
          SELECT backup_ext.backup_file_exists(d.last_path) IS FALSE AS missing
           WHERE d.last_backup_id IS NOT NULL) s ON true
      LEFT JOIN LATERAL (
          -- the newest backup's last verification failed: it is gone, changed or unreadable
          SELECT a.verify_message FROM backup_ext.artifacts a
           WHERE a.backup_id = d.last_backup_id AND a.verify_status = 'failed') vf ON true
      LEFT JOIN LATERAL (
          -- copies (set_copies()) of the newest backup still missing after backup_ext.copy_lag
          SELECT string_agg(c.storage, ', ' ORDER BY c.storage) AS lagging
            FROM backup_ext.backup_copies c
           WHERE c.backup_id = d.last_backup_id AND c.status <> 'succeeded'
             AND d.last_success_at < now() - current_setting('backup_ext.copy_lag')::interval) cl ON true
)
SELECT p.database, p.last_success_at, now() - p.last_success_at, p.last_size_bytes,
       p.last_failure_at, p.last_error, p.kept, p.bytes,
       CASE
           WHEN p.last_success_at IS NULL THEN 'critical'
           WHEN p.missing THEN 'critical'
           WHEN p.verify_failed THEN 'critical'
           WHEN now() - p.last_success_at >= current_setting('backup_ext.critical_age')::interval THEN 'critical'
           WHEN now() - p.last_success_at >= current_setting('backup_ext.warn_age')::interval THEN 'warning'
           WHEN p.last_failure_at > p.last_success_at THEN 'warning'
           WHEN p.lagging IS NOT NULL THEN 'warning'
           WHEN p.last_anomaly IS NOT NULL THEN 'warning'
           WHEN current_setting('backup_ext.verify_age')::interval > interval '0'
                AND (p.last_verified_at IS NULL
                     OR now() - p.last_verified_at >= current_setting('backup_ext.verify_age')::interval)
               THEN 'warning'
           ELSE 'ok'
       END,
       p.last_verified_at, p.last_duration, p.last_anomaly
  FROM per_db p
 ORDER BY p.database;
$fn$;


-- One line for Nagios-style checks: 'BACKUP OK - ...' / WARNING / CRITICAL.
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
                              OR s.last_error LIKE 'newest backup % failed its verification: %'
                              OR s.last_error LIKE 'newest backup % has no copy in % yet'
                            THEN ' (' || s.last_error || ')' ELSE '' END
                    || CASE WHEN s.anomaly IS NOT NULL THEN ' (' || s.anomaly || ')' ELSE '' END
                    || CASE WHEN s.last_success_at IS NULL
                              OR current_setting('backup_ext.verify_age')::interval <= interval '0' THEN ''
                            WHEN s.last_verified_at IS NULL THEN ' (never verified)'
                            WHEN now() - s.last_verified_at >= current_setting('backup_ext.verify_age')::interval
                            THEN ' (last verified ' || date_trunc('minute', now() - s.last_verified_at)::text || ' ago)'
                            ELSE '' END,
                    '; ' ORDER BY s.database) FILTER (WHERE s.status <> 'ok'), 'all databases backed up') ||
       format(' | ok=%s warning=%s critical=%s',
              count(*) FILTER (WHERE s.status = 'ok'),
              count(*) FILTER (WHERE s.status = 'warning'),
              count(*) FILTER (WHERE s.status = 'critical'))
  FROM backup_ext.status() s;
$fn$;


-- The health of every database and of the job queue in the Prometheus text exposition format
-- (version 0.0.4), for a scrape through postgres_exporter / sql_exporter or any HTTP wrapper.
-- Same callers and same rows as status(); a figure that does not exist yet (no success, never
-- verified) has no sample.
CREATE FUNCTION backup_ext.metrics()
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
WITH meta(ord, metric, type, help) AS (VALUES
    (1, 'backup_ext_last_success_timestamp_seconds', 'gauge', 'Finish time of the newest successful backup still kept, in seconds since the epoch.'),
    (2, 'backup_ext_last_success_age_seconds', 'gauge', 'Age of the newest successful backup still kept, in seconds.'),
    (3, 'backup_ext_last_size_bytes', 'gauge', 'Size of the newest successful backup, in bytes.'),
    (4, 'backup_ext_last_duration_seconds', 'gauge', 'Run time of the newest successful backup, in seconds.'),
    (5, 'backup_ext_last_verified_timestamp_seconds', 'gauge', 'Time of the newest passed verification of a kept backup, in seconds since the epoch.'),
    (6, 'backup_ext_backups_kept', 'gauge', 'Backups kept.'),
    (7, 'backup_ext_bytes_kept', 'gauge', 'Bytes of the backups kept.'),
    (8, 'backup_ext_status', 'gauge', 'Health as in status(): 0 ok, 1 warning, 2 critical.'),
    (9, 'backup_ext_jobs_running', 'gauge', 'Jobs running now.'),
    (10, 'backup_ext_jobs_queued', 'gauge', 'Jobs waiting for the worker.'),
    (11, 'backup_ext_jobs_total', 'counter', 'Jobs finished, by kind and final status.'),
    (12, 'backup_ext_alert_deliveries_pending', 'gauge', 'Alert deliveries not yet sent.')
),
-- Materialized: status() runs once, not once per metric family.
st AS MATERIALIZED (
    SELECT '{database="' || replace(replace(replace(s.database, chr(92), chr(92) || chr(92)),
                                            '"', chr(92) || '"'), chr(10), chr(92) || 'n')
           || '"}' AS labels, s.*
      FROM backup_ext.status() s
),
samples(metric, labels, value) AS MATERIALIZED (
    SELECT m.metric, st.labels, m.value
      FROM st CROSS JOIN LATERAL (VALUES
          ('backup_ext_last_success_timestamp_seconds', extract(epoch FROM st.last_success_at)),
          ('backup_ext_last_success_age_seconds', extract(epoch FROM st.last_success_age)),
          ('backup_ext_last_size_bytes', st.last_size_bytes::numeric),
          ('backup_ext_last_duration_seconds', extract(epoch FROM st.last_duration)),
          ('backup_ext_last_verified_timestamp_seconds', extract(epoch FROM st.last_verified_at)),
          ('backup_ext_backups_kept', st.backups_kept::numeric),
          ('backup_ext_bytes_kept', st.bytes_kept),
          ('backup_ext_status', CASE st.status WHEN 'ok' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END::numeric)
      ) m(metric, value)
     WHERE m.value IS NOT NULL
    UNION ALL
    SELECT 'backup_ext_jobs_running', '', count(*) FILTER (WHERE j.status = 'running')
      FROM backup_ext.jobs j WHERE j.status IN ('queued', 'running')
    UNION ALL
    SELECT 'backup_ext_jobs_queued', '', count(*) FILTER (WHERE j.status = 'queued')
      FROM backup_ext.jobs j WHERE j.status IN ('queued', 'running')
    UNION ALL
    SELECT 'backup_ext_jobs_total', format('{kind="%s",status="%s"}', t.kind, t.status), sum(t.jobs)
      FROM backup_ext.job_totals t GROUP BY t.kind, t.status
    UNION ALL
    SELECT 'backup_ext_alert_deliveries_pending', '', backup_ext.alert_deliveries_pending()
)
SELECT string_agg(format(E'# HELP %s %s\n# TYPE %s %s\n', m.metric, m.help, m.metric, m.type)
                  || coalesce((SELECT string_agg(x.metric || x.labels || ' ' || x.value::text || E'\n',
                                                 '' ORDER BY x.labels)
                                 FROM samples x WHERE x.metric = m.metric), ''),
                  '' ORDER BY m.ord)
  FROM meta m;
$fn$;


REVOKE ALL ON FUNCTION backup_ext.status(), backup_ext.metrics(),
    backup_ext.alert_deliveries_pending(), backup_ext.refresh_database_summary(text, text),
    backup_ext.jobs_changed(), backup_ext.artifacts_changed() FROM PUBLIC;
REVOKE ALL ON backup_ext.database_summary, backup_ext.job_totals, backup_ext.verifications
    FROM PUBLIC;
GRANT SELECT ON backup_ext.database_summary, backup_ext.job_totals, backup_ext.verifications
    TO backup_ext_operator, backup_ext_restorer;
GRANT EXECUTE ON FUNCTION backup_ext.status(), backup_ext.metrics(),
    backup_ext.alert_deliveries_pending()
    TO backup_ext_operator, backup_ext_restorer;

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
       a.anomaly,
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

-- Restore preflight: restore_plan() says what restore_backup() would do and what would stop
-- it; the source database's size is recorded with each backup for its space estimate.
ALTER TABLE backup_ext.artifacts ADD COLUMN source_size_bytes bigint;

CREATE FUNCTION backup_ext."restore_plan"(
	"backup_id" bigint, /* i64 */
	"target_db" TEXT DEFAULT NULL, /* Option < String > */
	"create_db" bool DEFAULT true, /* Option < bool > */
	"jobs" INT DEFAULT NULL, /* Option < i32 > */
	"options" jsonb DEFAULT '{}' /* Option < JsonB > */
) RETURNS TABLE (
	"step" INT,  /* i32 */
	"action" TEXT,  /* String */
	"kind" TEXT,  /* Option < String > */
	"schema" TEXT,  /* Option < String > */
	"name" TEXT,  /* Option < String > */
	"detail" TEXT  /* String */
)
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'restore_plan_wrapper';
-- Callable by whoever may restore, like restore_backup().
REVOKE ALL ON FUNCTION backup_ext.restore_plan(bigint, text, boolean, integer, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION backup_ext.restore_plan(bigint, text, boolean, integer, jsonb)
    TO backup_ext_restorer;

-- Restores that cannot lie: row counts checked against the archive, backup_ext.stall_timeout,
-- and restore progress. No catalog change: restores fill the existing jobs.bytes_written,
-- jobs.tables_done and jobs.tables_total columns (shown by backup_ext.activity), and the new
-- setting is registered by the library.

--------------------------------------------------------------------------------------------------
-- Disaster recovery: import_backups() takes the backups a storage target holds (read from their
-- sidecars) into the catalog, marked origin = 'imported' with what the sidecar said of them
-- where they were made; check_encryption() says whether backup_ext.identity_file reads what
-- the policies and the live backups are encrypted to. Superusers only (no grant).
ALTER TABLE backup_ext.artifacts ADD COLUMN origin text NOT NULL DEFAULT 'local'
    CHECK (origin IN ('local', 'imported'));
ALTER TABLE backup_ext.artifacts ADD COLUMN imported_from jsonb;
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
       a.anomaly,
       a.encrypted,
       a.recipients,
       a.origin
  FROM backup_ext.artifacts a
  JOIN backup_ext.jobs j ON j.job_id = a.job_id;

CREATE FUNCTION backup_ext."import_backups"(
	"storage" TEXT DEFAULT 'local', /* Option < String > */
	"all_clusters" bool DEFAULT false /* Option < bool > */
) RETURNS TABLE (
	"backup_id" bigint,  /* Option < i64 > */
	"database" TEXT,  /* Option < String > */
	"kind" TEXT,  /* Option < String > */
	"finished_at" timestamp with time zone,  /* Option < TimestampWithTimeZone > */
	"key" TEXT,  /* String */
	"action" TEXT  /* String */
)
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'import_backups_wrapper';
REVOKE ALL ON FUNCTION backup_ext.import_backups(text, boolean) FROM PUBLIC;

CREATE FUNCTION backup_ext."check_encryption"() RETURNS TABLE (
	"source" TEXT,  /* String */
	"database" TEXT,  /* Option < String > */
	"recipient" TEXT,  /* Option < String > */
	"fingerprint" TEXT,  /* String */
	"ok" bool,  /* bool */
	"detail" TEXT  /* String */
)
STRICT VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_encryption_wrapper';
REVOKE ALL ON FUNCTION backup_ext.check_encryption() FROM PUBLIC;
-- list_remote(): in_catalog also for backups imported from the cluster that wrote them.
CREATE OR REPLACE FUNCTION backup_ext.list_remote(storage text, all_clusters boolean DEFAULT false)
RETURNS TABLE (backup_id bigint, database text, kind text, finished_at timestamptz,
               size_bytes bigint, sha256 text, system_identifier text, key text,
               in_catalog boolean)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
SELECT r.backup_id, r.database, r.kind, r.finished_at::timestamptz, r.size_bytes, r.sha256,
       r.system_identifier, r.key,
       EXISTS (SELECT 1 FROM backup_ext.artifacts a
                WHERE CASE WHEN a.origin = 'imported'
                           THEN a.imported_from->>'system_identifier' = r.system_identifier
                                AND a.imported_from->>'backup_id' = r.backup_id::text
                           ELSE a.backup_id = r.backup_id
                                AND r.system_identifier = (SELECT s.system_identifier::text
                                                             FROM pg_control_system() s)
                      END
                  AND ((a.expired_at IS NULL
                        AND ((a.storage = $1 AND a.key = r.key)
                             OR (a.storage = 'local' AND $1 = 'local'
                                 AND right(a.path, length(r.key) + 1) = '/' || r.key)))
                       OR EXISTS (SELECT 1 FROM backup_ext.backup_copies c
                                   WHERE c.backup_id = a.backup_id AND c.storage = $1
                                     AND c.key = r.key AND c.status = 'succeeded')))
  FROM backup_ext.remote_sidecars($1, $2) r
 ORDER BY r.finished_at, r.key;
$fn$;
-- End of the disaster recovery section.

-- restore_table(): one table of a backup restored beside the live one, as a new table (or
-- into an existing empty one with data_only). Restorers may call it, with the same rights
-- model as restore_backup().
CREATE FUNCTION backup_ext."restore_table"(
	"backup_id" bigint, /* i64 */
	"table_name" TEXT, /* String */
	"schema_name" TEXT DEFAULT 'public', /* Option < String > */
	"into_db" TEXT DEFAULT NULL, /* Option < String > */
	"into_schema" TEXT DEFAULT NULL, /* Option < String > */
	"into_name" TEXT DEFAULT NULL, /* Option < String > */
	"options" jsonb DEFAULT '{}' /* Option < JsonB > */
) RETURNS bigint /* i64 */
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'restore_table_wrapper';
REVOKE ALL ON FUNCTION backup_ext.restore_table(bigint, text, text, text, text, text, jsonb)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    backup_ext.restore_table(bigint, text, text, text, text, text, jsonb)
TO backup_ext_restorer;
