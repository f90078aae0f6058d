//! Built-in schedules for servers without pg_cron: `schedule()`, `unschedule()`, `next_run()`,
//! and the worker's check for runs that are due. A schedule never has two runs at once, and runs
//! missed while the server was down collapse into one run at start.

use backup_core::{
    split_run_options, validate_schedule_name, CronSchedule, RequestError, ScheduleCommand,
};
use chrono::{DateTime, Utc};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

use crate::api::backup::{
    enqueue_cluster, enqueue_database, enqueue_globals, timeout_seconds, Origin,
};
use crate::catalog::SpiResult;
use crate::error::{BackupError, OrReport};
use crate::settings;
use crate::tools;

const UTC_TEXT: &str = "YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"";

fn parse_utc(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn to_timestamptz(t: DateTime<Utc>) -> Option<TimestampWithTimeZone> {
    Spi::get_one_with_args::<TimestampWithTimeZone>(
        "SELECT $1::timestamptz",
        &[t.to_rfc3339().into()],
    )
    .ok()
    .flatten()
}

/// The major version of the configured pg_dump, which decides the compression syntax.
fn pg_dump_major() -> u32 {
    tools::tool_version(&settings::bin_dir(), "pg_dump")
        .map(|v| v.0)
        .unwrap_or(15)
}

/// Creates or replaces a schedule; returns when it runs next.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn schedule(name: String, cron: String, command: JsonB) -> Option<TimestampWithTimeZone> {
    validate_schedule_name(&name).or_report();
    let parsed = CronSchedule::parse(&cron).or_report();
    // Validated here as strictly as each run will be; stored as given, so run options
    // (timeout, include_databases) survive.
    ScheduleCommand::from_value_for_tool(&command.0, pg_dump_major()).or_report();
    let options = command.0.get("options").cloned().unwrap_or(Value::Null);
    timeout_seconds(&split_run_options(&options).1);
    Spi::run_with_args(
        "INSERT INTO backup_ext.schedule_entries AS s (name, cron, command)
         VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE
            SET cron = EXCLUDED.cron, command = EXCLUDED.command, created_at = now(),
                last_error = NULL",
        &[name.as_str().into(), parsed.as_str().into(), command.into()],
    )
    .or_report();
    parsed.next_after(Utc::now()).and_then(to_timestamptz)
}

/// Removes a schedule; jobs it already started keep running.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn unschedule(name: String) -> bool {
    let removed = Spi::get_one_with_args::<i64>(
        "WITH d AS (DELETE FROM backup_ext.schedule_entries WHERE name = $1 RETURNING 1)
         SELECT count(*) FROM d",
        &[name.as_str().into()],
    )
    .or_report()
    .unwrap_or(0);
    if removed == 0 {
        BackupError::NoSuchSchedule(name).report();
    }
    true
}

/// The first time after `after` that a cron expression fires (NULL if it never does).
#[pg_extern(stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn next_run(cron: &str, after: TimestampWithTimeZone) -> Option<TimestampWithTimeZone> {
    let parsed = CronSchedule::parse(cron).or_report();
    let after_text = Spi::get_one_with_args::<String>(
        &format!("SELECT to_char($1 AT TIME ZONE 'UTC', '{UTC_TEXT}')"),
        &[after.into()],
    )
    .or_report()
    .unwrap_or_default();
    let after = parse_utc(&after_text).unwrap_or_else(Utc::now);
    parsed.next_after(after).and_then(to_timestamptz)
}

/// A schedule as the worker sees it.
pub struct Entry {
    pub name: String,
    pub cron: String,
    pub command: Value,
    pub created_at: DateTime<Utc>,
    /// The role whose rights the schedule's jobs use.
    pub created_by: String,
    pub last_run_at: Option<DateTime<Utc>>,
    /// Whether the previous run (a job or a whole set) has not finished yet.
    pub previous_running: bool,
}

pub fn entries() -> SpiResult<Vec<Entry>> {
    Spi::connect(|client| {
        let rows = client.select(
            &format!(
                "SELECT s.name, s.cron, s.command,
                        to_char(s.created_at AT TIME ZONE 'UTC', '{UTC_TEXT}'),
                        to_char(s.last_run_at AT TIME ZONE 'UTC', '{UTC_TEXT}'),
                        EXISTS (SELECT 1 FROM backup_ext.jobs j
                                 WHERE j.status IN ('queued', 'running')
                                   AND (j.job_id = s.last_job_id OR j.set_id = s.last_set_id)),
                        s.created_by::text
                   FROM backup_ext.schedule_entries s
                  ORDER BY s.name"
            ),
            None,
            &[],
        )?;
        let mut out = Vec::new();
        for row in rows {
            out.push(Entry {
                name: row.get(1)?.unwrap_or_default(),
                cron: row.get(2)?.unwrap_or_default(),
                command: row.get::<JsonB>(3)?.map(|j| j.0).unwrap_or(Value::Null),
                created_at: parse_utc(&row.get::<String>(4)?.unwrap_or_default())
                    .unwrap_or_else(Utc::now),
                last_run_at: row.get::<String>(5)?.as_deref().and_then(parse_utc),
                previous_running: row.get(6)?.unwrap_or(false),
                created_by: row.get(7)?.unwrap_or_default(),
            });
        }
        Ok(out)
    })
}

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
    let command = ScheduleCommand::from_value_for_tool(c, pg_dump_major()).or_report();
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
                origin,
            )),
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

/// Notes that a schedule fired for `at`, with what it started or why it did not.
pub fn record_run(
    name: &str,
    at: DateTime<Utc>,
    started: (Option<i64>, Option<i64>),
    error: Option<&str>,
) -> SpiResult<()> {
    Spi::run_with_args(
        "UPDATE backup_ext.schedule_entries
            SET last_run_at = $2::timestamptz,
                last_job_id = coalesce($3, CASE WHEN $4::bigint IS NULL THEN last_job_id END),
                last_set_id = coalesce($4, CASE WHEN $3::bigint IS NULL THEN last_set_id END),
                last_error = $5
          WHERE name = $1",
        &[
            name.into(),
            at.to_rfc3339().into(),
            started.0.into(),
            started.1.into(),
            error.into(),
        ],
    )
}
