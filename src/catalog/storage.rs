//! The `storage_targets` table: where backups may go besides `backup_ext.directory`.

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

use super::SpiResult;

/// The name of the built-in target, `backup_ext.directory`; it has no row.
pub const LOCAL_STORAGE: &str = "local";

/// A target as `add_storage()` recorded it.
pub struct StorageTarget {
    pub url: String,
    pub options: Value,
}

/// The target named `name`, if there is one (never for `local`).
pub fn storage_target(name: &str) -> SpiResult<Option<StorageTarget>> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT url, options FROM backup_ext.storage_targets WHERE name = $1",
            None,
            &[name.into()],
        )?;
        let Some(row) = rows.into_iter().next() else {
            return Ok(None);
        };
        Ok(Some(StorageTarget {
            url: row.get(1)?.unwrap_or_default(),
            options: row.get::<JsonB>(2)?.map(|j| j.0).unwrap_or(Value::Null),
        }))
    })
}

/// Every target's name, `local` first, for hints.
pub fn storage_names() -> SpiResult<Vec<String>> {
    let mut names = vec![LOCAL_STORAGE.to_string()];
    names.extend(super::texts(
        "SELECT name FROM backup_ext.storage_targets ORDER BY name",
        &[],
    )?);
    Ok(names)
}

/// Adds a target; false when the name is taken.
pub fn insert_storage_target(name: &str, url: &str, options: &Value) -> SpiResult<bool> {
    Spi::connect_mut(|client| {
        let rows = client.update(
            "INSERT INTO backup_ext.storage_targets (name, url, options) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO NOTHING RETURNING name",
            None,
            &[name.into(), url.into(), JsonB(options.clone()).into()],
        )?;
        Ok(!rows.is_empty())
    })
}

/// How many live (not expired) backups and copies use a target, counting those being written,
/// and how many copy policies name it. Queued jobs do not count: they fail when they start
/// without their target.
pub fn storage_users(name: &str) -> SpiResult<i64> {
    Ok(Spi::get_one_with_args::<i64>(
        "SELECT (SELECT count(*) FROM backup_ext.artifacts a JOIN backup_ext.jobs j USING (job_id)
                  WHERE a.storage = $1 AND a.expired_at IS NULL
                    AND j.status IN ('succeeded', 'running'))
              + (SELECT count(*) FROM backup_ext.backup_copies c
                   JOIN backup_ext.artifacts a USING (backup_id)
                  WHERE c.storage = $1 AND c.status IN ('succeeded', 'running')
                    AND a.expired_at IS NULL)
              + (SELECT count(*) FROM backup_ext.copy_policy p WHERE $1 = ANY (p.storages))
              + (SELECT count(*) FROM backup_ext.artifacts a
                  WHERE a.storage = $1 AND a.upload_id IS NOT NULL)",
        &[name.into()],
    )?
    .unwrap_or_default())
}

/// Removes a target, locking its row first; false when there was none.
pub fn delete_storage_target(name: &str) -> SpiResult<bool> {
    Spi::connect_mut(|client| {
        let rows = client.update(
            "DELETE FROM backup_ext.storage_targets WHERE name = $1 RETURNING name",
            None,
            &[name.into()],
        )?;
        Ok(!rows.is_empty())
    })
}
