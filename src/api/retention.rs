//! `purge()`: applies the retention policies set with `set_retention()`.

use pgrx::prelude::*;

use crate::error::OrReport;
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
