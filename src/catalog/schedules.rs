//! The `schedule_entries` table: built-in schedules, and what each one last started.

use chrono::{DateTime, Utc};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

use super::{parse_utc, SpiResult, UTC_TEXT};

/// Creates or replaces a schedule (a replaced one forgets its last error).
pub fn upsert_schedule(name: &str, cron: &str, command: JsonB) -> SpiResult<()> {
    Spi::run_with_args(
        "INSERT INTO backup_ext.schedule_entries AS s (name, cron, command)
         VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE
            SET cron = EXCLUDED.cron, command = EXCLUDED.command, created_at = now(),
                last_error = NULL",
        &[name.into(), cron.into(), command.into()],
    )
}

/// Removes a schedule; false when there was none of that name.
pub fn delete_schedule(name: &str) -> SpiResult<bool> {
    Ok(Spi::get_one_with_args::<i64>(
        "WITH d AS (DELETE FROM backup_ext.schedule_entries WHERE name = $1 RETURNING 1)
         SELECT count(*) FROM d",
        &[name.into()],
    )?
    .unwrap_or(0)
        > 0)
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

/// Every schedule, for the worker's check of what is due.
pub fn schedule_entries() -> SpiResult<Vec<Entry>> {
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

/// Notes that a schedule fired for `at`, with what it started or why it did not.
pub fn record_schedule_run(
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
