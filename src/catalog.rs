//! The only code that reads or writes `backup_ext.*` tables. Every value travels as a `$n`
//! parameter; no SQL text is ever built from user input.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

pub type SpiResult<T> = Result<T, pgrx::spi::Error>;

/// What a caller asks for; one `jobs` row plus its `artifacts` row.
pub struct NewBackup<'a> {
    pub kind: &'a str,
    pub database: Option<&'a str>,
    pub format: &'a str,
    pub compress: Option<&'a str>,
    pub label: Option<&'a str>,
    pub request: Value,
}

/// Inserts the job and the row that will describe its file; returns the job id.
pub fn enqueue_backup(b: &NewBackup) -> SpiResult<i64> {
    Spi::connect_mut(|client| {
        let args: Vec<DatumWithOid> = vec![
            b.kind.into(),
            b.database.into(),
            JsonB(b.request.clone()).into(),
            b.label.into(),
            b.format.into(),
            b.compress.into(),
        ];
        let row = client.update(
            "WITH j AS (
                 INSERT INTO backup_ext.jobs (kind, database, request, label)
                 VALUES ($1, $2, $3, $4)
                 RETURNING job_id, kind, database)
             INSERT INTO backup_ext.artifacts (job_id, kind, database, format, compress)
             SELECT job_id, kind, database, $5, $6 FROM j
             RETURNING job_id",
            Some(1),
            &args,
        )?;
        Ok(row.first().get_one::<i64>()?.unwrap_or_default())
    })
}

/// `Some(datallowconn)` for an existing database, `None` when there is no such database.
pub fn database_allows_connections(name: &str) -> SpiResult<Option<bool>> {
    Spi::get_one_with_args::<bool>(
        "SELECT datallowconn AND datconnlimit <> -2 FROM pg_catalog.pg_database WHERE datname = $1",
        &[name.into()],
    )
    .or_else(|e| match e {
        pgrx::spi::Error::InvalidPosition => Ok(None),
        other => Err(other),
    })
}

/// A job's status and whether this very transaction inserted it.
pub struct JobState {
    pub status: String,
    pub xmin: u32,
}

/// Reads a job with a fresh snapshot (each non-read-only SPI call takes one).
pub fn job_state(job_id: i64) -> SpiResult<Option<JobState>> {
    Spi::connect_mut(|client| {
        let rows = client.update(
            "SELECT status, xmin::text::bigint FROM backup_ext.jobs WHERE job_id = $1",
            None,
            &[job_id.into()],
        )?;
        for row in rows {
            let status: String = row.get(1)?.unwrap_or_default();
            let xmin: i64 = row.get(2)?.unwrap_or_default();
            return Ok(Some(JobState {
                status,
                xmin: xmin as u32,
            }));
        }
        Ok(None)
    })
}

/// Cancels a queued job outright, or flags a running one for the worker; returns the status
/// the job had (None when it does not exist).
pub fn request_cancel(job_id: i64) -> SpiResult<Option<String>> {
    Spi::connect_mut(|client| {
        let rows = client.update(
            "SELECT status FROM backup_ext.jobs WHERE job_id = $1 FOR UPDATE",
            None,
            &[job_id.into()],
        )?;
        let Some(status) = rows.into_iter().next().map(|r| r.get::<String>(1)) else {
            return Ok(None);
        };
        let status = status?.unwrap_or_default();
        match status.as_str() {
            "queued" => {
                client.update(
                    "UPDATE backup_ext.jobs
                        SET status = 'cancelled', finished_at = now(),
                            error = 'cancelled before it started'
                      WHERE job_id = $1",
                    None,
                    &[job_id.into()],
                )?;
            }
            "running" => {
                client.update(
                    "UPDATE backup_ext.jobs SET cancel_requested = true WHERE job_id = $1",
                    None,
                    &[job_id.into()],
                )?;
            }
            _ => {}
        }
        Ok(Some(status))
    })
}

// ---- worker side -------------------------------------------------------------------------

pub fn extension_installed() -> SpiResult<bool> {
    Ok(Spi::get_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'backup_ext')",
    )?
    .unwrap_or(false))
}

/// A job the worker has just moved from queued to running.
pub struct ClaimedJob {
    pub job_id: i64,
    pub kind: String,
    pub database: Option<String>,
    pub request: Value,
    pub started_at: String,
}

/// Claims the oldest queued job, skipping rows another session holds locked.
pub fn claim_next_job(worker_pid: i32) -> SpiResult<Option<ClaimedJob>> {
    Spi::connect_mut(|client| {
        let rows = client.update(
            "UPDATE backup_ext.jobs
                SET status = 'running', started_at = clock_timestamp(), worker_pid = $1,
                    bytes_written = 0
              WHERE job_id = (SELECT job_id FROM backup_ext.jobs
                               WHERE status = 'queued'
                               ORDER BY job_id
                               FOR UPDATE SKIP LOCKED
                               LIMIT 1)
          RETURNING job_id, kind, database, request,
                    to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
            None,
            &[worker_pid.into()],
        )?;
        for row in rows {
            return Ok(Some(ClaimedJob {
                job_id: row.get(1)?.unwrap_or_default(),
                kind: row.get(2)?.unwrap_or_default(),
                database: row.get(3)?,
                request: row.get::<JsonB>(4)?.map(|j| j.0).unwrap_or(Value::Null),
                started_at: row.get(5)?.unwrap_or_default(),
            }));
        }
        Ok(None)
    })
}

/// Records where the job writes and with which tools, before the child starts, so that crash
/// recovery knows which partial output to remove.
pub fn record_start(
    job_id: i64,
    path: &str,
    tool_version: &str,
    server_version: &str,
) -> SpiResult<()> {
    Spi::run_with_args(
        "UPDATE backup_ext.artifacts
            SET path = $2, tool_version = $3, server_version = $4
          WHERE job_id = $1",
        &[
            job_id.into(),
            path.into(),
            tool_version.into(),
            server_version.into(),
        ],
    )
}

/// The final outcome of a job, written in its own transaction.
pub enum Outcome {
    Succeeded {
        size: i64,
        sha256: String,
        manifest: Option<Value>,
    },
    Failed(String),
    Cancelled(String),
}

/// Records how a job ended and tells listeners on channel `backup_ext`.
pub fn record_outcome(job_id: i64, outcome: &Outcome) -> SpiResult<()> {
    let (status, error) = match outcome {
        Outcome::Succeeded { .. } => ("succeeded", None),
        Outcome::Failed(e) => ("failed", Some(e.as_str())),
        Outcome::Cancelled(e) => ("cancelled", Some(e.as_str())),
    };
    Spi::connect_mut(|client| {
        client.update(
            "UPDATE backup_ext.jobs
                SET status = $2, finished_at = clock_timestamp(), error = $3
              WHERE job_id = $1 AND status = 'running'",
            None,
            &[job_id.into(), status.into(), error.into()],
        )?;
        if let Outcome::Succeeded {
            size,
            sha256,
            manifest,
        } = outcome
        {
            client.update(
                "UPDATE backup_ext.artifacts SET size_bytes = $2, sha256 = $3, manifest = $4
                  WHERE job_id = $1",
                None,
                &[
                    job_id.into(),
                    (*size).into(),
                    sha256.as_str().into(),
                    manifest.clone().map(JsonB).into(),
                ],
            )?;
            client.update(
                "UPDATE backup_ext.jobs SET bytes_written = $2 WHERE job_id = $1",
                None,
                &[job_id.into(), (*size).into()],
            )?;
        } else {
            client.update(
                "UPDATE backup_ext.artifacts SET path = NULL WHERE job_id = $1",
                None,
                &[job_id.into()],
            )?;
        }
        client.update(
            "SELECT pg_catalog.pg_notify('backup_ext', json_build_object(
                 'job_id', j.job_id, 'backup_id', a.backup_id, 'kind', j.kind,
                 'database', j.database, 'status', j.status)::text)
               FROM backup_ext.jobs j LEFT JOIN backup_ext.artifacts a USING (job_id)
              WHERE j.job_id = $1",
            None,
            &[job_id.into()],
        )?;
        Ok(())
    })
}

/// Publishes how many bytes each running job has written so far.
pub fn record_progress(progress: &[(i64, i64)]) -> SpiResult<()> {
    if progress.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = progress.iter().map(|p| p.0).collect();
    let bytes: Vec<i64> = progress.iter().map(|p| p.1).collect();
    Spi::run_with_args(
        "UPDATE backup_ext.jobs j SET bytes_written = p.bytes
           FROM unnest($1::bigint[], $2::bigint[]) AS p(job_id, bytes)
          WHERE j.job_id = p.job_id AND j.status = 'running'",
        &[ids.into(), bytes.into()],
    )
}

/// Which of these running jobs someone asked to cancel.
pub fn cancel_requests(running: &[i64]) -> SpiResult<Vec<i64>> {
    if running.is_empty() {
        return Ok(Vec::new());
    }
    Spi::connect_mut(|client| {
        let rows = client.update(
            "SELECT job_id FROM backup_ext.jobs
              WHERE job_id = ANY($1) AND cancel_requested",
            None,
            &[running.to_vec().into()],
        )?;
        let mut out = Vec::new();
        for row in rows {
            if let Some(id) = row.get::<i64>(1)? {
                out.push(id);
            }
        }
        Ok(out)
    })
}

/// Marks every job left running by an earlier worker as failed; returns their output paths so
/// the caller can remove what they left behind.
pub fn fail_interrupted_jobs(reason: &str) -> SpiResult<Vec<(i64, Option<String>)>> {
    Spi::connect_mut(|client| {
        let rows = client.update(
            "WITH failed AS (
                 UPDATE backup_ext.jobs
                    SET status = 'failed', finished_at = clock_timestamp(), error = $1
                  WHERE status = 'running'
              RETURNING job_id)
             UPDATE backup_ext.artifacts a SET path = NULL
               FROM failed f, backup_ext.artifacts old
              WHERE a.job_id = f.job_id AND old.job_id = a.job_id
          RETURNING a.job_id, old.path",
            None,
            &[reason.into()],
        )?;
        let mut out = Vec::new();
        for row in rows {
            out.push((
                row.get::<i64>(1)?.unwrap_or_default(),
                row.get::<String>(2)?,
            ));
        }
        Ok(out)
    })
}

/// `server_version` of the running server, recorded with each backup.
pub fn server_version() -> SpiResult<String> {
    Ok(Spi::get_one::<String>("SELECT current_setting('server_version')")?.unwrap_or_default())
}

/// The bootstrap superuser, whom the tools connect as by default.
pub fn bootstrap_superuser() -> SpiResult<String> {
    Ok(
        Spi::get_one::<String>("SELECT rolname::text FROM pg_catalog.pg_roles WHERE oid = 10")?
            .unwrap_or_else(|| "postgres".into()),
    )
}
