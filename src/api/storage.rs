//! `add_storage()` and `drop_storage()`: the off-host targets backups may be written to.
//! Superusers only: a target decides where every byte of a database ends up.

use backup_core::RequestError;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::json;

use crate::api::backup::require;
use crate::catalog::{self, LOCAL_STORAGE};
use crate::error::{BackupError, OrReport};
use crate::privileges;
use crate::storage;

const TARGET_HINT: &str =
    "Storage targets decide where backups of every database go; ask a superuser.";

/// Target names: lower-case letters, digits and underscores, starting with a letter.
fn validate_name(name: &str) -> Result<(), RequestError> {
    let ok = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(RequestError::invalid(
            format!("storage name {name:?} is not valid"),
            "Use 1 to 63 lower-case letters, digits and underscores, starting with a letter, e.g. 'offsite'.",
        ))
    }
}

/// Adds a storage target after checking its URL, options and credentials, and that an
/// authenticated request to it succeeds.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn add_storage(
    name: Option<String>,
    url: Option<String>,
    options: default!(Option<JsonB>, "'{}'"),
) {
    let name = require(name, "name");
    let url = require(url, "url");
    let (caller, _owner) = privileges::enter();
    caller.require_superuser_for("add storage targets", TARGET_HINT);
    validate_name(&name).or_report();
    if name == LOCAL_STORAGE {
        BackupError::StorageExists(name).report();
    }
    let options = options.map(|o| o.0).unwrap_or_else(|| json!({}));
    let target = catalog::StorageTarget { url, options };
    let store = storage::open(&target).or_report();
    storage::check(&store).or_report();
    if !catalog::insert_storage_target(&name, &target.url, &target.options).or_report() {
        BackupError::StorageExists(name).report();
    }
}

/// Removes a storage target; false when there is none of that name. Refused while live backups
/// are stored there.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn drop_storage(name: Option<String>) -> bool {
    let name = require(name, "name");
    let (caller, _owner) = privileges::enter();
    caller.require_superuser_for("drop storage targets", TARGET_HINT);
    if name == LOCAL_STORAGE {
        BackupError::Request(RequestError::invalid(
            "the storage target \"local\" (backup_ext.directory) cannot be dropped",
            "Change backup_ext.default_storage to send new backups elsewhere.",
        ))
        .report();
    }
    let users = catalog::storage_users(&name).or_report();
    if users > 0 {
        BackupError::StorageInUse {
            name,
            backups: users,
        }
        .report();
    }
    catalog::delete_storage_target(&name).or_report()
}

/// The backups a storage target holds, from their sidecars (`list_remote()` in SQL adds
/// whether the catalog knows each): this cluster's, or with `all_clusters` every cluster's.
// The row type must be spelled out for the SQL generator.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn remote_sidecars(
    storage: Option<String>,
    all_clusters: default!(Option<bool>, "false"),
) -> TableIterator<
    'static,
    (
        name!(backup_id, i64),
        name!(database, Option<String>),
        name!(kind, String),
        name!(finished_at, String),
        name!(size_bytes, i64),
        name!(sha256, String),
        name!(system_identifier, String),
        name!(key, String),
    ),
> {
    let storage = require(storage, "storage");
    let (caller, _owner) = privileges::enter();
    caller.require_superuser_for("list what a storage target holds", TARGET_HINT);
    let (store, local) = match storage::open_named(&storage).or_report() {
        Some(store) => (store, false),
        None => (storage::local_store(), true),
    };
    let own = catalog::system_identifier().or_report();
    let all_clusters = all_clusters.unwrap_or(false);
    // Remote keys start with the system identifier; local folders are per database.
    let prefix = if all_clusters || local {
        String::new()
    } else {
        format!("{own}/")
    };
    let objects = store.list(&prefix).map_err(RequestError::from).or_report();
    let keys: std::collections::BTreeSet<&str> = objects.iter().map(|o| o.key.as_str()).collect();
    let mut rows = Vec::new();
    for object in &objects {
        let Some(backup_key) = object.key.strip_suffix(".json") else {
            continue;
        };
        if !keys.contains(backup_key) {
            continue;
        }
        let Ok(bytes) = store.get_bytes(&object.key) else {
            continue;
        };
        let Ok(sidecar) = backup_core::Sidecar::from_bytes(&bytes) else {
            continue;
        };
        if !all_clusters && sidecar.system_identifier != own {
            continue;
        }
        // One odd sidecar in a shared bucket must not break the listing.
        let (Some(_), Ok(size)) = (
            crate::catalog::parse_utc(&sidecar.finished_at),
            i64::try_from(sidecar.size_bytes),
        ) else {
            continue;
        };
        rows.push((
            sidecar.backup_id,
            sidecar.database,
            sidecar.kind,
            sidecar.finished_at,
            size,
            sidecar.sha256,
            sidecar.system_identifier,
            backup_key.to_string(),
        ));
    }
    TableIterator::new(rows)
}
