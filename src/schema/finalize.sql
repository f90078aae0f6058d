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

-- Nothing is open to PUBLIC. Superusers may do everything; members of backup_ext_operator may
-- request backups, inspect and verify them and read the catalog; members of
-- backup_ext_restorer may restore. Each function also checks the caller's rights on the
-- database concerned (src/privileges.rs), and row security limits what the catalog shows.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA backup_ext FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA backup_ext FROM PUBLIC;
GRANT USAGE ON SCHEMA backup_ext TO backup_ext_operator, backup_ext_restorer;
GRANT SELECT ON backup_ext.jobs, backup_ext.artifacts, backup_ext.backups, backup_ext.sets,
                backup_ext.activity, backup_ext.backup_sets, backup_ext.retention,
                backup_ext.schedules, backup_ext.schedule_entries
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
    backup_ext.next_run(text, timestamptz),
    backup_ext.may_read_database(text)
TO backup_ext_operator, backup_ext_restorer;
GRANT EXECUTE ON FUNCTION
    backup_ext.backup_database(text, text, text, integer, text, jsonb),
    backup_ext.backup_globals(text, boolean),
    backup_ext.backup_cluster(text, text, jsonb),
    backup_ext.pin(bigint, boolean)
TO backup_ext_operator;
GRANT EXECUTE ON FUNCTION
    backup_ext.restore_backup(bigint, text, boolean, integer, jsonb)
TO backup_ext_restorer;
-- Retention and schedules decide what gets deleted and when, and globals and whole-cluster
-- backups carry every role's password hash: superusers only (no grant here).
