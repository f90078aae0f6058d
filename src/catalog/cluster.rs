//! What the worker and the SQL functions read about the cluster itself (`pg_database`,
//! `pg_roles`, settings) and the per-job login roles they create and drop.

use pgrx::prelude::*;

use super::{optional, texts, SpiResult};

/// Databases a cluster backup covers: connectable and not templates.
pub fn dumpable_databases() -> SpiResult<Vec<String>> {
    texts(
        "SELECT datname::text FROM pg_catalog.pg_database
          WHERE datallowconn AND NOT datistemplate AND datconnlimit <> -2
          ORDER BY datname",
        &[],
    )
}

/// Of `names`, the parameters this server does not know (in the given order).
pub fn unknown_settings(names: &[String]) -> SpiResult<Vec<String>> {
    texts(
        "SELECT n FROM pg_catalog.unnest($1::text[]) WITH ORDINALITY AS u(n, i)
          WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_settings s
                             WHERE s.name OPERATOR(pg_catalog.=) u.n)
          ORDER BY i",
        &[names.to_vec().into()],
    )
}

/// `Some(datallowconn)` for an existing database, `None` when there is no such database.
pub fn database_allows_connections(name: &str) -> SpiResult<Option<bool>> {
    optional(Spi::get_one_with_args::<bool>(
        "SELECT datallowconn AND datconnlimit <> -2 FROM pg_catalog.pg_database WHERE datname = $1",
        &[name.into()],
    ))
}

pub fn extension_installed() -> SpiResult<bool> {
    Ok(super::one_kept::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'backup_ext')",
        &[],
    )?
    .unwrap_or(false))
}

/// `server_version` of the running server, recorded with each backup.
pub fn server_version() -> SpiResult<String> {
    Ok(Spi::get_one::<String>("SELECT current_setting('server_version')")?.unwrap_or_default())
}

/// The bootstrap superuser, whom the tools connect as by default.
pub fn bootstrap_superuser() -> SpiResult<String> {
    Ok(
        Spi::get_one::<String>("SELECT rolname::text FROM pg_catalog.pg_roles WHERE oid = 10")?
            .unwrap_or_else(|| "postgres".into()),
    )
}

/// What `pg_database` says about a restore target.
pub struct DatabaseFacts {
    pub exists: bool,
    pub is_template: bool,
}

pub fn database_facts(name: &str) -> SpiResult<DatabaseFacts> {
    let template = optional(Spi::get_one_with_args::<bool>(
        "SELECT datistemplate FROM pg_catalog.pg_database WHERE datname = $1",
        &[name.into()],
    ))?;
    Ok(DatabaseFacts {
        exists: template.is_some(),
        is_template: template.unwrap_or(false),
    })
}

/// Whether `role` is a superuser now (a role dropped since the request is not).
pub fn role_is_superuser(role: &str) -> SpiResult<Option<bool>> {
    optional(Spi::get_one_with_args::<bool>(
        "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) $1::name",
        &[role.into()],
    ))
}

/// Creates the login role of one job: LOGIN with the given SCRAM verifier, a member of the
/// sandbox group and either of `acts_for` (whose rights it then has) or, without it, of
/// `pg_read_all_data` with BYPASSRLS (to count rows and nothing else). Names are quoted by
/// `format('%I')`; the verifier stays out of pg_stat_statements.
pub fn create_job_role(role: &str, acts_for: Option<&str>, verifier: &str) -> SpiResult<()> {
    let sql = Spi::get_one_with_args::<String>(
        "SELECT pg_catalog.format(
                    'CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
                     INHERIT %s PASSWORD %L IN ROLE %I, %I',
                    $1,
                    CASE WHEN $2::text IS NULL THEN 'BYPASSRLS' ELSE 'NOBYPASSRLS' END,
                    $3, coalesce($2, 'pg_read_all_data'), $4)",
        &[
            role.into(),
            acts_for.into(),
            verifier.into(),
            backup_core::login::SANDBOX_GROUP.into(),
        ],
    )?
    .unwrap_or_default();
    Spi::run("SET LOCAL pg_stat_statements.track_utility = off")?;
    Spi::run(&sql)
}

/// Ends the sessions of a job's login role and drops it. A role that still owns something
/// (a restored object created after a `RESET ROLE`) is kept, without LOGIN, and reported.
pub fn drop_job_role(role: &str) -> SpiResult<Result<(), String>> {
    let exists = Spi::get_one_with_args::<bool>(
        "SELECT true FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) $1::name",
        &[role.into()],
    )
    .unwrap_or(None)
    .unwrap_or(false);
    if !exists {
        return Ok(Ok(()));
    }
    // CONNECT on a restored database, given to a login that counts its rows: a privilege on
    // a shared object, which would keep the role.
    let revokes = texts(
        "SELECT pg_catalog.format('REVOKE ALL ON DATABASE %I FROM %I', d.datname, $1)
           FROM pg_catalog.pg_database d, pg_catalog.aclexplode(d.datacl) a
          WHERE a.grantee OPERATOR(pg_catalog.=) (SELECT r.oid FROM pg_catalog.pg_roles r
                 WHERE r.rolname OPERATOR(pg_catalog.=) $1::name)
          GROUP BY d.datname",
        &[role.into()],
    )?;
    for revoke in revokes {
        Spi::run(&revoke)?;
    }
    Spi::run_with_args(
        "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity
          WHERE usename OPERATOR(pg_catalog.=) $1::name",
        &[role.into()],
    )?;
    let drop = Spi::get_one_with_args::<String>(
        "SELECT pg_catalog.format('DROP ROLE IF EXISTS %I', $1)",
        &[role.into()],
    )?
    .unwrap_or_default();
    let nologin = Spi::get_one_with_args::<String>(
        "SELECT pg_catalog.format('ALTER ROLE %I NOLOGIN', $1)",
        &[role.into()],
    )?
    .unwrap_or_default();
    if crate::subxact::try_or_none(|| Spi::run(&drop)).is_some_and(|r| r.is_ok()) {
        return Ok(Ok(()));
    }
    Spi::run(&nologin)?;
    Ok(Err(format!(
        "role \"{role}\" still owns objects or privileges and was kept without LOGIN"
    )))
}

/// Per-job login roles whose job is not running (left by a crash).
pub fn leftover_job_roles() -> SpiResult<Vec<String>> {
    texts(
        "SELECT r.rolname::text FROM pg_catalog.pg_roles r
          WHERE r.rolname OPERATOR(pg_catalog.~) '^backup_ext_job_[0-9]+$'
            AND NOT EXISTS (
                SELECT 1 FROM backup_ext.jobs j
                 WHERE j.status = 'running'
                   AND r.rolname OPERATOR(pg_catalog.=)
                       ('backup_ext_job_' OPERATOR(pg_catalog.||) j.job_id::text)::name)",
        &[],
    )
}

/// The access list of a restore's source database, to give the new database the same.
pub fn source_access(dbname: Option<&str>) -> SpiResult<backup_core::SourceAccess> {
    use backup_core::{DatabaseGrant, SourceAccess};
    let Some(dbname) = dbname else {
        return Ok(SourceAccess::Unknown);
    };
    Spi::connect(|client| {
        let found = client.select(
            "SELECT d.datacl IS NULL FROM pg_catalog.pg_database d
              WHERE d.datname OPERATOR(pg_catalog.=) $1::name",
            None,
            &[dbname.into()],
        )?;
        let Some(row) = found.into_iter().next() else {
            return Ok(SourceAccess::Unknown);
        };
        if row.get::<bool>(1)?.unwrap_or(false) {
            return Ok(SourceAccess::Default);
        }
        let rows = client.select(
            "SELECT CASE WHEN a.grantee = 0 THEN NULL
                         ELSE pg_catalog.pg_get_userbyid(a.grantee)::text END,
                    a.privilege_type
               FROM pg_catalog.pg_database d, pg_catalog.aclexplode(d.datacl) a
              WHERE d.datname OPERATOR(pg_catalog.=) $1::name
                AND a.grantee OPERATOR(pg_catalog.<>) d.datdba
              ORDER BY 1 NULLS FIRST, 2",
            None,
            &[dbname.into()],
        )?;
        let mut grants = Vec::new();
        for row in rows {
            grants.push(DatabaseGrant {
                grantee: row.get(1)?,
                privilege: row.get(2)?.unwrap_or_default(),
            });
        }
        Ok(SourceAccess::Grants(grants))
    })
}

/// The unix socket directory and port the tools connect to this server through.
pub fn local_socket() -> SpiResult<(String, String)> {
    let socket =
        Spi::get_one::<String>("SELECT pg_catalog.current_setting('unix_socket_directories')")?
            .unwrap_or_default();
    let port =
        Spi::get_one::<String>("SELECT pg_catalog.current_setting('port')")?.unwrap_or_default();
    Ok((socket, port))
}

/// Every role of this server, for a restore plan's missing roles.
pub fn role_names() -> SpiResult<std::collections::BTreeSet<String>> {
    Ok(texts("SELECT rolname::text FROM pg_catalog.pg_roles", &[])?
        .into_iter()
        .collect())
}

/// The extensions this server can create (a control file in its extension directory).
pub fn available_extensions() -> SpiResult<std::collections::BTreeSet<String>> {
    Ok(texts(
        "SELECT name::text FROM pg_catalog.pg_available_extensions",
        &[],
    )?
    .into_iter()
    .collect())
}

/// An existing restore target's owner and the number of other sessions connected to it.
pub fn target_sessions(name: &str) -> SpiResult<(Option<String>, i64)> {
    let owner = optional(Spi::get_one_with_args::<String>(
        "SELECT pg_catalog.pg_get_userbyid(datdba)::text FROM pg_catalog.pg_database
          WHERE datname OPERATOR(pg_catalog.=) $1::name",
        &[name.into()],
    ))?;
    let sessions = Spi::get_one_with_args::<i64>(
        "SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity
          WHERE datname OPERATOR(pg_catalog.=) $1::name
            AND backend_type OPERATOR(pg_catalog.=) 'client backend'
            AND pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()",
        &[name.into()],
    )?
    .unwrap_or(0);
    Ok((owner, sessions))
}

/// The server's data directory, whose filesystem a restore fills.
pub fn data_directory() -> SpiResult<String> {
    Ok(
        Spi::get_one::<String>("SELECT pg_catalog.current_setting('data_directory')")?
            .unwrap_or_default(),
    )
}

/// What exists in a database, as one JSON array of `[class, schema, name]` (classes and names
/// as `backup_core::restore::preflight::object_class` and `pg_restore --list` spell them).
/// Run by psql in the target database; a statement without parameters.
pub const TARGET_OBJECTS_QUERY: &str = "\
SELECT COALESCE(pg_catalog.json_agg(pg_catalog.json_build_array(o.c, o.s, o.n)), '[]')
  FROM (SELECT 'schema' AS c, NULL::text AS s, nspname::text AS n FROM pg_catalog.pg_namespace
        UNION ALL
        SELECT 'relation', n.nspname::text, c.relname::text
          FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'i', 'I')
        UNION ALL
        SELECT 'type', n.nspname::text, t.typname::text
          FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
         WHERE t.typtype IN ('b', 'c', 'd', 'e', 'r', 'm') AND t.typelem = 0
           AND (t.typrelid = 0 OR (SELECT r.relkind FROM pg_catalog.pg_class r
                                    WHERE r.oid = t.typrelid) = 'c')
        UNION ALL
        SELECT 'function', n.nspname::text,
               p.proname::text || '(' || pg_catalog.oidvectortypes(p.proargtypes) || ')'
          FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace) o";
