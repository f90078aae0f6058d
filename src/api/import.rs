//! `import_backups()`: rebuilding the catalog from what a storage target holds, for a server
//! that lost its own (disaster recovery) or one that takes over another's backups. Superusers
//! only: it decides which files later restores read.

use std::collections::BTreeMap;

use backup_core::files::import::{check_sidecar, sidecar_backup_key, MAX_SIDECAR_BYTES};
use backup_core::storage::ObjectInfo;
use backup_core::RequestError;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;

use crate::api::backup::require;
use crate::api::schedules::to_timestamptz;
use crate::catalog::{self, ImportPlace};
use crate::error::OrReport;
use crate::privileges;
use crate::settings;
use crate::storage;

type Row = (
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<TimestampWithTimeZone>,
    String,
    String,
);

/// Adds to the catalog every backup whose sidecar lies in `storage` (this cluster's, or every
/// cluster's with `all_clusters`) and that the catalog does not know yet, after checking that
/// the backup beside the sidecar is there with the recorded size. One row per sidecar found:
/// `imported`, `already known`, or `skipped: <reason>`; all in the caller's transaction.
// The row type must be spelled out for the SQL generator.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn import_backups(
    storage: default!(Option<String>, "'local'"),
    all_clusters: default!(Option<bool>, "false"),
) -> TableIterator<
    'static,
    (
        name!(backup_id, Option<i64>),
        name!(database, Option<String>),
        name!(kind, Option<String>),
        name!(finished_at, Option<TimestampWithTimeZone>),
        name!(key, String),
        name!(action, String),
    ),
> {
    let storage = require(storage, "storage");
    let all_clusters = all_clusters.unwrap_or(false);
    let (caller, _owner) = privileges::enter();
    caller.require_superuser_for(
        "import backups into the catalog",
        "Imported backups can be restored into any database; ask a superuser.",
    );
    let (store, local) = match storage::open_named(&storage).or_report() {
        Some(store) => (store, false),
        None => (storage::local_store(), true),
    };
    let own = catalog::system_identifier().or_report();
    // Remote keys start with the system identifier; local folders are per database.
    let prefix = if all_clusters || local {
        String::new()
    } else {
        format!("{own}/")
    };
    let objects: BTreeMap<String, ObjectInfo> = store
        .list(&prefix)
        .map_err(RequestError::from)
        .or_report()
        .into_iter()
        .map(|o| (o.key.clone(), o))
        .collect();
    let skipped = |key: &str, reason: String| -> Row {
        (
            None,
            None,
            None,
            None,
            key.to_string(),
            format!("skipped: {reason}"),
        )
    };
    let mut rows: Vec<Row> = Vec::new();
    let mut candidates = Vec::new();
    for (sidecar_key, object) in &objects {
        let Some(key) = sidecar_backup_key(sidecar_key) else {
            continue;
        };
        if object.size > MAX_SIDECAR_BYTES {
            rows.push(skipped(
                key,
                format!(
                    "its sidecar is {} bytes, more than a sidecar holds",
                    object.size
                ),
            ));
            continue;
        }
        let bytes = match store.get_bytes(sidecar_key) {
            Ok(bytes) => bytes,
            Err(e) => {
                rows.push(skipped(key, format!("cannot read its sidecar: {e}")));
                continue;
            }
        };
        match check_sidecar(&bytes, key, &objects) {
            Ok(c) if all_clusters || c.sidecar.system_identifier == own => candidates.push(c),
            // Another cluster's backup, in a folder this one does not own (local directory).
            Ok(_) => {}
            Err(reason) => rows.push(skipped(key, reason)),
        }
    }
    catalog::lock_imports().or_report();
    // Oldest first, so new backup ids follow the order the backups were made in.
    candidates.sort_by(|a, b| (a.finished_at, &a.key).cmp(&(b.finished_at, &b.key)));
    let directory = settings::directory();
    for c in candidates {
        let path = local.then(|| directory.join(&c.key).to_string_lossy().into_owned());
        let place = ImportPlace {
            storage: &storage,
            key: (!local).then_some(c.key.as_str()),
            path: path.as_deref(),
        };
        let s = &c.sidecar;
        let known = catalog::known_backup(&place, &s.system_identifier, s.backup_id).or_report();
        let (id, action) = match known {
            Some(id) => (id, "already known"),
            None => (catalog::insert_imported(&place, &c).or_report(), "imported"),
        };
        rows.push((
            Some(id),
            s.database.clone(),
            Some(s.kind.clone()),
            to_timestamptz(c.finished_at),
            c.key.clone(),
            action.to_string(),
        ));
    }
    TableIterator::new(rows)
}
