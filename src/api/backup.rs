//! `backup_database()`, `backup_globals()` and `backup_cluster()`: check who asks, then
//! validate and enqueue through `crate::enqueue`, which the built-in scheduler shares.

use backup_core::RequestError;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::json;

use crate::catalog;
use crate::enqueue::{check_database, enqueue_cluster, enqueue_database, enqueue_globals, Origin};
use crate::error::{BackupError, OrReport};
use crate::privileges;

pub fn require<T>(value: Option<T>, name: &str) -> T {
    value.unwrap_or_else(|| {
        BackupError::Request(RequestError::invalid(
            format!("{name} must not be NULL"),
            format!("Leave {name} out to use its default."),
        ))
        .report()
    })
}

/// Enqueues a dump of one database; returns the job id at once.
#[pg_extern(volatile, parallel_unsafe)]
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
    let (caller, _owner) = privileges::enter();
    check_database(&dbname);
    caller.require_connect(&dbname, "back it up");
    let format = require(format, "format");
    if format == "directory"
        && !catalog::encryption_recipients(Some(&dbname))
            .or_report()
            .is_empty()
    {
        BackupError::Request(backup_core::crypt::directory_refused()).report();
    }
    enqueue_database(
        &dbname,
        &format,
        compress.as_deref(),
        jobs,
        label.as_deref(),
        options.map(|o| o.0).unwrap_or_else(|| json!({})),
        Origin {
            run_as: Some(&caller.name),
            ..Origin::default()
        },
    )
}

/// Enqueues `pg_dumpall --globals-only` (roles and tablespaces); returns the job id.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn backup_globals(
    label: default!(Option<String>, "NULL"),
    no_role_passwords: default!(Option<bool>, "false"),
    options: default!(Option<JsonB>, "'{}'"),
) -> i64 {
    let (caller, _owner) = privileges::enter();
    caller.require_superuser("back up globals (roles and their password hashes)");
    enqueue_globals(
        label.as_deref(),
        require(no_role_passwords, "no_role_passwords"),
        options.map(|o| o.0).unwrap_or_else(|| json!({})),
        Origin {
            run_as: Some(&caller.name),
            ..Origin::default()
        },
    )
}

/// Backs up globals plus every connectable non-template database as one set; returns the set id.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn backup_cluster(
    format: default!(Option<String>, "'custom'"),
    label: default!(Option<String>, "NULL"),
    options: default!(Option<JsonB>, "'{}'"),
) -> i64 {
    let (caller, _owner) = privileges::enter();
    caller.require_superuser(
        "back up the whole cluster (it includes roles and their password hashes)",
    );
    enqueue_cluster(
        &require(format, "format"),
        label.as_deref(),
        options.map(|o| o.0).unwrap_or_else(|| json!({})),
        Origin {
            run_as: Some(&caller.name),
            ..Origin::default()
        },
    )
}
