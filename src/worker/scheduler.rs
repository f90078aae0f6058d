//! The worker's side of built-in schedules: which runs are due, and enqueuing them. A schedule
//! never has two runs at once, and runs missed while the server was down collapse into one run
//! at start.

use backup_core::{CronSchedule, RequestError, ScheduleCommand};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::catalog::Entry;
use crate::enqueue::{enqueue_cluster, enqueue_database, enqueue_drill, enqueue_globals, Origin};
use crate::error::OrReport;

/// When a schedule is due at `now`: the occurrence it is due for.
pub fn due(entry: &Entry, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, RequestError> {
    let cron = CronSchedule::parse(&entry.cron)?;
    Ok(cron.due_runs(entry.last_run_at, entry.created_at, now))
}

/// Enqueues what a schedule's command describes; raises on a request that no longer validates
/// (e.g. its database was dropped). Returns (job id, set id).
pub fn enqueue(entry: &Entry) -> (Option<i64>, Option<i64>) {
    let c = &entry.command;
    let text = |k: &str| c.get(k).and_then(Value::as_str);
    let origin = Origin {
        set_id: None,
        schedule: Some(&entry.name),
        run_as: Some(&entry.created_by),
    };
    // The same parser as schedule(): a row with no or an unknown "backup" (edited by hand, or
    // stored before schedule() checked it) is refused, not run as a cluster backup.
    let command =
        ScheduleCommand::from_value_for_tool(c, crate::tools::schedule_dump_tool()).or_report();
    match command {
        ScheduleCommand::Database { .. } => (
            Some(enqueue_database(
                text("dbname").unwrap_or_default(),
                text("format").unwrap_or("custom"),
                text("compress"),
                c.get("jobs").and_then(Value::as_i64).map(|j| j as i32),
                text("label"),
                c.get("options").cloned().unwrap_or_else(|| json!({})),
                origin,
            )),
            None,
        ),
        ScheduleCommand::Globals { .. } => (
            Some(enqueue_globals(
                text("label"),
                c.get("no_role_passwords")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                c.get("options").cloned().unwrap_or_else(|| json!({})),
                origin,
            )),
            None,
        ),
        ScheduleCommand::Verify {
            dbname,
            test_restore,
        } => (
            Some(enqueue_drill(dbname.as_deref(), test_restore, origin)),
            None,
        ),
        ScheduleCommand::Cluster { .. } => (
            None,
            Some(enqueue_cluster(
                text("format").unwrap_or("custom"),
                text("label"),
                c.get("options").cloned().unwrap_or_else(|| json!({})),
                origin,
            )),
        ),
    }
}
