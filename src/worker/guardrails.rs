//! Guardrails against silent failure that the worker applies around a dump: a dump does not
//! start, or is stopped, when the filesystem it writes to runs short of space
//! (`backup_ext.min_free_space`); a suspiciously small dump is flagged
//! (`backup_ext.min_size_ratio`); and every anomaly goes through [`raise_guardrail_alert`].

use std::path::Path;

use backup_core::{free_space, FreeSpaceRule};
use pgrx::prelude::*;

use crate::catalog::{self, SpiResult};
use crate::settings;

/// Flags the succeeded backup `backup_id` when it is much smaller than the previous one of the
/// same database, format and options, and raises the guardrail alert for it.
pub fn check_size(job_id: i64, backup_id: i64) -> SpiResult<()> {
    if let Some((database, reason)) =
        catalog::flag_size_anomaly(backup_id, settings::min_size_ratio())?
    {
        raise_guardrail_alert(job_id, Some(&database), &reason)?;
    }
    Ok(())
}

/// The one place a guardrail anomaly becomes an alert (event `guardrail`). Called inside the
/// transaction that records the job's outcome, so an alert queued here is never lost and
/// never sent for an outcome that rolled back; also logged.
pub fn raise_guardrail_alert(job_id: i64, database: Option<&str>, reason: &str) -> SpiResult<()> {
    log!(
        "backup_ext: guardrail: job {job_id} ({}): {reason}",
        database.unwrap_or("globals")
    );
    catalog::alerts::raise(
        backup_core::alerts::Event::Guardrail,
        database,
        Some(job_id),
        reason,
    )
    .map(|_| ())
}

/// Why a dump writing `final_path` must not start or go on, if so: the free space of the
/// filesystem of its folder is below `backup_ext.min_free_space`.
pub fn free_space_shortfall(final_path: &Path) -> Option<String> {
    let rule = match FreeSpaceRule::parse(&settings::min_free_space()) {
        Ok(rule) => rule,
        Err(e) => return Some(e.message),
    };
    let dir = final_path.parent()?;
    match free_space(dir) {
        Ok((free, total)) => rule
            .shortfall(free, total)
            .map(|why| format!("the filesystem of {} has {why}", dir.display())),
        Err(e) => {
            warning!(
                "backup_ext: cannot read the free space of {}: {e}",
                dir.display()
            );
            None
        }
    }
}
