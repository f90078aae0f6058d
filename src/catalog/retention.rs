//! The `retention` policies and what purging reads and writes: the candidates, their expiry
//! (never waiting for a row another session holds), the ids of unfinished jobs, old history.

use std::collections::BTreeMap;

use backup_core::RetentionPolicy;
use chrono::{DateTime, Utc};
use pgrx::prelude::*;

use super::{parse_utc, SpiResult, UTC_TEXT};

pub struct Candidate {
    pub backup_id: i64,
    pub kind: String,
    pub database: Option<String>,
    pub finished_at: DateTime<Utc>,
    pub pinned: bool,
    pub path: Option<String>,
    /// `local`, or the storage target holding the backup under `key`.
    pub storage: String,
    pub key: Option<String>,
    /// Its last verification passed.
    pub verified: bool,
    /// The job id its file is named after: its own, or for an imported backup the one it had
    /// where it was made.
    pub named_id: i64,
}

pub fn policies() -> SpiResult<BTreeMap<Option<String>, RetentionPolicy>> {
    Spi::connect_mut(|client| {
        let rows = super::kept(
            client,
            "SELECT database, keep_last, keep_days, keep_daily, keep_weekly, keep_monthly
               FROM backup_ext.retention",
            &[],
        )?;
        let mut out = BTreeMap::new();
        for row in rows {
            let n = |i: usize| -> SpiResult<Option<u32>> {
                Ok(row.get::<i32>(i)?.map(|v| v.max(0) as u32))
            };
            out.insert(
                row.get::<String>(1)?,
                RetentionPolicy {
                    keep_last: n(2)?,
                    keep_days: n(3)?,
                    keep_daily: n(4)?,
                    keep_weekly: n(5)?,
                    keep_monthly: n(6)?,
                },
            );
        }
        Ok(out)
    })
}

/// Succeeded backups, all or of one kind and database.
pub fn candidates(kind: Option<&str>, database: Option<&str>) -> SpiResult<Vec<Candidate>> {
    Spi::connect(|client| {
        let rows = client.select(
            &format!(
                "SELECT backup_id, kind, database, to_char(finished_at AT TIME ZONE 'UTC', '{UTC_TEXT}'),
                        pinned, path, storage, key, verify_status = 'passed',
                        coalesce((SELECT (a.imported_from->>'backup_id')::bigint
                                    FROM backup_ext.artifacts a
                                   WHERE a.backup_id = b.backup_id), backup_id)
                   FROM backup_ext.backups b
                  WHERE status = 'succeeded'
                    AND ($1::text IS NULL OR kind = $1)
                    AND ($2::text IS NULL OR database = $2)
                  ORDER BY backup_id"
            ),
            None,
            &[kind.into(), database.into()],
        )?;
        let mut out = Vec::new();
        for row in rows {
            out.push(Candidate {
                backup_id: row.get(1)?.unwrap_or_default(),
                kind: row.get(2)?.unwrap_or_default(),
                database: row.get(3)?,
                finished_at: parse_utc(&row.get::<String>(4)?.unwrap_or_default())
                    .unwrap_or_else(Utc::now),
                pinned: row.get(5)?.unwrap_or(false),
                path: row.get(6)?,
                storage: row.get(7)?.unwrap_or_default(),
                key: row.get(8)?,
                verified: row.get(9)?.unwrap_or(false),
                named_id: row.get(10)?.unwrap_or_default(),
            });
        }
        Ok(out)
    })
}

pub fn expire(backup_id: i64) -> SpiResult<()> {
    Spi::run_with_args(
        "UPDATE backup_ext.artifacts SET expired_at = clock_timestamp() WHERE backup_id = $1",
        &[backup_id.into()],
    )
}

/// Locks a backup's row for expiry unless another session holds it (a `pin()` not yet
/// committed) or it was pinned meanwhile: purge never waits for, nor overrides, a pin.
pub fn lock_for_expiry(backup_id: i64) -> SpiResult<bool> {
    Spi::connect_mut(|client| {
        let rows = client.update(
            "SELECT 1 FROM backup_ext.artifacts
              WHERE backup_id = $1 AND NOT pinned AND expired_at IS NULL
                FOR UPDATE SKIP LOCKED",
            None,
            &[backup_id.into()],
        )?;
        Ok(!rows.is_empty())
    })
}

/// The ids of the jobs in one of `statuses`.
pub fn job_ids(statuses: &[&str]) -> SpiResult<Vec<i64>> {
    let statuses: Vec<String> = statuses.iter().map(|s| s.to_string()).collect();
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT job_id FROM backup_ext.jobs WHERE status = ANY($1)",
            None,
            &[statuses.into()],
        )?;
        let mut ids = Vec::new();
        for row in rows {
            ids.extend(row.get::<i64>(1)?);
        }
        Ok(ids)
    })
}

/// Deletes job history older than `backup_ext.history_days`, except rows of live backups.
pub fn forget_history(history_days: i32, dry_run: bool) -> SpiResult<i64> {
    const OLD: &str = "SELECT j.job_id FROM backup_ext.jobs j
          WHERE j.finished_at < now() - make_interval(days => $1)
            AND NOT EXISTS (SELECT 1 FROM backup_ext.artifacts a
                             WHERE a.job_id = j.job_id AND j.status = 'succeeded'
                               AND a.expired_at IS NULL)";
    let sql = if dry_run {
        format!("SELECT count(*) FROM ({OLD}) old")
    } else {
        format!(
            "WITH d AS (DELETE FROM backup_ext.jobs WHERE job_id IN ({OLD}) RETURNING 1)
             SELECT count(*) FROM d"
        )
    };
    if !dry_run {
        super::alerts::forget_deliveries(history_days)?;
    }
    Ok(Spi::get_one_with_args::<i64>(&sql, &[history_days.into()])?.unwrap_or_default())
}

/// The newest failed backup job of a database (kind `database`, or `globals` with `database`
/// None) when it is newer than its newest success: its attempts are failing.
pub fn failing_since(kind: &str, database: Option<&str>) -> SpiResult<Option<i64>> {
    Spi::get_one_with_args::<i64>(
        "SELECT (SELECT j.job_id FROM backup_ext.jobs j
                  WHERE j.kind = s.kind AND coalesce(j.database, '') = s.database
                    AND j.status = 'failed'
                  ORDER BY j.finished_at DESC LIMIT 1)
           FROM backup_ext.database_summary s
          WHERE s.kind = $1 AND s.database = coalesce($2, '')
            AND s.last_failure_at > coalesce(s.last_success_at, '-infinity')",
        &[kind.into(), database.into()],
    )
    .or_else(|e| match e {
        pgrx::spi::Error::InvalidPosition => Ok(None),
        other => Err(other),
    })
}
