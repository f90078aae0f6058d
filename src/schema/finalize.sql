-- Built-in schedules with their next run (next_run() is defined in Rust, hence here).
CREATE VIEW backup_ext.schedules WITH (security_invoker = true) AS
SELECT s.name,
       s.cron,
       s.command,
       backup_ext.next_run(s.cron, greatest(now(), s.last_run_at)) AS next_run_at,
       s.last_run_at,
       s.last_job_id,
       s.last_set_id,
       coalesce(j.status, st.status) AS last_status,
       s.last_error,
       s.created_by,
       s.created_at
  FROM backup_ext.schedule_entries s
  LEFT JOIN backup_ext.jobs j ON j.job_id = s.last_job_id
  LEFT JOIN backup_ext.sets st ON st.set_id = s.last_set_id;

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
CREATE FUNCTION backup_ext.check_status()
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

-- What a storage target holds, read from the sidecars there; in_catalog says whether this
-- catalog knows the backup at that place (as written, or as a copy): this cluster's backup of
-- that id, or one imported (import_backups()) from that cluster's backup of that id.
CREATE FUNCTION backup_ext.list_remote(storage text, all_clusters boolean DEFAULT false)
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

-- Nothing is open to PUBLIC. Superusers may do everything; members of backup_ext_operator may
-- request backups, inspect and verify them and read the catalog; members of
-- backup_ext_restorer may restore. Each function also checks the caller's rights on the
-- database concerned (src/privileges.rs), and row security limits what the catalog shows.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA backup_ext FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA backup_ext FROM PUBLIC;
GRANT USAGE ON SCHEMA backup_ext TO backup_ext_operator, backup_ext_restorer;
GRANT SELECT ON backup_ext.jobs, backup_ext.artifacts, backup_ext.backups, backup_ext.sets,
                backup_ext.activity, backup_ext.backup_sets, backup_ext.retention,
                backup_ext.schedules, backup_ext.schedule_entries, backup_ext.backup_copies,
                backup_ext.copies, backup_ext.database_summary, backup_ext.job_totals,
                backup_ext.verifications
    TO backup_ext_operator, backup_ext_restorer;
GRANT EXECUTE ON FUNCTION
    backup_ext.list_backups(text, text),
    backup_ext.checked_status(text),
    backup_ext.job_status(bigint),
    backup_ext.wait_for(bigint, interval),
    backup_ext.cancel(bigint),
    backup_ext.backup_contents(bigint),
    backup_ext.verify_backup(bigint, boolean),
    backup_ext.status(),
    backup_ext.check_status(),
    backup_ext.metrics(),
    backup_ext.alert_deliveries_pending(),
    backup_ext.backup_file_exists(text),
    backup_ext.next_run(text, timestamptz),
    backup_ext.may_read_database(text)
TO backup_ext_operator, backup_ext_restorer;
GRANT EXECUTE ON FUNCTION
    backup_ext.backup_database(text, text, text, integer, text, jsonb),
    backup_ext.backup_globals(text, boolean, jsonb),
    backup_ext.backup_cluster(text, text, jsonb),
    backup_ext.pin(bigint, boolean)
TO backup_ext_operator;
GRANT EXECUTE ON FUNCTION
    backup_ext.restore_backup(bigint, text, boolean, integer, jsonb),
    backup_ext.restore_plan(bigint, text, boolean, integer, jsonb),
    backup_ext.restore_table(bigint, text, text, text, text, text, jsonb)
TO backup_ext_restorer;
-- Retention and schedules decide what gets deleted and when, and globals and whole-cluster
-- backups carry every role's password hash: superusers only (no grant here).
