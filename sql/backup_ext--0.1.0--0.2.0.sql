-- backup_ext 0.1.0 -> 0.2.0: least privilege (jobs act with the rights of the role that asked,
-- row security on the catalog, cancel requests that lock nothing the worker needs).

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'backup_ext_sandbox') THEN
        CREATE ROLE backup_ext_sandbox NOLOGIN;
    END IF;
END
$roles$;

-- Whose rights a job uses; jobs from 0.1.0 act for the role that requested them.
ALTER TABLE backup_ext.jobs ADD COLUMN run_as name;
UPDATE backup_ext.jobs SET run_as = requested_by;
ALTER TABLE backup_ext.jobs DROP COLUMN cancel_requested;

CREATE TABLE backup_ext.cancel_requests (
    job_id       bigint PRIMARY KEY,
    requested_by name NOT NULL DEFAULT session_user,
    requested_at timestamptz NOT NULL DEFAULT now()
);
SELECT pg_catalog.pg_extension_config_dump('backup_ext.cancel_requests', '');
REVOKE ALL ON backup_ext.cancel_requests FROM PUBLIC;

CREATE FUNCTION backup_ext.may_read_database(dbname text)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
RETURN coalesce((SELECT pg_catalog.has_database_privilege(d.oid, 'CONNECT')
                   FROM pg_catalog.pg_database d
                  WHERE d.datname OPERATOR(pg_catalog.=) dbname::name), false);
REVOKE ALL ON FUNCTION backup_ext.may_read_database(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION backup_ext.may_read_database(text)
    TO backup_ext_operator, backup_ext_restorer;

ALTER TABLE backup_ext.jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE backup_ext.artifacts ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable_databases ON backup_ext.jobs FOR SELECT
    USING (backup_ext.may_read_database(database) OR run_as OPERATOR(pg_catalog.=) current_user);
CREATE POLICY readable_databases ON backup_ext.artifacts FOR SELECT
    USING (backup_ext.may_read_database(database));

ALTER VIEW backup_ext.backups SET (security_invoker = true);
ALTER VIEW backup_ext.sets SET (security_invoker = true);
ALTER VIEW backup_ext.activity SET (security_invoker = true);
ALTER VIEW backup_ext.schedules SET (security_invoker = true);
