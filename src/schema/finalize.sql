-- Nothing is open to PUBLIC: superusers may do everything, members of backup_ext_operator may
-- request backups and read the catalog.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA backup_ext FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA backup_ext FROM PUBLIC;
GRANT USAGE ON SCHEMA backup_ext TO backup_ext_operator;
GRANT SELECT ON backup_ext.jobs, backup_ext.artifacts, backup_ext.backups TO backup_ext_operator;
GRANT EXECUTE ON FUNCTION
    backup_ext.backup_database(text, text, text, integer, text, jsonb),
    backup_ext.backup_globals(text, boolean),
    backup_ext.list_backups(text, text),
    backup_ext.job_status(bigint),
    backup_ext.wait_for(bigint, interval),
    backup_ext.cancel(bigint)
TO backup_ext_operator;
