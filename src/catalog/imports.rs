//! Backups taken into the catalog from a storage target's sidecars (`import_backups()`): a
//! `jobs` row that succeeded and its `artifacts` row with `origin = 'imported'`, and what the
//! sidecar said of the backup where it was made (`imported_from`).

use backup_core::files::import::ImportCandidate;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::json;

use super::{optional, SpiResult, LOCAL_STORAGE};

/// Where an imported backup lies in this catalog's terms: a storage target and key, or for
/// `local` the file's path under `backup_ext.directory`.
pub struct ImportPlace<'a> {
    pub storage: &'a str,
    pub key: Option<&'a str>,
    pub path: Option<&'a str>,
}

/// Makes concurrent imports take turns until the end of the transaction, so that two of them
/// never both add the same backup (each statement afterwards sees what the other committed).
pub fn lock_imports() -> SpiResult<()> {
    Spi::run(
        "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('backup_ext.import_backups'))",
    )
}

/// The backup id this catalog already has for a backup: the same object (as the backup or
/// one of its copies), or the same backup of the same cluster (this cluster's own, or one
/// imported before, from this or another target).
pub fn known_backup(place: &ImportPlace, sysid: &str, original_id: i64) -> SpiResult<Option<i64>> {
    optional(Spi::get_one_with_args::<i64>(
        "SELECT x.backup_id FROM (
             SELECT a.backup_id FROM backup_ext.artifacts a
              WHERE (a.storage = $1 AND a.key = $2)
                 OR (a.storage = $6 AND a.path = $3)
                 OR (a.origin = 'imported' AND a.imported_from->>'system_identifier' = $4
                     AND a.imported_from->>'backup_id' = $5::text)
                 OR (a.origin = 'local' AND a.backup_id = $5
                     AND $4 = (SELECT s.system_identifier::text
                                 FROM pg_catalog.pg_control_system() s))
             UNION ALL
             SELECT c.backup_id FROM backup_ext.backup_copies c
              WHERE c.storage = $1 AND c.key = $2) x
          ORDER BY x.backup_id LIMIT 1",
        &[
            place.storage.into(),
            place.key.into(),
            place.path.into(),
            sysid.into(),
            original_id.into(),
            LOCAL_STORAGE.into(),
        ],
    ))
}

/// Adds the job and artifact rows of an imported backup; returns its new backup id (the
/// local sequence's next job id, so nothing clashes with this cluster's own backups).
pub fn insert_imported(place: &ImportPlace, c: &ImportCandidate) -> SpiResult<i64> {
    let s = &c.sidecar;
    let imported_from = json!({
        "system_identifier": s.system_identifier,
        "backup_id": s.backup_id,
        "set_id": s.set_id,
        "storage": s.storage,
        "key": s.key,
        "requested_at": s.requested_at,
        "started_at": s.started_at,
        "finished_at": s.finished_at,
    });
    let message = format!(
        "imported from storage \"{}\": backup {} of the cluster with system identifier {}",
        place.storage, s.backup_id, s.system_identifier
    );
    let args: Vec<DatumWithOid> = vec![
        s.kind.as_str().into(),
        s.database.as_deref().into(),
        s.label.as_deref().into(),
        c.requested_at.to_rfc3339().into(),
        c.started_at.to_rfc3339().into(),
        c.finished_at.to_rfc3339().into(),
        c.size_bytes.into(),
        message.into(),
        s.format.as_str().into(),
        s.compress.as_deref().into(),
        place.path.into(),
        s.sha256.as_str().into(),
        s.manifest.clone().map(JsonB).into(),
        s.server_version.as_str().into(),
        s.tool_version.as_str().into(),
        s.table_rows.clone().map(JsonB).into(),
        place.storage.into(),
        place.key.into(),
        c.etag.as_deref().into(),
        s.encrypted.into(),
        (!s.recipients.is_empty())
            .then(|| s.recipients.clone())
            .into(),
        JsonB(imported_from).into(),
    ];
    Ok(Spi::get_one_with_args::<i64>(
        "WITH j AS (
             INSERT INTO backup_ext.jobs
                    (kind, database, label, status, requested_at, started_at, finished_at,
                     bytes_written, message)
             VALUES ($1, $2, $3, 'succeeded', $4::timestamptz, $5::timestamptz, $6::timestamptz,
                     $7, $8)
             RETURNING job_id, kind, database)
         INSERT INTO backup_ext.artifacts
                (backup_id, job_id, kind, database, format, compress, path, size_bytes, sha256,
                 manifest, server_version, tool_version, table_rows, storage, key, etag,
                 encrypted, recipients, origin, imported_from)
         SELECT job_id, job_id, kind, database, $9, $10, $11, $7, $12, $13, $14, $15, $16,
                $17, $18, $19, $20, $21, 'imported', $22
           FROM j
         RETURNING backup_id",
        &args,
    )?
    .unwrap_or_default())
}
