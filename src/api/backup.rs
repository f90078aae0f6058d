//! `backup_database()` and `backup_globals()`: validate at call time, enqueue, wake the worker.

use backup_core::{DumpRequest, GlobalsRequest, RequestError};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::json;

use crate::catalog::{self, NewBackup};
use crate::error::{BackupError, OrReport};
use crate::{settings, tools, wake};

const MAX_LABEL_CHARS: usize = 200;

fn validate_label(label: Option<&str>) -> Result<(), BackupError> {
    match label {
        Some(l) if l.chars().count() > MAX_LABEL_CHARS => Err(RequestError::invalid(
            format!("label is {} characters long", l.chars().count()),
            format!("Labels are at most {MAX_LABEL_CHARS} characters."),
        )
        .into()),
        _ => Ok(()),
    }
}

fn require<T>(value: Option<T>, name: &str) -> T {
    value.unwrap_or_else(|| {
        BackupError::Request(RequestError::invalid(
            format!("{name} must not be NULL"),
            format!("Leave {name} out to use its default."),
        ))
        .report()
    })
}

/// Enqueues a dump of one database; returns the job id at once.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn backup_database(
    dbname: default!(Option<String>, "current_database()"),
    format: default!(Option<String>, "'custom'"),
    compress: default!(Option<String>, "NULL"),
    jobs: default!(Option<i32>, "NULL"),
    label: default!(Option<String>, "NULL"),
    options: default!(Option<JsonB>, "'{}'"),
) -> i64 {
    let dbname = require(dbname, "dbname");
    let format = require(format, "format");
    let options = options.map(|o| o.0).unwrap_or_else(|| json!({}));
    validate_label(label.as_deref()).or_report();

    let tool_major = match compress.as_deref() {
        // A plain level means the same thing to every pg_dump: no need to ask the tool.
        Some(c) if !c.bytes().all(|b| b.is_ascii_digit()) => {
            tools::tool_version(&settings::bin_dir(), "pg_dump")
                .map_err(|e| {
                    RequestError::unsupported(
                        format!("cannot tell which compression pg_dump supports: {e}"),
                        "Check backup_ext.bin_dir.",
                    )
                })
                .or_report()
                .0
        }
        // The oldest pg_dump this extension is built for; a bare level means the same to all.
        _ => 15,
    };
    let request =
        DumpRequest::validate(&format, compress.as_deref(), jobs, &options, tool_major).or_report();

    match catalog::database_allows_connections(&dbname).or_report() {
        None => BackupError::NoSuchDatabase(dbname).report(),
        Some(false) => BackupError::DatabaseNotConnectable(dbname).report(),
        Some(true) => {}
    }

    let compress_spec = request.compress.as_ref().map(|c| c.spec.clone());
    let job_id = catalog::enqueue_backup(&NewBackup {
        kind: "database",
        database: Some(&dbname),
        format: request.format.as_str(),
        compress: compress_spec.as_deref(),
        label: label.as_deref(),
        request: request.to_json().unwrap_or_default(),
    })
    .or_report();
    wake::wake_worker_on_commit();
    job_id
}

/// Enqueues `pg_dumpall --globals-only` (roles and tablespaces); returns the job id.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn backup_globals(
    label: default!(Option<String>, "NULL"),
    no_role_passwords: default!(Option<bool>, "false"),
) -> i64 {
    validate_label(label.as_deref()).or_report();
    let request = GlobalsRequest {
        no_role_passwords: require(no_role_passwords, "no_role_passwords"),
    };
    let job_id = catalog::enqueue_backup(&NewBackup {
        kind: "globals",
        database: None,
        format: "plain",
        compress: None,
        label: label.as_deref(),
        request: request.to_json().unwrap_or_default(),
    })
    .or_report();
    wake::wake_worker_on_commit();
    job_id
}
