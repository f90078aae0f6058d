//! Built-in schedules for servers without pg_cron: `schedule()`, `unschedule()`, `next_run()`.
//! The worker's side (which runs are due, enqueuing them) is in `worker/scheduler.rs`.

use backup_core::{split_run_options, validate_schedule_name, CronSchedule, ScheduleCommand};
use chrono::{DateTime, Utc};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

use crate::catalog::{self, parse_utc, UTC_TEXT};
use crate::enqueue::timeout_seconds;
use crate::error::{BackupError, OrReport};
use crate::tools;

pub(crate) fn to_timestamptz(t: DateTime<Utc>) -> Option<TimestampWithTimeZone> {
    Spi::get_one_with_args::<TimestampWithTimeZone>(
        "SELECT $1::timestamptz",
        &[t.to_rfc3339().into()],
    )
    .ok()
    .flatten()
}

/// Creates or replaces a schedule; returns when it runs next.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn schedule(name: String, cron: String, command: JsonB) -> Option<TimestampWithTimeZone> {
    validate_schedule_name(&name).or_report();
    let parsed = CronSchedule::parse(&cron).or_report();
    // Validated here as strictly as each run will be; stored as given, so run options
    // (timeout, include_databases) survive.
    ScheduleCommand::from_value_for_tool(&command.0, tools::schedule_dump_tool()).or_report();
    let options = command.0.get("options").cloned().unwrap_or(Value::Null);
    let run = split_run_options(&options).1;
    timeout_seconds(&run);
    if run.contains_key("storage") {
        crate::enqueue::storage_of(&run);
    }
    catalog::upsert_schedule(&name, parsed.as_str(), command).or_report();
    parsed.next_after(Utc::now()).and_then(to_timestamptz)
}

/// Removes a schedule; jobs it already started keep running.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn unschedule(name: String) -> bool {
    if !catalog::delete_schedule(&name).or_report() {
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
