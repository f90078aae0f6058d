//! Alerts and their outbox: `backup_ext.alert_targets` (what `add_alert()` stored),
//! `backup_ext.alert_deliveries` (one row per message to send, written in the transaction of the
//! outcome it reports) and `backup_ext.alert_raised` (events raised once per crossing).

use backup_core::alerts::{
    first_line, parse_options, retry_delay, AlertEvent, AlertKind, Delivery, Event,
};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

use super::SpiResult;

/// Whether the alert tables exist: not while the library is newer than the installed schema
/// (before `ALTER EXTENSION backup_ext UPDATE`), when outcomes must still be recorded.
pub fn outbox_exists() -> SpiResult<bool> {
    Ok(super::one_kept::<bool>(
        "SELECT pg_catalog.to_regclass('backup_ext.alert_deliveries') IS NOT NULL",
        &[],
    )?
    .unwrap_or(false))
}

/// Stores a checked alert; false when one of that name exists.
pub fn insert_alert(
    name: &str,
    kind: &str,
    target: &str,
    events: &[&str],
    options: &Value,
) -> SpiResult<bool> {
    let events: Vec<String> = events.iter().map(|e| e.to_string()).collect();
    let inserted = Spi::get_one_with_args::<String>(
        "INSERT INTO backup_ext.alert_targets (name, kind, target, events, options)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING RETURNING name",
        &[
            name.into(),
            kind.into(),
            target.into(),
            events.into(),
            JsonB(options.clone()).into(),
        ],
    );
    Ok(super::optional(inserted)?.is_some())
}

/// Removes an alert with its deliveries; false when there is none of that name.
pub fn delete_alert(name: &str) -> SpiResult<bool> {
    let deleted = Spi::get_one_with_args::<String>(
        "DELETE FROM backup_ext.alert_targets WHERE name = $1 RETURNING name",
        &[name.into()],
    );
    Ok(super::optional(deleted)?.is_some())
}

/// Names of all alerts, for hints.
pub fn alert_names() -> SpiResult<Vec<String>> {
    super::texts(
        "SELECT name FROM backup_ext.alert_targets ORDER BY name",
        &[],
    )
}

/// An alert as stored: kind, target, options.
pub fn alert(name: &str) -> SpiResult<Option<(String, String, Value)>> {
    Spi::connect(|client| {
        let mut rows = client.select(
            "SELECT kind, target, options FROM backup_ext.alert_targets WHERE name = $1",
            None,
            &[name.into()],
        )?;
        let Some(row) = rows.next() else {
            return Ok(None);
        };
        let kind = row.get::<String>(1)?.unwrap_or_default();
        let target = row.get::<String>(2)?.unwrap_or_default();
        let options = row.get::<JsonB>(3)?.map(|j| j.0).unwrap_or(Value::Null);
        Ok(Some((kind, target, options)))
    })
}

/// An event with the cluster's identity and the time filled in.
pub fn new_event(event: Event, database: Option<&str>, message: &str) -> SpiResult<AlertEvent> {
    let cluster =
        super::one_kept::<String>("SELECT pg_catalog.current_setting('cluster_name')", &[])?
            .unwrap_or_default();
    Ok(AlertEvent {
        event: event.as_str().to_string(),
        message: message.to_string(),
        database: database.map(str::to_string),
        job_id: None,
        kind: None,
        status: None,
        backup_id: None,
        error: None,
        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        cluster,
        system_identifier: super::system_identifier()?,
    })
}

/// Fills in what the catalog knows of a job.
fn add_job_facts(e: &mut AlertEvent, job_id: i64) -> SpiResult<()> {
    Spi::connect_mut(|client| {
        let rows = super::kept(
            client,
            "SELECT j.kind, j.status, j.database, coalesce(a.backup_id, j.backup_id), coalesce(j.error, '')
               FROM backup_ext.jobs j LEFT JOIN backup_ext.artifacts a ON a.job_id = j.job_id
              WHERE j.job_id = $1",
            &[job_id.into()],
        )?;
        for row in rows {
            e.job_id = Some(job_id);
            e.kind = row.get::<String>(1)?;
            e.status = row.get::<String>(2)?;
            if e.database.is_none() {
                e.database = row.get::<String>(3)?;
            }
            e.backup_id = row.get::<i64>(4)?;
            let error = first_line(&row.get::<String>(5)?.unwrap_or_default());
            e.error = Some(error).filter(|e| !e.is_empty());
        }
        Ok(())
    })
}

/// Queues `event` for every alert that asked for it, in the caller's transaction; returns how
/// many deliveries were queued. With a job id, the job's kind, status, database, backup and
/// error line go into the message. For guardrails and any other check that finds something
/// worth telling.
pub fn raise(
    event: Event,
    database: Option<&str>,
    job_id: Option<i64>,
    message: &str,
) -> SpiResult<i64> {
    if !outbox_exists()? {
        return Ok(0);
    }
    let mut e = new_event(event, database, message)?;
    if let Some(job_id) = job_id {
        add_job_facts(&mut e, job_id)?;
    }
    queue(&e, &[event.as_str()], &[])
}

/// Inserts one delivery of `e` per alert whose events hold one of `any` and none of `none`.
fn queue(e: &AlertEvent, any: &[&str], none: &[&str]) -> SpiResult<i64> {
    let payload = serde_json::to_value(e).unwrap_or(Value::Null);
    let any: Vec<String> = any.iter().map(|s| s.to_string()).collect();
    let none: Vec<String> = none.iter().map(|s| s.to_string()).collect();
    Ok(super::one_kept::<i64>(
        "WITH q AS (
             INSERT INTO backup_ext.alert_deliveries (alert, event, payload)
             SELECT a.name, $1, $2 FROM backup_ext.alert_targets a
              WHERE a.events && $3 AND NOT a.events && $4
             RETURNING 1)
         SELECT count(*) FROM q",
        &[
            e.event.as_str().into(),
            JsonB(payload).into(),
            any.into(),
            none.into(),
        ],
    )?
    .unwrap_or_default())
}

/// Queues the alerts a job's outcome calls for (called by `record_outcome`, so in its
/// transaction): `succeeded`; `failed` for any kind; for a verification that failed,
/// `verify_failed` to the alerts that asked for it and `failed` to those that asked only for
/// that, so that no alert hears of one outcome twice. A cancellation raises nothing.
pub fn raise_for_outcome(job_id: i64) -> SpiResult<i64> {
    if !outbox_exists()? {
        return Ok(0);
    }
    let mut e = new_event(Event::Failed, None, "")?;
    add_job_facts(&mut e, job_id)?;
    let status = e.status.clone().unwrap_or_default();
    let verify = e.kind.as_deref() == Some("verify");
    let queued = match status.as_str() {
        "succeeded" => {
            e.event = Event::Succeeded.as_str().into();
            e.describe_job();
            queue(&e, &["succeeded"], &[])?
        }
        "failed" if verify => {
            let mut v = e.clone();
            v.event = Event::VerifyFailed.as_str().into();
            v.describe_job();
            e.describe_job();
            queue(&v, &["verify_failed"], &[])? + queue(&e, &["failed"], &["verify_failed"])?
        }
        "failed" => {
            e.describe_job();
            queue(&e, &["failed"], &[])?
        }
        _ => 0,
    };
    Ok(queued)
}

/// Raises `stale` for each database whose newest successful backup has become older than
/// `backup_ext.warn_age`, once per crossing: `alert_raised` remembers which backup (by its
/// finish time) the alert was raised for, so a newer backup that goes stale in turn raises it
/// again and nothing else does. Only databases with a successful backup are watched (one that
/// never had one is for status() to report).
pub fn check_stale() -> SpiResult<i64> {
    let crossed = Spi::connect_mut(|client| {
        let rows = client.update(
            "WITH last AS (
                 SELECT j.database, max(j.finished_at) AS at
                   FROM backup_ext.jobs j
                  WHERE j.kind = 'database' AND j.status = 'succeeded' AND j.database IS NOT NULL
                  GROUP BY j.database),
             crossed AS (
                 INSERT INTO backup_ext.alert_raised AS r (event, subject, as_of)
                 SELECT 'stale', l.database, l.at FROM last l
                  WHERE l.at < now() - pg_catalog.current_setting('backup_ext.warn_age')::interval
                 ON CONFLICT (event, subject) DO UPDATE
                    SET as_of = EXCLUDED.as_of, raised_at = now()
                  WHERE r.as_of IS DISTINCT FROM EXCLUDED.as_of
                 RETURNING r.subject)
             SELECT c.subject, pg_catalog.to_char(l.at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')
               FROM crossed c JOIN last l ON l.database = c.subject",
            None,
            &[],
        )?;
        let mut out = Vec::new();
        for row in rows {
            out.push((
                row.get::<String>(1)?.unwrap_or_default(),
                row.get::<String>(2)?.unwrap_or_default(),
            ));
        }
        Ok::<_, pgrx::spi::Error>(out)
    })?;
    let mut queued = 0;
    for (database, at) in crossed {
        let message = format!(
            "the last successful backup of database \"{database}\" finished at {at} UTC, \
             longer ago than backup_ext.warn_age"
        );
        queued += raise(Event::Stale, Some(&database), None, &message)?;
    }
    Ok(queued)
}

/// Raises `copy_lagging` once per backup that still lacks a required copy
/// (`backup_ext.copies`) longer than `backup_ext.copy_lag` after it finished.
pub fn check_copy_lag() -> SpiResult<i64> {
    let lagging = Spi::connect_mut(|client| {
        let rows = client.update(
            "WITH lagging AS (
                 SELECT a.backup_id, a.database, a.job_id,
                        string_agg(c.storage, ', ' ORDER BY c.storage) AS storages
                   FROM backup_ext.backup_copies c
                   JOIN backup_ext.artifacts a ON a.backup_id = c.backup_id
                   JOIN backup_ext.jobs j ON j.job_id = a.job_id
                  WHERE c.status <> 'succeeded' AND c.status <> 'expired'
                    AND a.expired_at IS NULL
                    AND j.finished_at < now() - pg_catalog.current_setting('backup_ext.copy_lag')::interval
                  GROUP BY a.backup_id, a.database, a.job_id),
             raised AS (
                 INSERT INTO backup_ext.alert_raised (event, subject)
                 SELECT 'copy_lagging', l.backup_id::text FROM lagging l
                 ON CONFLICT DO NOTHING
                 RETURNING subject)
             SELECT l.backup_id, l.database, l.job_id, l.storages
               FROM lagging l JOIN raised r ON r.subject = l.backup_id::text",
            None,
            &[],
        )?;
        let mut out = Vec::new();
        for row in rows {
            out.push((
                row.get::<i64>(1)?.unwrap_or_default(),
                row.get::<String>(2)?,
                row.get::<i64>(3)?,
                row.get::<String>(4)?.unwrap_or_default(),
            ));
        }
        Ok::<_, pgrx::spi::Error>(out)
    })?;
    let mut queued = 0;
    for (backup_id, database, job_id, storages) in lagging {
        let message =
            format!("backup {backup_id} still has no copy in {storages} after backup_ext.copy_lag");
        queued += raise(Event::CopyLagging, database.as_deref(), job_id, &message)?;
    }
    Ok(queued)
}

/// Claims up to `limit` due deliveries that are not `in_flight`: each try is counted now, and
/// the row is leased for `lease_secs` so that neither this worker nor its successor after a
/// crash sends it again while the try may still be running.
pub fn claim_due_deliveries(
    limit: i64,
    in_flight: &[i64],
    lease_secs: i32,
) -> SpiResult<Vec<Result<Delivery, (i64, String)>>> {
    Spi::connect_mut(|client| {
        let rows = client.update(
            "UPDATE backup_ext.alert_deliveries d
                SET attempts = d.attempts + 1,
                    next_try_at = now() + make_interval(secs => $3)
               FROM backup_ext.alert_targets a
              WHERE a.name = d.alert
                AND d.delivery_id IN (
                    SELECT x.delivery_id FROM backup_ext.alert_deliveries x
                     WHERE x.delivered_at IS NULL AND x.next_try_at <= now()
                       AND NOT x.delivery_id = ANY($2)
                     ORDER BY x.next_try_at LIMIT $1
                     FOR UPDATE SKIP LOCKED)
             RETURNING d.delivery_id, a.kind, a.target, a.options, d.payload",
            None,
            &[limit.into(), in_flight.to_vec().into(), lease_secs.into()],
        )?;
        let mut out = Vec::new();
        for row in rows {
            let id = row.get::<i64>(1)?.unwrap_or_default();
            let kind = row.get::<String>(2)?.unwrap_or_default();
            let target = row.get::<String>(3)?.unwrap_or_default();
            let options = row.get::<JsonB>(4)?.map(|j| j.0).unwrap_or(Value::Null);
            let payload = row.get::<JsonB>(5)?.map(|j| j.0).unwrap_or(Value::Null);
            out.push(delivery(id, &kind, target, &options, payload).map_err(|e| (id, e)));
        }
        Ok(out)
    })
}

/// A delivery from its stored parts; a row this version cannot read is an error to record.
pub fn delivery(
    id: i64,
    kind: &str,
    target: String,
    options: &Value,
    payload: Value,
) -> Result<Delivery, String> {
    let kind = AlertKind::parse(kind).map_err(|e| e.message)?;
    let options = parse_options(kind, options).map_err(|e| e.message)?;
    let event: AlertEvent =
        serde_json::from_value(payload).map_err(|e| format!("unreadable payload: {e}"))?;
    Ok(Delivery {
        id,
        kind,
        target,
        options,
        event,
    })
}

/// Records how a try went: delivered, or failed with its reason and the time of the next try
/// (none once `retries` tries have been made).
pub fn record_delivery(id: i64, result: &Result<String, String>, retries: i32) -> SpiResult<()> {
    match result {
        Ok(_) => Spi::run_with_args(
            "UPDATE backup_ext.alert_deliveries
                SET delivered_at = now(), next_try_at = NULL
              WHERE delivery_id = $1",
            &[id.into()],
        ),
        Err(e) => {
            let attempts = super::optional(Spi::get_one_with_args::<i32>(
                "SELECT attempts FROM backup_ext.alert_deliveries WHERE delivery_id = $1",
                &[id.into()],
            ))?
            .unwrap_or(retries);
            let delay = (attempts < retries).then(|| retry_delay(attempts) as i32);
            Spi::run_with_args(
                "UPDATE backup_ext.alert_deliveries
                    SET last_error = $2,
                        next_try_at = now() + make_interval(secs => $3)
                  WHERE delivery_id = $1",
                &[id.into(), e.as_str().into(), delay.into()],
            )
        }
    }
}

/// Seconds until the next delivery not in flight is due (negative when overdue).
pub fn next_delivery_due(in_flight: &[i64]) -> SpiResult<Option<f64>> {
    Spi::get_one_with_args::<f64>(
        "SELECT extract(epoch FROM min(next_try_at) - now())::float8
           FROM backup_ext.alert_deliveries
          WHERE delivered_at IS NULL AND next_try_at IS NOT NULL
            AND NOT delivery_id = ANY($1)",
        &[in_flight.to_vec().into()],
    )
}

/// Deletes deliveries, sent or given up, and once-raised markers of backups older than
/// `history_days`; pending ones stay. Returns the deliveries deleted.
pub fn forget_deliveries(history_days: i32) -> SpiResult<i64> {
    Spi::run_with_args(
        "DELETE FROM backup_ext.alert_raised
          WHERE event = 'copy_lagging' AND raised_at < now() - make_interval(days => $1)",
        &[history_days.into()],
    )?;
    Ok(Spi::get_one_with_args::<i64>(
        "WITH d AS (DELETE FROM backup_ext.alert_deliveries
                     WHERE created_at < now() - make_interval(days => $1)
                       AND next_try_at IS NULL
                    RETURNING 1)
         SELECT count(*) FROM d",
        &[history_days.into()],
    )?
    .unwrap_or_default())
}
