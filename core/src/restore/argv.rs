//! Command lines for restoring: pg_restore, psql, createdb and dropdb.
//!
//! As for dumps, every argument is its own argv element and values are
//! attached with `=`. Database names given to createdb/dropdb follow `--`,
//! so a name starting with `-` stays a name.

use crate::conninfo::Connection;
use crate::error::{quoted, RequestError};
use crate::process::command::{archive_arg, arg, path_arg};
use crate::restore::request::{RestoreOptions, RestoreRequest};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The longest database name PostgreSQL keeps (NAMEDATALEN - 1 bytes);
/// longer names are silently truncated by the server.
pub const MAX_DATABASE_NAME_BYTES: usize = 63;

/// Separates the table name from the row count in [`psql_query_argv`]
/// output; a control character cannot appear in identifiers pg_dump prints
/// unquoted, and the verification query quotes everything else.
pub const FIELD_SEPARATOR: char = '\u{1f}';

fn with_path(prefix: &str, path: &Path) -> OsString {
    let mut s = OsString::from(prefix);
    s.push(path.as_os_str());
    s
}

pub fn validate_database_name(name: &str) -> Result<(), RequestError> {
    let hint = "Database names are 1 to 63 bytes without control characters.";
    if name.is_empty() {
        return Err(RequestError::invalid("database name is empty", hint));
    }
    if name.len() > MAX_DATABASE_NAME_BYTES {
        return Err(RequestError::invalid(
            format!(
                "database name {} is too long ({} bytes)",
                quoted(name),
                name.len()
            ),
            hint,
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(RequestError::invalid(
            format!(
                "database name {} contains a control character",
                quoted(name)
            ),
            hint,
        ));
    }
    Ok(())
}

/// pg_restore into `target_db`. `use_list` is a `--list` excerpt written by
/// the caller (see [`crate::restore::request::use_list_for`]) when the request names
/// TOC ids. With `role`, pg_restore runs `SET ROLE` to it after connecting. Without
/// `exit_on_error` pg_restore goes on after a failed statement (see
/// [`crate::restore::run::RestoreStep::PgRestoreIntoOlderServer`]).
#[allow(clippy::too_many_arguments)]
pub fn pg_restore_argv(
    bin_dir: &Path,
    conn: &Connection,
    target_db: &str,
    archive: &Path,
    req: &RestoreRequest,
    use_list: Option<&Path>,
    role: Option<&str>,
    exit_on_error: bool,
) -> (PathBuf, Vec<OsString>) {
    // --verbose: its "processing data for table" lines are the restore's progress.
    let mut args = vec![
        arg(format!("--dbname={}", conn.conninfo(target_db))),
        arg("--verbose"),
    ];
    if exit_on_error {
        args.push(arg("--exit-on-error"));
    }
    if let Some(role) = role {
        args.push(arg(format!("--role={role}")));
    }
    if let Some(j) = req.jobs {
        args.push(arg(format!("--jobs={j}")));
    }
    if req.options.single_transaction {
        args.push(arg("--single-transaction"));
    }
    selection_args(&mut args, req, use_list);
    archive_arg(&mut args, archive);
    (bin_dir.join("pg_restore"), args)
}

/// pg_restore printing what it would run as a SQL script on stdout (`--file=-`), with the same
/// selection as [`pg_restore_argv`]; psql then runs it (see
/// [`crate::restore::run::RestoreStep::PsqlFromTool`]).
pub fn pg_restore_script_argv(
    bin_dir: &Path,
    archive: &Path,
    req: &RestoreRequest,
    use_list: Option<&Path>,
) -> (PathBuf, Vec<OsString>) {
    let mut args = vec![arg("--file=-")];
    selection_args(&mut args, req, use_list);
    archive_arg(&mut args, archive);
    (bin_dir.join("pg_restore"), args)
}

/// `pg_restore --list` with the same selection as [`pg_restore_argv`]: the entries a restore
/// with `req` (and `use_list`) would run, in its order, as pg_restore itself selects them.
pub fn pg_restore_selected_list_argv(
    bin_dir: &Path,
    archive: &Path,
    req: &RestoreRequest,
    use_list: Option<&Path>,
) -> (PathBuf, Vec<OsString>) {
    let mut args = vec![arg("--list")];
    selection_args(&mut args, req, use_list);
    archive_arg(&mut args, archive);
    (bin_dir.join("pg_restore"), args)
}

/// The definitions (privileges included) a restore with `req` would run, as a SQL script on
/// stdout: where the roles its GRANT statements name are read from.
pub fn pg_restore_selected_schema_argv(
    bin_dir: &Path,
    archive: &Path,
    req: &RestoreRequest,
    use_list: Option<&Path>,
) -> (PathBuf, Vec<OsString>) {
    let mut args = vec![arg("--file=-"), arg("--schema-only")];
    selection_args(&mut args, req, use_list);
    archive_arg(&mut args, archive);
    (bin_dir.join("pg_restore"), args)
}

/// The archive's definitions as a SQL script on stdout, for reading what a restore would run.
pub fn pg_restore_schema_argv(bin_dir: &Path, archive: &Path) -> (PathBuf, Vec<OsString>) {
    let mut args = vec![arg("--file=-"), arg("--schema-only")];
    archive_arg(&mut args, archive);
    (bin_dir.join("pg_restore"), args)
}

/// What is restored: clean, tables, schemas, schema/data only, owners, privileges, `-L`.
/// `--table`, `--schema` and `--exclude-schema` of a restore's options.
fn table_filter_args(args: &mut Vec<OsString>, o: &RestoreOptions) {
    for (flag, list) in [
        ("--table", &o.tables),
        ("--schema", &o.schemas),
        ("--exclude-schema", &o.exclude_schemas),
    ] {
        args.extend(list.iter().map(|p| arg(format!("{flag}={p}"))));
    }
}

fn selection_args(args: &mut Vec<OsString>, req: &RestoreRequest, use_list: Option<&Path>) {
    let o = &req.options;
    if o.clean {
        args.push(arg("--clean"));
        args.push(arg("--if-exists"));
    }
    table_filter_args(args, o);
    for (flag, on) in [
        ("--schema-only", o.schema_only),
        ("--data-only", o.data_only),
        ("--no-owner", o.no_owner),
        ("--no-privileges", o.no_privileges),
    ] {
        if on {
            args.push(arg(flag));
        }
    }
    if let Some(list) = use_list {
        args.push(with_path("--use-list=", list));
    }
}

/// `pg_restore --file=- --data-only` with the table selection of a restore (tables, schemas,
/// `-L` list): the `COPY` blocks of exactly the tables that restore writes, whose rows are the
/// archive's own count of them.
pub fn pg_restore_data_argv(
    bin_dir: &Path,
    archive: &Path,
    req: &RestoreRequest,
    use_list: Option<&Path>,
) -> (PathBuf, Vec<OsString>) {
    let mut args = vec![arg("--file=-"), arg("--data-only")];
    table_filter_args(&mut args, &req.options);
    if let Some(list) = use_list {
        args.push(with_path("--use-list=", list));
    }
    archive_arg(&mut args, archive);
    (bin_dir.join("pg_restore"), args)
}

/// The entries of `use_list` as a SQL script on stdout, for `restore_table()`: the
/// definitions without owners, privileges or tablespaces, or (`data`) the rows only.
pub fn pg_restore_entries_argv(
    bin_dir: &Path,
    archive: &Path,
    use_list: &Path,
    data: bool,
) -> (PathBuf, Vec<OsString>) {
    let mut args = vec![arg("--file=-")];
    if data {
        args.push(arg("--data-only"));
    } else {
        args.extend(["--no-owner", "--no-privileges", "--no-tablespaces"].map(arg));
    }
    args.push(with_path("--use-list=", use_list));
    archive_arg(&mut args, archive);
    (bin_dir.join("pg_restore"), args)
}

/// psql restoring one table in a single transaction, stopping at the first error: the
/// `before` statements (a `SET ROLE`), the `definition` script, the rows on stdin, then the
/// `indexes` script.
pub fn psql_table_argv(
    bin_dir: &Path,
    conn: &Connection,
    db: &str,
    before: &[String],
    definition: &Path,
    indexes: &Path,
) -> (PathBuf, Vec<OsString>) {
    let mut args = vec![
        arg("--no-psqlrc"),
        arg("--quiet"),
        arg("--variable=ON_ERROR_STOP=1"),
        arg("--single-transaction"),
        arg(format!("--dbname={}", conn.conninfo(db))),
    ];
    args.extend(before.iter().map(|sql| arg(format!("--command={sql}"))));
    args.push(with_path("--file=", Path::new(&path_arg(definition))));
    args.push(arg("--file=-"));
    args.push(with_path("--file=", Path::new(&path_arg(indexes))));
    (bin_dir.join("psql"), args)
}

/// The archive's data as SQL on stdout, for counting COPY rows.
pub fn pg_restore_to_stdout_argv(bin_dir: &Path, archive: &Path) -> (PathBuf, Vec<OsString>) {
    let mut args = vec![arg("--file=-"), arg("--data-only")];
    crate::process::command::archive_arg(&mut args, archive);
    (bin_dir.join("pg_restore"), args)
}

/// psql running a script from `script`, or from stdin when None, after the
/// statements in `before` (each its own `--command`, e.g. a `SET ROLE`).
pub fn psql_script_argv(
    bin_dir: &Path,
    conn: &Connection,
    db: &str,
    script: Option<&Path>,
    on_error_stop: bool,
    single_transaction: bool,
    before: &[String],
) -> (PathBuf, Vec<OsString>) {
    let mut args = vec![
        arg("--no-psqlrc"),
        arg("--quiet"),
        arg(format!("--dbname={}", conn.conninfo(db))),
    ];
    if on_error_stop {
        args.push(arg("--variable=ON_ERROR_STOP=1"));
    }
    if single_transaction {
        args.push(arg("--single-transaction"));
    }
    // psql runs --command and --file options in the order given.
    args.extend(before.iter().map(|sql| arg(format!("--command={sql}"))));
    args.push(match script {
        // `--file=-` means stdin, so a file called `-` gets `./`.
        Some(path) => with_path("--file=", Path::new(&path_arg(path))),
        None => arg("--file=-"),
    });
    (bin_dir.join("psql"), args)
}

/// psql printing the result of one query, unaligned, without headers,
/// fields separated by [`FIELD_SEPARATOR`].
pub fn psql_query_argv(
    bin_dir: &Path,
    conn: &Connection,
    db: &str,
    sql: &str,
) -> (PathBuf, Vec<OsString>) {
    (
        bin_dir.join("psql"),
        vec![
            arg("--no-psqlrc"),
            arg("--quiet"),
            arg("--no-align"),
            arg("--tuples-only"),
            arg(format!("--field-separator={FIELD_SEPARATOR}")),
            arg("--variable=ON_ERROR_STOP=1"),
            arg(format!("--dbname={}", conn.query_conninfo(db))),
            arg(format!("--command={sql}")),
        ],
    )
}

/// createdb connecting through `maintenance_db`; template0 so that the
/// restored objects do not collide with anything added to template1.
pub fn createdb_argv(
    bin_dir: &Path,
    conn: &Connection,
    maintenance_db: &str,
    name: &str,
) -> (PathBuf, Vec<OsString>) {
    (
        bin_dir.join("createdb"),
        vec![
            arg(format!(
                "--maintenance-db={}",
                conn.conninfo(maintenance_db)
            )),
            arg("--template=template0"),
            arg("--"),
            arg(name),
        ],
    )
}

/// psql running `statements` one by one in `maintenance_db`, stopping at the
/// first error: creating a restore's target database (`CREATE DATABASE`
/// must be a statement of its own) and setting its access rules.
pub fn create_database_argv(
    bin_dir: &Path,
    conn: &Connection,
    maintenance_db: &str,
    statements: &[String],
) -> (PathBuf, Vec<OsString>) {
    let mut args = vec![
        arg("--no-psqlrc"),
        arg("--quiet"),
        arg("--variable=ON_ERROR_STOP=1"),
        arg(format!("--dbname={}", conn.conninfo(maintenance_db))),
    ];
    args.extend(statements.iter().map(|sql| arg(format!("--command={sql}"))));
    (bin_dir.join("psql"), args)
}

/// dropdb that also terminates sessions still connected to `name`.
pub fn dropdb_argv(
    bin_dir: &Path,
    conn: &Connection,
    maintenance_db: &str,
    name: &str,
) -> (PathBuf, Vec<OsString>) {
    (
        bin_dir.join("dropdb"),
        vec![
            arg(format!(
                "--maintenance-db={}",
                conn.conninfo(maintenance_db)
            )),
            arg("--if-exists"),
            arg("--force"),
            arg("--"),
            arg(name),
        ],
    )
}

#[cfg(test)]
mod tests;
