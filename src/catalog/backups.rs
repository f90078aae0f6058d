//! The `backup_sets` and `artifacts` tables: what a backup is, where it lies, how it was
//! verified, whether it is pinned.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

use backup_core::JobKind;

use super::{job_kind, SpiResult};

/// What a caller asks for; one `jobs` row plus its `artifacts` row.
pub struct NewBackup<'a> {
    pub kind: JobKind,
    pub database: Option<&'a str>,
    pub format: &'a str,
    pub compress: Option<&'a str>,
    pub label: Option<&'a str>,
    pub request: Value,
    pub set_id: Option<i64>,
    pub schedule: Option<&'a str>,
    pub run_as: Option<&'a str>,
    pub timeout_seconds: Option<i32>,
    /// The storage target (`local` or a name from `storage_targets`).
    pub storage: &'a str,
}

/// Inserts the job and the row that will describe its file; returns the job id.
pub fn enqueue_backup(b: &NewBackup) -> SpiResult<i64> {
    Spi::connect_mut(|client| {
        let args: Vec<DatumWithOid> = vec![
            b.kind.as_str().into(),
            b.database.into(),
            JsonB(b.request.clone()).into(),
            b.label.into(),
            b.format.into(),
            b.compress.into(),
            b.set_id.into(),
            b.schedule.into(),
            b.timeout_seconds.into(),
            b.run_as.into(),
            b.storage.into(),
        ];
        let row = client.update(
            "WITH j AS (
                 INSERT INTO backup_ext.jobs
                        (kind, database, request, label, set_id, schedule, timeout_seconds,
                         run_as)
                 VALUES ($1, $2, $3, $4, $7, $8, $9, $10)
                 RETURNING job_id, kind, database)
             INSERT INTO backup_ext.artifacts
                    (backup_id, job_id, kind, database, format, compress, storage,
                     source_size_bytes)
             SELECT job_id, job_id, kind, database, $5, $6, $11,
                    (SELECT pg_catalog.pg_database_size(d.oid)
                       FROM pg_catalog.pg_database d
                      WHERE d.datname OPERATOR(pg_catalog.=) j.database
                        AND pg_catalog.has_database_privilege(d.oid, 'CONNECT'))
               FROM j
             RETURNING job_id",
            Some(1),
            &args,
        )?;
        Ok(row.first().get_one::<i64>()?.unwrap_or_default())
    })
}

/// Starts a backup_cluster() set.
pub fn create_set(format: &str, label: Option<&str>, options: &Value) -> SpiResult<i64> {
    Ok(Spi::get_one_with_args::<i64>(
        "INSERT INTO backup_ext.backup_sets (format, label, options) VALUES ($1, $2, $3)
         RETURNING set_id",
        &[format.into(), label.into(), JsonB(options.clone()).into()],
    )?
    .unwrap_or_default())
}

/// One backup as restore, verify and inspection need it.
#[derive(Clone)]
pub struct BackupRecord {
    pub backup_id: i64,
    /// Database or Globals.
    pub kind: Result<JobKind, String>,
    pub database: Option<String>,
    pub format: String,
    pub compress: Option<String>,
    pub path: Option<String>,
    pub size_bytes: Option<i64>,
    pub sha256: Option<String>,
    pub status: String,
    /// `local` (the file is `path`) or a storage target holding it under `key`.
    pub storage: String,
    pub key: Option<String>,
    /// The object's ETag, when the store reported one after the upload.
    pub etag: Option<String>,
    /// Stored age-encrypted (read through decryption).
    pub encrypted: bool,
}

impl BackupRecord {
    /// The same backup, read from its copy in `storage` instead (None: no such copy).
    pub fn at_copy(&self, storage: &str) -> SpiResult<Option<BackupRecord>> {
        if storage == self.storage {
            return Ok(Some(self.clone()));
        }
        Ok(
            super::copies::copy_key(self.backup_id, storage)?.map(|key| BackupRecord {
                storage: storage.to_string(),
                key: Some(key),
                path: None,
                etag: None,
                ..self.clone()
            }),
        )
    }

    /// Whether a plain backup's file is gzip-compressed (and so read through gunzip).
    pub fn gzipped(&self) -> bool {
        self.compress
            .as_deref()
            .is_some_and(|c| c != "0" && c != "none")
    }
}

pub fn backup_record(backup_id: i64) -> SpiResult<Option<BackupRecord>> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT backup_id, kind, database, format, compress, path, size_bytes, sha256, status,
                    storage, key,
                    (SELECT a.etag FROM backup_ext.artifacts a WHERE a.backup_id = b.backup_id),
                    encrypted
               FROM backup_ext.backups b WHERE backup_id = $1",
            None,
            &[backup_id.into()],
        )?;
        if let Some(row) = rows.into_iter().next() {
            return Ok(Some(BackupRecord {
                backup_id: row.get(1)?.unwrap_or_default(),
                kind: job_kind(row.get(2)?),
                database: row.get(3)?,
                format: row.get(4)?.unwrap_or_default(),
                compress: row.get(5)?,
                path: row.get(6)?,
                size_bytes: row.get(7)?,
                sha256: row.get(8)?,
                status: row.get(9)?.unwrap_or_default(),
                storage: row.get(10)?.unwrap_or_default(),
                key: row.get(11)?,
                etag: row.get(12)?,
                encrypted: row.get(13)?.unwrap_or(false),
            }));
        }
        Ok(None)
    })
}

/// The source database's size when the backup was requested, if recorded.
pub fn source_size(backup_id: i64) -> SpiResult<Option<i64>> {
    Spi::get_one_with_args::<i64>(
        "SELECT source_size_bytes FROM backup_ext.artifacts WHERE backup_id = $1",
        &[backup_id.into()],
    )
}

/// Sets or clears a backup's pin.
pub fn set_pinned(backup_id: i64, pinned: bool) -> SpiResult<()> {
    Spi::run_with_args(
        "UPDATE backup_ext.artifacts SET pinned = $2 WHERE backup_id = $1",
        &[backup_id.into(), pinned.into()],
    )
}

/// Records a verification result on the backup it checked.
pub fn record_verification(
    backup_id: i64,
    passed: bool,
    message: &str,
    table_rows: Option<Value>,
) -> SpiResult<()> {
    // A row held by another session (a pin() not yet committed) is skipped rather than waited
    // for; the job's own message keeps the result.
    Spi::run_with_args(
        "UPDATE backup_ext.artifacts
            SET verified_at = clock_timestamp(), verify_status = $2, verify_message = $3,
                table_rows = coalesce($4, table_rows)
          WHERE backup_id = (SELECT backup_id FROM backup_ext.artifacts
                              WHERE backup_id = $1 FOR UPDATE SKIP LOCKED)",
        &[
            backup_id.into(),
            (if passed { "passed" } else { "failed" }).into(),
            message.into(),
            table_rows.map(JsonB).into(),
        ],
    )
}

/// A succeeded database dump smaller than `ratio` of the previous successful dump of the same
/// database, format and request (compression, options): records why on the backup and returns
/// (database, reason). The backup stays succeeded.
pub fn flag_size_anomaly(backup_id: i64, ratio: f64) -> SpiResult<Option<(String, String)>> {
    if ratio <= 0.0 {
        return Ok(None);
    }
    Spi::connect_mut(|client| {
        let rows = super::kept(
            client,
            "WITH cur AS (
                 SELECT a.backup_id, a.database, a.format, a.size_bytes, j.request
                   FROM backup_ext.artifacts a JOIN backup_ext.jobs j ON j.job_id = a.job_id
                  WHERE a.backup_id = $1 AND a.kind = 'database' AND a.size_bytes IS NOT NULL),
             prev AS (
                 SELECT pa.backup_id, pa.size_bytes
                   FROM cur, backup_ext.artifacts pa
                   JOIN backup_ext.jobs pj ON pj.job_id = pa.job_id
                  WHERE pa.kind = 'database' AND pa.database = cur.database
                    AND pa.format = cur.format AND pa.backup_id < cur.backup_id
                    AND pa.size_bytes IS NOT NULL AND pj.status = 'succeeded'
                    AND (pj.request - 'jobs') = (cur.request - 'jobs')
                  ORDER BY pa.backup_id DESC LIMIT 1)
             UPDATE backup_ext.artifacts a
                SET anomaly = format('%s bytes, less than %s of the previous backup %s (%s bytes)',
                                     cur.size_bytes, $2::float8, prev.backup_id, prev.size_bytes)
               FROM cur, prev
              WHERE a.backup_id = cur.backup_id AND cur.size_bytes < prev.size_bytes * $2::float8
          RETURNING a.database, a.anomaly",
            &[backup_id.into(), ratio.into()],
        )?;
        for row in rows {
            if let (Some(db), Some(reason)) = (row.get::<String>(1)?, row.get::<String>(2)?) {
                return Ok(Some((db, reason)));
            }
        }
        Ok(None)
    })
}
