//! `backup_file_exists()`: the one file check `status()` needs. `pg_stat_file()` would need
//! privileges an operator need not have; this answers only for paths inside
//! `backup_ext.directory`, so it is no way to probe the rest of the filesystem.

use std::path::Path;

use backup_core::{is_inside, resolve_nearest_existing};
use pgrx::prelude::*;

use crate::settings;

/// Whether a backup's file or directory exists; NULL for a path that is not inside
/// `backup_ext.directory` once `..` and symlinks are resolved.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn backup_file_exists(path: &str) -> Option<bool> {
    let root = resolve_nearest_existing(&settings::directory()).ok()?;
    let resolved = resolve_nearest_existing(Path::new(path)).ok()?;
    if !is_inside(&root, &resolved) {
        return None;
    }
    resolved.try_exists().ok()
}
