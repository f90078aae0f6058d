//! `restore_table()`: one table of a backup restored beside the live one, as a new table (or
//! into an existing empty one with `data_only`). The same checks as `restore_backup()` run
//! first (rights, locating and checking the archive, the identity of an encrypted one), then
//! those of the table: it is in the backup, the new name is free, the schema exists.

use backup_core::{
    default_into_name, plain_dump_reader, read_script_entries, relation_facts_query,
    restored_suffix, table_entries, validate_relation_name, ArchiveSource, ErrorKind, Format,
    JobKind, RequestError, RestoreRequest, TableTarget, TocEntry,
};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

use super::restore::{
    archive_format, check_integrity, check_readable, check_target, choose_copy, decrypting,
    query_in_database, read_contents, succeeded_backup,
};
use crate::catalog::{self, BackupRecord, NewJob};
use crate::enqueue::timeout_seconds;
use crate::error::{BackupError, OrReport};
use crate::privileges::{self, Caller};
use crate::wake;

const OPTIONS_HINT: &str = "restore_table() takes {\"data_only\": true|false, \"timeout\": \
     \"<interval>\", \"storage\": \"<storage target>\"}.";

fn request_error(kind: ErrorKind, message: String, hint: &str) -> ! {
    BackupError::Request(RequestError::new(kind, message, hint)).report()
}

/// `data_only`, `timeout` and `storage`; anything else is refused.
fn parse_options(options: &Value) -> (bool, Option<String>, Option<i32>) {
    let Some(map) = options.as_object() else {
        request_error(
            ErrorKind::InvalidParameter,
            "options must be a JSON object".into(),
            OPTIONS_HINT,
        )
    };
    let mut data_only = false;
    let mut storage = None;
    for (key, value) in map {
        match (key.as_str(), value) {
            ("data_only", Value::Bool(b)) => data_only = *b,
            ("storage", Value::String(s)) => storage = Some(s.clone()),
            ("timeout", _) => {}
            ("data_only" | "storage", _) => request_error(
                ErrorKind::InvalidParameter,
                format!("options.{key} has the wrong type"),
                OPTIONS_HINT,
            ),
            _ => request_error(
                ErrorKind::InvalidParameter,
                format!("option {key:?} does not apply to restore_table()"),
                OPTIONS_HINT,
            ),
        }
    }
    (data_only, storage, timeout_seconds(map))
}

/// One query's rows in database `db`, fields split.
fn query(db: &str, sql: &str) -> Vec<Vec<String>> {
    query_in_database(db, sql, "the target table")
        .lines()
        .map(|l| {
            l.split(backup_core::restore::argv::FIELD_SEPARATOR)
                .map(String::from)
                .collect()
        })
        .collect()
}

/// Checks in the target database: the schema exists; the new table's name is free, or, for
/// `data_only`, names an existing empty table.
fn check_target_table(db: &str, t: &TableTarget) {
    let rows = query(db, &relation_facts_query(&t.into_schema, &t.into_name));
    let (schema_exists, relkind) = match rows.first().map(Vec::as_slice) {
        Some([exists, kind]) => (exists == "t", kind.clone()),
        _ => BackupError::Internal(format!("unexpected answer from database \"{db}\"")).report(),
    };
    let name = t.into_qualified();
    if !schema_exists {
        request_error(
            ErrorKind::InvalidSchemaName,
            format!(
                "schema {} does not exist in database \"{db}\"",
                backup_core::quote_ident(&t.into_schema)
            ),
            "Create the schema first, or pass into_schema => '...' naming one that exists.",
        );
    }
    match (t.data_only, relkind.as_str()) {
        (false, "") => {}
        (false, _) => request_error(
            ErrorKind::DuplicateTable,
            format!("relation {name} already exists in database \"{db}\""),
            "restore_table() never replaces anything: pass into_name => '...' with a free name, \
             or drop the relation first.",
        ),
        (true, "") => request_error(
            ErrorKind::UndefinedTable,
            format!("table {name} does not exist in database \"{db}\""),
            "data_only loads the rows into an existing empty table of the same shape; leave \
             data_only out to create the table.",
        ),
        (true, "r" | "p") => {
            let rows = query(db, &format!("SELECT EXISTS (SELECT FROM {name})"));
            if rows.first().and_then(|r| r.first()).map(String::as_str) != Some("f") {
                request_error(
                    ErrorKind::NotInPrerequisiteState,
                    format!("table {name} in database \"{db}\" is not empty"),
                    "data_only loads rows only into an empty table; empty it (TRUNCATE) or \
                     restore into a new table.",
                );
            }
        }
        (true, _) => request_error(
            ErrorKind::InvalidParameter,
            format!("{name} in database \"{db}\" is not a table"),
            "data_only loads the rows into an existing empty table.",
        ),
    }
}

/// The entries of a plain script, from its header comments; the whole script is read through
/// (its rows are skipped, not kept).
fn script_entries(rec: &BackupRecord, source: &ArchiveSource) -> Vec<TocEntry> {
    let compressed = rec.gzipped();
    source
        .open()
        .map(|raw| plain_dump_reader(raw, compressed))
        .and_then(read_script_entries)
        .map(|s| s.entries)
        .map_err(|e| BackupError::ToolFailed(format!("cannot read {}: {e}", source.describe())))
        .or_report()
}

/// Only the table's owner matters for a table restore: a role that is not a superuser may
/// restore a table that belongs to it (or to a role it is a member of).
fn check_table_owner(owner: Option<&str>, caller: &Caller, backup_id: i64, table: &str) {
    if caller.superuser {
        return;
    }
    if !owner.is_some_and(|o| caller.acts_for(o)) {
        let whose = owner
            .map(|o| format!("role \"{o}\""))
            .unwrap_or_else(|| "a role the backup does not name".into());
        caller.deny(
            format!(
                "role \"{}\" may not restore table {table} of backup {backup_id}: it is owned by {whose}",
                caller.name
            ),
            "A role that is not a superuser may restore only tables that belong to it (or to \
             roles it is a member of); ask a superuser.",
        );
    }
}

/// Enqueues the restore of one table of a backup beside the live one; returns the job id.
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn restore_table(
    backup_id: i64,
    table_name: String,
    schema_name: default!(Option<String>, "'public'"),
    into_db: default!(Option<String>, "NULL"),
    into_schema: default!(Option<String>, "NULL"),
    into_name: default!(Option<String>, "NULL"),
    options: default!(Option<JsonB>, "'{}'"),
) -> i64 {
    let (caller, _owner) = privileges::enter();
    let rec = succeeded_backup(backup_id, &caller, "restore");
    if rec.kind != Ok(JobKind::Database) {
        request_error(
            ErrorKind::InvalidParameter,
            format!("backup {backup_id} holds roles and tablespaces, not tables"),
            "Pass the id of a database backup (see backup_ext.backups).",
        );
    }
    let options = options.map(|o| o.0).unwrap_or_else(|| json!({}));
    let (data_only, storage, timeout_seconds) = parse_options(&options);
    let schema = schema_name.unwrap_or_else(|| "public".into());
    validate_relation_name("schema_name", &schema).or_report();
    validate_relation_name("table_name", &table_name).or_report();
    let into_name = match into_name {
        Some(n) => n,
        None => default_into_name(&table_name, backup_id).or_report(),
    };
    let target = TableTarget {
        into_schema: into_schema.unwrap_or_else(|| schema.clone()),
        schema,
        name: table_name,
        into_name,
        data_only,
        suffix: restored_suffix(backup_id),
    };
    target.validate().or_report();
    let db = into_db.or_else(|| rec.database.clone()).unwrap_or_default();
    check_target(&db, false, &caller);

    let (read_from, source) = choose_copy(&rec, storage.as_deref());
    check_integrity(&rec, &source);
    let source = decrypting(&read_from, &source);
    check_readable(&rec, &source);
    let entries = if archive_format(&rec) == Format::Plain {
        script_entries(&rec, &source)
    } else {
        read_contents(&rec, &source).1
    };
    let qualified = backup_core::qualified(&target.schema, &target.name);
    let Some(found) = table_entries(&entries, &target.schema, &target.name) else {
        request_error(
            ErrorKind::UndefinedTable,
            format!("backup {backup_id} holds no table {qualified}"),
            "Give the schema and table names as the catalog stores them (case matters, no \
             quotes); backup_ext.backup_contents(backup_id) lists the tables (kind 'TABLE').",
        )
    };
    if found.data.is_none() {
        request_error(
            ErrorKind::UndefinedTable,
            format!("backup {backup_id} holds the definition of {qualified} but not its rows"),
            "The backup was taken without this table's data (schema_only or \
             exclude_table_data); restore from a backup that has them.",
        );
    }
    let owner = entries
        .iter()
        .find(|e| e.toc_id == found.table)
        .and_then(|e| e.owner.clone());
    check_table_owner(owner.as_deref(), &caller, backup_id, &qualified);
    check_target_table(&db, &target);

    let mut request =
        RestoreRequest::validate(archive_format(&rec), false, false, None, &json!({})).or_report();
    if read_from.storage != rec.storage {
        request.storage = Some(read_from.storage.clone());
    }
    request.table = Some(target);
    let job_id = catalog::enqueue_job(&NewJob {
        kind: JobKind::Restore,
        database: Some(&db),
        run_as: &caller.name,
        backup_id,
        request: request.to_json().unwrap_or_default(),
        timeout_seconds,
    })
    .or_report();
    wake::wake_worker_on_commit();
    job_id
}
