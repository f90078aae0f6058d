//! Retention: applies each database's policy (grandfather-father-son maths in `backup_core`),
//! deletes what no rule keeps, removes leftovers of failed jobs and forgets old history.
//! Shared by `backup_ext.purge()` and the worker, which purges after every successful backup.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use backup_core::{
    job_id_of_partial, plan_retention, remove_output, RetainCandidate, RetentionPolicy,
};
use chrono::{DateTime, Utc};
use pgrx::prelude::*;

use crate::catalog::SpiResult;
use crate::settings;

/// One line of the purge report.
pub struct Purged {
    pub backup_id: Option<i64>,
    pub database: Option<String>,
    pub path: Option<String>,
    pub reason: String,
}

/// Which backups a purge looks at: all, or one database's (or the globals).
#[derive(Clone, Copy)]
pub enum Scope<'a> {
    All,
    Database(&'a str),
    Globals,
}

struct Candidate {
    backup_id: i64,
    kind: String,
    database: Option<String>,
    finished_at: DateTime<Utc>,
    pinned: bool,
    path: Option<String>,
}

const UTC_TEXT: &str = "YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"";

fn parse_utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|_| Utc::now())
}

fn policies() -> SpiResult<BTreeMap<Option<String>, RetentionPolicy>> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT database, keep_last, keep_days, keep_daily, keep_weekly, keep_monthly
               FROM backup_ext.retention",
            None,
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

fn candidates(scope: Scope) -> SpiResult<Vec<Candidate>> {
    let (kind, database) = match scope {
        Scope::All => (None, None),
        Scope::Database(db) => (Some("database"), Some(db)),
        Scope::Globals => (Some("globals"), None),
    };
    Spi::connect(|client| {
        let rows = client.select(
            &format!(
                "SELECT backup_id, kind, database, to_char(finished_at AT TIME ZONE 'UTC', '{UTC_TEXT}'),
                        pinned, path
                   FROM backup_ext.backups
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
                finished_at: parse_utc(&row.get::<String>(4)?.unwrap_or_default()),
                pinned: row.get(5)?.unwrap_or(false),
                path: row.get(6)?,
            });
        }
        Ok(out)
    })
}

/// A path is ours only if it is the one recorded for this backup and its file name carries the
/// backup's own job id (the names the worker gives); anything else is never deleted.
fn created_by_us(path: &Path, backup_id: i64) -> bool {
    path.is_absolute()
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.contains(&format!("-job{backup_id:012}.")))
}

fn expire(backup_id: i64) -> SpiResult<()> {
    Spi::run_with_args(
        "UPDATE backup_ext.artifacts SET expired_at = clock_timestamp() WHERE backup_id = $1",
        &[backup_id.into()],
    )
}

/// Locks a backup's row for expiry unless another session holds it (a `pin()` not yet
/// committed) or it was pinned meanwhile: purge never waits for, nor overrides, a pin.
fn lock_for_expiry(backup_id: i64) -> SpiResult<bool> {
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

fn delete_backup(c: &Candidate, reason: String, dry_run: bool) -> SpiResult<Purged> {
    let mut line = Purged {
        backup_id: Some(c.backup_id),
        database: c.database.clone(),
        path: c.path.clone(),
        reason,
    };
    if !dry_run && !lock_for_expiry(c.backup_id)? {
        line.reason = "kept: pinned, or being pinned by another session".into();
        return Ok(line);
    }
    let Some(path) = c.path.as_deref().map(PathBuf::from) else {
        // Nothing on disk to delete: just retire the row.
        if !dry_run {
            expire(c.backup_id)?;
        }
        return Ok(line);
    };
    if !created_by_us(&path, c.backup_id) {
        line.reason = format!(
            "kept: {} is not a file backup_ext named for this backup",
            path.display()
        );
        return Ok(line);
    }
    if dry_run {
        return Ok(line);
    }
    match remove_output(&path) {
        Ok(()) => expire(c.backup_id)?,
        Err(e) => line.reason = format!("could not delete ({e}); {}", line.reason),
    }
    Ok(line)
}

/// The ids of the jobs in one of `statuses`.
fn job_ids(statuses: &[&str]) -> SpiResult<Vec<i64>> {
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

/// `*.partial` files and directories that no running job owns: what failed or killed jobs
/// could not clean up themselves.
fn leftovers(dry_run: bool) -> SpiResult<Vec<Purged>> {
    let running = job_ids(&["running"])?;
    let mut out = Vec::new();
    let Ok(folders) = std::fs::read_dir(settings::directory()) else {
        return Ok(out);
    };
    for folder in folders.flatten() {
        let Ok(entries) = std::fs::read_dir(folder.path()) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(job_id) = job_id_of_partial(&name) else {
                continue;
            };
            if running.contains(&job_id) {
                continue;
            }
            let mut reason = format!("leftover of job {job_id}, which is not running");
            if !dry_run {
                if let Err(e) = remove_output(&entry.path()) {
                    reason = format!("could not delete ({e}); {reason}");
                }
            }
            out.push(Purged {
                backup_id: None,
                database: Some(folder.file_name().to_string_lossy().into_owned()),
                path: Some(entry.path().to_string_lossy().into_owned()),
                reason,
            });
        }
    }
    Ok(out)
}

/// Per-job files in `<directory>/.work` (stderr captures, `pg_restore -L` lists) that a crash
/// left: those of jobs no longer queued or running, and step files of processes other than
/// `worker_pid`. Recovery at worker start passes its own pid, `purge()` the running worker's.
pub fn work_leftovers(worker_pid: Option<u32>, dry_run: bool) -> SpiResult<Vec<Purged>> {
    let unfinished = job_ids(&["queued", "running"])?;
    let work_dir = settings::directory().join(".work");
    let stale = match backup_core::stale_work_files(&work_dir, &unfinished, worker_pid) {
        Ok(stale) => stale,
        Err(e) => {
            pgrx::warning!("backup_ext: cannot list {}: {e}", work_dir.display());
            return Ok(Vec::new());
        }
    };
    let mut out = Vec::new();
    for path in stale {
        let mut reason = "work file of a job or process that is gone".to_string();
        if !dry_run {
            if let Err(e) = std::fs::remove_file(&path) {
                reason = format!("could not delete ({e}); {reason}");
            }
        }
        out.push(Purged {
            backup_id: None,
            database: None,
            path: Some(path.to_string_lossy().into_owned()),
            reason,
        });
    }
    Ok(out)
}

/// Deletes job history older than `backup_ext.history_days`, except rows of live backups.
fn forget_history(dry_run: bool) -> SpiResult<i64> {
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
    Ok(
        Spi::get_one_with_args::<i64>(&sql, &[settings::history_days().into()])?
            .unwrap_or_default(),
    )
}

/// Applies retention to `scope`; returns what was (or, with `dry_run`, would be) removed.
pub fn purge(scope: Scope, dry_run: bool) -> SpiResult<Vec<Purged>> {
    let policies = policies()?;
    let default = policies.get(&None).cloned().unwrap_or_default();
    let now = Utc::now();

    let mut groups: BTreeMap<(String, Option<String>), Vec<Candidate>> = BTreeMap::new();
    for c in candidates(scope)? {
        groups
            .entry((c.kind.clone(), c.database.clone()))
            .or_default()
            .push(c);
    }
    let mut report = Vec::new();
    for ((kind, database), backups) in groups {
        let key = if kind == "globals" {
            Some("globals".to_string())
        } else {
            database.clone()
        };
        let policy = policies
            .get(&key)
            .cloned()
            .unwrap_or_else(|| default.clone());
        if policy.is_empty() {
            continue;
        }
        let retain: Vec<RetainCandidate> = backups
            .iter()
            .map(|c| RetainCandidate {
                backup_id: c.backup_id,
                finished_at: c.finished_at,
                pinned: c.pinned,
            })
            .collect();
        for decision in plan_retention(&policy, &retain, now) {
            if decision.keep {
                continue;
            }
            if let Some(c) = backups.iter().find(|c| c.backup_id == decision.backup_id) {
                report.push(delete_backup(c, decision.reason, dry_run)?);
            }
        }
    }
    if matches!(scope, Scope::All) {
        report.extend(leftovers(dry_run)?);
        let worker_pid = u32::try_from(crate::wake::worker_pid())
            .ok()
            .filter(|&p| p > 0);
        report.extend(work_leftovers(worker_pid, dry_run)?);
        let forgotten = forget_history(dry_run)?;
        if forgotten > 0 {
            report.push(Purged {
                backup_id: None,
                database: None,
                path: None,
                reason: format!(
                    "{forgotten} job rows older than backup_ext.history_days = {} forgotten",
                    settings::history_days()
                ),
            });
        }
    }
    Ok(report)
}
