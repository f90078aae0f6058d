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
