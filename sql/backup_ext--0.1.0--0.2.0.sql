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

-- status(): missing backup files
-- A succeeded backup whose file was deleted made status() say ok. status() now checks that the
-- newest live backup's file exists (through backup_file_exists(), which only answers for paths
-- inside backup_ext.directory) and says critical otherwise; check_status() gives the reason.
CREATE FUNCTION backup_ext."backup_file_exists"("path" TEXT) RETURNS bool
STRICT SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'backup_file_exists_wrapper';
REVOKE ALL ON FUNCTION backup_ext.backup_file_exists(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION backup_ext.backup_file_exists(text)
    TO backup_ext_operator, backup_ext_restorer;

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
                ELSE f.error END AS last_error,
           coalesce(s.missing, false) AS missing,
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
                            THEN ' (' || s.last_error || ')' ELSE '' END,
                    '; ' ORDER BY s.database) FILTER (WHERE s.status <> 'ok'), 'all databases backed up') ||
       format(' | ok=%s warning=%s critical=%s',
              count(*) FILTER (WHERE s.status = 'ok'),
              count(*) FILTER (WHERE s.status = 'warning'),
              count(*) FILTER (WHERE s.status = 'critical'))
  FROM backup_ext.status() s;
$fn$;

-- The calling role, not the outer user: the functions open to non-superusers note
-- current_user and switch to the extension owner themselves (src/privileges.rs).
ALTER FUNCTION backup_ext.backup_database(text, text, text, integer, text, jsonb) SECURITY INVOKER;
ALTER FUNCTION backup_ext.backup_globals(text, boolean) SECURITY INVOKER;
ALTER FUNCTION backup_ext.backup_cluster(text, text, jsonb) SECURITY INVOKER;
ALTER FUNCTION backup_ext.restore_backup(bigint, text, boolean, integer, jsonb) SECURITY INVOKER;
ALTER FUNCTION backup_ext.backup_contents(bigint) SECURITY INVOKER;
ALTER FUNCTION backup_ext.verify_backup(bigint, boolean) SECURITY INVOKER;
ALTER FUNCTION backup_ext.wait_for(bigint, interval) SECURITY INVOKER;
ALTER FUNCTION backup_ext.cancel(bigint) SECURITY INVOKER;

-- pin(): checks the caller's rights on the backup's database and refuses unfinished backups.
DROP FUNCTION backup_ext.pin(bigint, boolean);
CREATE FUNCTION backup_ext."pin"(
	"backup_id" bigint,
	"pinned" bool DEFAULT true
) RETURNS bool
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'pin_wrapper';
REVOKE ALL ON FUNCTION backup_ext.pin(bigint, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION backup_ext.pin(bigint, boolean) TO backup_ext_operator;
