//! `purge()`: applies the retention policies set with `set_retention()`; `pin()` exempts a
//! backup from them.

use pgrx::prelude::*;

use crate::api::backup::require;
use crate::catalog;
use crate::error::{BackupError, OrReport};
use crate::privileges;
use crate::purge::{self, Scope};

/// Deletes the backups no retention rule keeps (or lists them, with `dry_run`), removes
/// leftovers of failed jobs and forgets history older than `backup_ext.history_days`.
// The row type must be spelled out for the SQL generator.
#[allow(clippy::type_complexity)]
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn purge(
    dry_run: default!(Option<bool>, "false"),
) -> TableIterator<
    'static,
    (
        name!(backup_id, Option<i64>),
        name!(database, Option<String>),
        name!(path, Option<String>),
        name!(reason, String),
    ),
> {
    let report = purge::purge(Scope::All, dry_run.unwrap_or(false)).or_report();
    TableIterator::new(
        report
            .into_iter()
            .map(|p| (p.backup_id, p.database, p.path, p.reason)),
    )
}

/// Keeps a finished backup whatever the retention rules say (or lets them apply again).
/// Unfinished backups are refused: their rows belong to the worker until the job ends, and a
/// caller's open transaction must never hold them.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn pin(backup_id: i64, pinned: default!(Option<bool>, "true")) -> bool {
    let pinned = require(pinned, "pinned");
    let (caller, _owner) = privileges::enter();
    let Some(rec) = catalog::backup_record(backup_id).or_report() else {
        BackupError::NoSuchBackup(backup_id).report()
    };
    caller.require_backup_access(
        rec.kind == Ok(backup_core::JobKind::Database),
        rec.database.as_deref(),
        "pin",
    );
    if matches!(rec.status.as_str(), "queued" | "running") {
        BackupError::BackupUnfinished {
            backup_id,
            status: rec.status,
        }
        .report();
    }
    catalog::set_pinned(backup_id, pinned).or_report();
    pinned
}
