//! Retention: applies each database's policy (grandfather-father-son maths in `backup_core`),
//! deletes what no rule keeps, removes leftovers of failed jobs and forgets old history.
//! Shared by `backup_ext.purge()` and the worker, which purges after every successful backup.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use backup_core::{job_id_of_partial, plan_retention, remove_output, RetainCandidate};
use chrono::Utc;

use crate::catalog::{self, Candidate, SpiResult};
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

/// A path is ours only if it is the one recorded for this backup and its file name carries the
/// backup's own job id (the names the worker gives); anything else is never deleted.
fn created_by_us(path: &Path, backup_id: i64) -> bool {
    path.is_absolute()
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.contains(&format!("-job{backup_id:012}.")))
}

fn delete_backup(c: &Candidate, reason: String, dry_run: bool) -> SpiResult<Purged> {
    let mut line = Purged {
        backup_id: Some(c.backup_id),
        database: c.database.clone(),
        path: c.path.clone().or_else(|| c.key.clone()),
        reason,
    };
    if !dry_run && !catalog::lock_for_expiry(c.backup_id)? {
        line.reason = "kept: pinned, or being pinned by another session".into();
        return Ok(line);
    }
    if let (Some(key), false) = (&c.key, c.storage == catalog::LOCAL_STORAGE) {
        if dry_run {
            return Ok(line);
        }
        match delete_copies(c.backup_id).and_then(|()| delete_remote(&c.storage, key)) {
            Ok(()) => catalog::expire(c.backup_id)?,
            Err(e) => line.reason = format!("could not delete ({e}); {}", line.reason),
        }
        return Ok(line);
    }
    let Some(path) = c.path.as_deref().map(PathBuf::from) else {
        // Nothing on disk to delete: just retire the row.
        if !dry_run {
            catalog::expire(c.backup_id)?;
        }
        return Ok(line);
    };
    if !created_by_us(&path, c.named_id) {
        line.reason = format!(
            "kept: {} is not a file backup_ext named for this backup",
            path.display()
        );
        return Ok(line);
    }
    if dry_run {
        return Ok(line);
    }
    if let Err(e) = delete_copies(c.backup_id) {
        line.reason = format!("could not delete ({e}); {}", line.reason);
        return Ok(line);
    }
    let _ = remove_output(Path::new(&backup_core::sidecar_key(
        &path.to_string_lossy(),
    )));
    match remove_output(&path) {
        Ok(()) => catalog::expire(c.backup_id)?,
        Err(e) => line.reason = format!("could not delete ({e}); {}", line.reason),
    }
    Ok(line)
}

/// Deletes a backup's copies (and their sidecars) from the targets they were copied to; the
/// first failure stops it, leaving the rest for the next purge.
fn delete_copies(backup_id: i64) -> Result<(), String> {
    for (storage, key) in catalog::copies_of(backup_id).map_err(|e| e.to_string())? {
        delete_remote(&storage, &key)?;
        catalog::expire_copy(backup_id, &storage).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Deletes a backup and its sidecar from a storage target.
fn delete_remote(storage: &str, key: &str) -> Result<(), String> {
    let store = crate::storage::open_named(storage)
        .map_err(|e| e.message())?
        .ok_or_else(|| format!("storage target \"{storage}\" is the local directory"))?;
    store
        .delete_backup(key)
        .map_err(|e| format!("storage \"{storage}\": {e}"))
}

/// `*.partial` files and directories that no running job owns: what failed or killed jobs
/// could not clean up themselves.
fn leftovers(dry_run: bool) -> SpiResult<Vec<Purged>> {
    let running = catalog::job_ids(&["running"])?;
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
    let unfinished = catalog::job_ids(&["queued", "running"])?;
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
            if let Err(e) = backup_core::remove_output(&path) {
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

/// Applies retention to `scope`; returns what was (or, with `dry_run`, would be) removed.
pub fn purge(scope: Scope, dry_run: bool) -> SpiResult<Vec<Purged>> {
    let policies = catalog::policies()?;
    let default = policies.get(&None).cloned().unwrap_or_default();
    let now = Utc::now();
    // Without a policy for the scope there is nothing to decide: skip reading its history (this
    // runs after every successful backup).
    let scoped_key = match scope {
        Scope::All => None,
        Scope::Database(db) => Some(Some(db.to_string())),
        Scope::Globals => Some(Some("globals".to_string())),
    };
    if let Some(key) = scoped_key {
        if policies.get(&key).unwrap_or(&default).is_empty() {
            return Ok(Vec::new());
        }
    }

    let mut groups: BTreeMap<(String, Option<String>), Vec<Candidate>> = BTreeMap::new();
    let (kind, database) = match scope {
        Scope::All => (None, None),
        Scope::Database(db) => (Some("database"), Some(db)),
        Scope::Globals => (Some("globals"), None),
    };
    for c in catalog::candidates(kind, database)? {
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
        // Guardrails: while the newest attempts fail, the backups there are may be all there
        // will be; and the newest backup proven restorable stays whatever the rules say.
        if let Some(job_id) = catalog::failing_since(&kind, database.as_deref())? {
            report.push(Purged {
                backup_id: None,
                database: database.clone(),
                path: None,
                reason: format!(
                    "kept all {} backups: the newest attempt (job {job_id}) failed, so nothing expires until a backup succeeds again",
                    backups.len()
                ),
            });
            continue;
        }
        let newest_verified = backups
            .iter()
            .filter(|c| c.verified)
            .max_by_key(|c| (c.finished_at, c.backup_id))
            .map(|c| c.backup_id);
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
            let Some(c) = backups.iter().find(|c| c.backup_id == decision.backup_id) else {
                continue;
            };
            if Some(c.backup_id) == newest_verified {
                report.push(Purged {
                    backup_id: Some(c.backup_id),
                    database: c.database.clone(),
                    path: c.path.clone().or_else(|| c.key.clone()),
                    reason: "kept: the newest backup whose verification passed".into(),
                });
                continue;
            }
            report.push(delete_backup(c, decision.reason, dry_run)?);
        }
    }
    if matches!(scope, Scope::All) {
        report.extend(leftovers(dry_run)?);
        let worker_pid = u32::try_from(crate::wake::worker_pid())
            .ok()
            .filter(|&p| p > 0);
        report.extend(work_leftovers(worker_pid, dry_run)?);
        let forgotten = catalog::forget_history(settings::history_days(), dry_run)?;
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
