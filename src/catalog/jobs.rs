//! The `jobs` and `cancel_requests` tables: the queue, its claims, progress and outcomes.

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

use backup_core::{JobKind, JobStatus};

/// The statuses from which a job may move to `to`, as a text array parameter.
fn predecessors(to: JobStatus) -> Vec<String> {
    to.predecessors().into_iter().map(str::to_string).collect()
}

use super::{job_kind, SpiResult};

/// A job's status, whether this very transaction inserted it, and whom it is for.
pub struct JobState {
    pub status: String,
    pub xmin: u32,
    pub database: Option<String>,
    pub run_as: Option<String>,
}

/// Reads a job with a fresh snapshot (each non-read-only SPI call takes one).
pub fn job_state(job_id: i64) -> SpiResult<Option<JobState>> {
    Spi::connect_mut(|client| {
        let rows = client.update(
            "SELECT status, xmin::text::bigint, database, coalesce(run_as, requested_by)::text
               FROM backup_ext.jobs WHERE job_id = $1",
            None,
            &[job_id.into()],
        )?;
        if let Some(row) = rows.into_iter().next() {
            let status: String = row.get(1)?.unwrap_or_default();
            let xmin: i64 = row.get(2)?.unwrap_or_default();
            return Ok(Some(JobState {
                status,
                xmin: xmin as u32,
                database: row.get(3)?,
                run_as: row.get(4)?,
            }));
        }
        Ok(None)
    })
}

/// Cancels a queued job outright, or files a cancel request for a running one; returns the
/// status the job had (None when it does not exist).
///
/// A running job's row is never locked here: the worker updates it (progress, outcome), and
/// a caller who keeps this transaction open must not make it wait. Only a queued row is
/// updated, which the worker's claim skips while it is locked.
pub fn request_cancel(job_id: i64) -> SpiResult<Option<String>> {
    Spi::connect_mut(|client| {
        let cancelled = client.update(
            "UPDATE backup_ext.jobs
                SET status = 'cancelled', finished_at = now(),
                    error = 'cancelled before it started'
              WHERE job_id = $1 AND status = 'queued'
          RETURNING job_id",
            None,
            &[job_id.into()],
        )?;
        if !cancelled.is_empty() {
            client.update(
                "UPDATE backup_ext.backup_copies
                    SET status = 'failed', finished_at = now(), next_try_at = NULL,
                        error = 'cancelled before it started'
                  WHERE job_id = $1",
                None,
                &[job_id.into()],
            )?;
            return Ok(Some("queued".to_string()));
        }
        let rows = client.update(
            "SELECT status FROM backup_ext.jobs WHERE job_id = $1",
            None,
            &[job_id.into()],
        )?;
        let Some(status) = rows.into_iter().next().map(|r| r.get::<String>(1)) else {
            return Ok(None);
        };
        let status = status?.unwrap_or_default();
        if status == "running" {
            client.update(
                "INSERT INTO backup_ext.cancel_requests (job_id) VALUES ($1)
                 ON CONFLICT (job_id) DO NOTHING",
                None,
                &[job_id.into()],
            )?;
        }
        Ok(Some(status))
    })
}

/// A job the worker has just moved from queued to running.
#[derive(Clone)]
pub struct ClaimedJob {
    pub job_id: i64,
    pub kind: Result<JobKind, String>,
    /// The role whose rights the job uses.
    pub run_as: String,
    pub database: Option<String>,
    pub backup_id: Option<i64>,
    pub request: Value,
    pub started_at: String,
    pub timeout_seconds: Option<i32>,
    /// Where a backup job writes (`local` or a storage target); `local` for other jobs.
    pub storage: String,
}

/// Claims the oldest queued job, skipping rows another session holds locked.
pub fn claim_next_job(worker_pid: i32) -> SpiResult<Option<ClaimedJob>> {
    Spi::connect_mut(|client| {
        let rows = super::kept(
            client,
            "UPDATE backup_ext.jobs
                SET status = 'running', started_at = clock_timestamp(), worker_pid = $1,
                    bytes_written = 0
              WHERE job_id = (SELECT job_id FROM backup_ext.jobs
                               WHERE status = 'queued'
                               ORDER BY job_id
                               FOR UPDATE SKIP LOCKED
                               LIMIT 1)
          RETURNING job_id, kind, database, request,
                    to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                    backup_id, timeout_seconds, coalesce(run_as, requested_by)::text,
                    coalesce((SELECT a.storage FROM backup_ext.artifacts a
                               WHERE a.job_id = jobs.job_id), 'local')",
            &[worker_pid.into()],
        )?;
        if let Some(row) = rows.into_iter().next() {
            return Ok(Some(ClaimedJob {
                job_id: row.get(1)?.unwrap_or_default(),
                kind: job_kind(row.get(2)?),
                run_as: row.get(8)?.unwrap_or_default(),
                database: row.get(3)?,
                request: row.get::<JsonB>(4)?.map(|j| j.0).unwrap_or(Value::Null),
                started_at: row.get(5)?.unwrap_or_default(),
                backup_id: row.get(6)?,
                timeout_seconds: row.get(7)?,
                storage: row.get(9)?.unwrap_or_default(),
            }));
        }
        Ok(None)
    })
}

/// Records where the job writes (a local path, or a key in its storage target) and with which
/// tools, before the child starts, so that crash recovery knows which output to remove.
pub fn record_start(
    job_id: i64,
    path: Option<&str>,
    key: Option<&str>,
    tool_version: &str,
    server_version: &str,
    recipients: &[String],
) -> SpiResult<()> {
    let recipients = (!recipients.is_empty()).then(|| recipients.to_vec());
    super::run_kept(
        "UPDATE backup_ext.artifacts
            SET path = $2, key = $3, tool_version = $4, server_version = $5,
                encrypted = $6::text[] IS NOT NULL, recipients = $6
          WHERE job_id = $1",
        &[
            job_id.into(),
            path.into(),
            key.into(),
            tool_version.into(),
            server_version.into(),
            recipients.into(),
        ],
    )
}

/// The id of the multipart upload a running backup streams into, so that an upload left by a
/// crash or a failed abort can be aborted later.
pub fn record_upload_id(job_id: i64, upload: &OpenUpload) -> SpiResult<()> {
    if upload.copy {
        return Spi::run_with_args(
            "UPDATE backup_ext.backup_copies SET upload_id = $2 WHERE job_id = $1",
            &[job_id.into(), upload.upload_id.as_str().into()],
        );
    }
    Spi::run_with_args(
        "UPDATE backup_ext.artifacts SET upload_id = $2, upload_key = $3 WHERE job_id = $1",
        &[
            job_id.into(),
            upload.upload_id.as_str().into(),
            upload.key.clone().into(),
        ],
    )
}

/// A multipart upload a running job has open.
pub struct OpenUpload {
    pub upload_id: String,
    /// The object's key when it is not the backup's own (a file of a directory-format backup).
    pub key: Option<String>,
    /// The upload of a copy, not of a backup.
    pub copy: bool,
}

/// An upload of a backup that ended without completing it.
pub struct AbandonedUpload {
    pub job_id: i64,
    pub storage: String,
    pub key: String,
    pub upload_id: String,
    /// The upload of a copy (its row stays for a retry), not of a backup.
    pub copy: bool,
}

/// Uploads recorded for jobs that are no longer running.
pub fn abandoned_uploads() -> SpiResult<Vec<AbandonedUpload>> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT a.job_id, a.storage, coalesce(a.upload_key, a.key), a.upload_id, false
               FROM backup_ext.artifacts a JOIN backup_ext.jobs j USING (job_id)
              WHERE a.upload_id IS NOT NULL AND a.key IS NOT NULL
                AND j.status NOT IN ('queued', 'running')
             UNION ALL
             SELECT c.job_id, c.storage, c.key, c.upload_id, true
               FROM backup_ext.backup_copies c JOIN backup_ext.jobs j USING (job_id)
              WHERE c.upload_id IS NOT NULL AND c.key IS NOT NULL
                AND j.status NOT IN ('queued', 'running')",
            None,
            &[],
        )?;
        let mut out = Vec::new();
        for row in rows {
            out.push(AbandonedUpload {
                job_id: row.get(1)?.unwrap_or_default(),
                storage: row.get(2)?.unwrap_or_default(),
                key: row.get(3)?.unwrap_or_default(),
                upload_id: row.get(4)?.unwrap_or_default(),
                copy: row.get(5)?.unwrap_or_default(),
            });
        }
        Ok(out)
    })
}

/// The upload of a job that did not succeed is gone: a backup's key means nothing any more (a
/// copy keeps its key for the next attempt).
pub fn forget_upload(job_id: i64, copy: bool) -> SpiResult<()> {
    let sql = if copy {
        "UPDATE backup_ext.backup_copies SET upload_id = NULL
          WHERE job_id = $1 AND upload_id IS NOT NULL"
    } else {
        "UPDATE backup_ext.artifacts SET key = NULL, upload_id = NULL, upload_key = NULL
          WHERE job_id = $1 AND upload_id IS NOT NULL"
    };
    Spi::run_with_args(sql, &[job_id.into()])
}

/// What a backup's sidecar says, read just before its outcome is recorded.
pub fn sidecar_facts(job_id: i64) -> SpiResult<Option<Value>> {
    super::one_kept::<JsonB>(
        "SELECT pg_catalog.jsonb_build_object(
                    'backup_id', a.backup_id, 'kind', a.kind, 'database', a.database,
                    'format', a.format, 'compress', a.compress, 'label', j.label,
                    'requested_at', to_char(j.requested_at AT TIME ZONE 'UTC', $2),
                    'started_at', to_char(j.started_at AT TIME ZONE 'UTC', $2),
                    'finished_at', to_char(clock_timestamp() AT TIME ZONE 'UTC', $2),
                    'server_version', coalesce(a.server_version, ''),
                    'tool_version', coalesce(a.tool_version, ''),
                    'system_identifier', $3::text,
                    'set_id', j.set_id, 'storage', a.storage,
                    'key', coalesce(a.key, a.path), 'table_rows', a.table_rows,
                    'encrypted', a.encrypted,
                    'recipients', coalesce(pg_catalog.to_jsonb(a.recipients), '[]'))
           FROM backup_ext.jobs j JOIN backup_ext.artifacts a USING (job_id)
          WHERE j.job_id = $1",
        &[
            job_id.into(),
            super::UTC_TEXT.into(),
            system_identifier()?.into(),
        ],
    )
    .map(|j| j.map(|j| j.0))
}

/// This cluster's `system_identifier`, which separates servers sharing a bucket.
pub fn system_identifier() -> SpiResult<String> {
    static KNOWN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(known) = KNOWN.get() {
        return Ok(known.clone());
    }
    // Fixed for the life of the data directory: read once per process.
    let read = Spi::get_one::<String>(
        "SELECT system_identifier::text FROM pg_catalog.pg_control_system()",
    )?
    .unwrap_or_default();
    Ok(KNOWN.get_or_init(|| read).clone())
}

/// The final outcome of a job, written in its own transaction.
pub enum Outcome {
    Succeeded {
        artifact: Option<ArtifactFacts>,
        message: Option<String>,
    },
    Failed(String),
    Cancelled(String),
}

/// What a successful backup job learnt about the file it wrote.
pub struct ArtifactFacts {
    pub size: i64,
    pub sha256: String,
    pub manifest: Option<Value>,
    /// The object's ETag, for a backup in an S3 target.
    pub etag: Option<String>,
}

/// Records how a job ended and tells listeners on channel `backup_ext`. For a copy job, its
/// copy row too: a failure (not a cancellation) is retried per `copy_retry` (tries, first
/// delay in seconds).
pub fn record_outcome(job_id: i64, outcome: &Outcome, copy_retry: (i32, i32)) -> SpiResult<()> {
    let copy_retry = (
        !matches!(outcome, Outcome::Cancelled(_)),
        copy_retry.0,
        copy_retry.1,
    );
    let (status, error, message) = match outcome {
        Outcome::Succeeded { message, .. } => (JobStatus::Succeeded, None, message.as_deref()),
        Outcome::Failed(e) => (JobStatus::Failed, Some(e.as_str()), None),
        Outcome::Cancelled(e) => (JobStatus::Cancelled, Some(e.as_str()), None),
    };
    // Only from a status that may move to this one (JobStatus::can_transition_to): a late
    // report never resurrects a job that already ended.
    let from = predecessors(status);
    Spi::connect_mut(|client| {
        super::kept(
            client,
            "UPDATE backup_ext.jobs
                SET status = $2, finished_at = clock_timestamp(), error = $3, message = $4,
                    tables_done = CASE WHEN $2 = 'succeeded' THEN coalesce(tables_total, tables_done)
                                       ELSE tables_done END
              WHERE job_id = $1 AND status = ANY($5)",
            &[
                job_id.into(),
                status.as_str().into(),
                error.into(),
                message.into(),
                from.into(),
            ],
        )?;
        if let Outcome::Succeeded {
            artifact:
                Some(ArtifactFacts {
                    size,
                    sha256,
                    manifest,
                    etag,
                }),
            ..
        } = outcome
        {
            super::kept(
                client,
                "UPDATE backup_ext.artifacts
                    SET size_bytes = $2, sha256 = $3, manifest = $4, etag = $5, upload_id = NULL,
                        upload_key = NULL
                  WHERE job_id = $1",
                &[
                    job_id.into(),
                    (*size).into(),
                    sha256.as_str().into(),
                    manifest.clone().map(JsonB).into(),
                    etag.clone().into(),
                ],
            )?;
            super::kept(
                client,
                "UPDATE backup_ext.jobs SET bytes_written = $2 WHERE job_id = $1",
                &[job_id.into(), (*size).into()],
            )?;
        } else if !matches!(outcome, Outcome::Succeeded { .. }) {
            super::kept(
                client,
                // An upload the job could not abort keeps its key for the sweep.
                "UPDATE backup_ext.artifacts
                    SET path = NULL, key = CASE WHEN upload_id IS NULL THEN NULL ELSE key END
                  WHERE job_id = $1",
                &[job_id.into()],
            )?;
        }
        let (retry, retries, delay) = copy_retry;
        super::record_copy_outcome(job_id, error, retry, retries, delay)?;
        // In this transaction: an alert is never lost, nor sent for an outcome rolled back.
        super::alerts::raise_for_outcome(job_id)?;
        super::kept(
            client,
            "DELETE FROM backup_ext.cancel_requests WHERE job_id = $1",
            &[job_id.into()],
        )?;
        super::kept(
            client,
            "SELECT pg_catalog.pg_notify('backup_ext', pg_catalog.json_build_object(
                 'job_id', j.job_id, 'backup_id', a.backup_id, 'kind', j.kind,
                 'database', j.database, 'status', j.status)::pg_catalog.text)
               FROM backup_ext.jobs j LEFT JOIN backup_ext.artifacts a USING (job_id)
              WHERE j.job_id = $1",
            &[job_id.into()],
        )?;
        Ok(())
    })
}

/// How far a running job has got.
pub struct Progress {
    pub job_id: i64,
    pub bytes: i64,
    pub tables_done: Option<i32>,
    pub tables_total: Option<i32>,
}

/// Publishes how far each running job has got.
pub fn record_progress(progress: &[Progress]) -> SpiResult<()> {
    if progress.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = progress.iter().map(|p| p.job_id).collect();
    let bytes: Vec<i64> = progress.iter().map(|p| p.bytes).collect();
    let done: Vec<Option<i32>> = progress.iter().map(|p| p.tables_done).collect();
    let total: Vec<Option<i32>> = progress.iter().map(|p| p.tables_total).collect();
    super::run_kept(
        "UPDATE backup_ext.jobs j
            SET bytes_written = p.bytes, tables_done = p.done,
                tables_total = coalesce(p.total, j.tables_total)
           FROM unnest($1::bigint[], $2::bigint[], $3::int[], $4::int[])
                AS p(job_id, bytes, done, total)
          WHERE j.job_id = p.job_id AND j.status = 'running'",
        &[ids.into(), bytes.into(), done.into(), total.into()],
    )
}

/// Which of these running jobs someone asked to cancel.
pub fn cancel_requests(running: &[i64]) -> SpiResult<Vec<i64>> {
    if running.is_empty() {
        return Ok(Vec::new());
    }
    Spi::connect_mut(|client| {
        let rows = super::kept(
            client,
            "SELECT job_id FROM backup_ext.cancel_requests WHERE job_id = ANY($1)",
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

/// A job an earlier worker left `running`.
pub struct Interrupted {
    pub job_id: i64,
    pub kind: Result<JobKind, String>,
    pub database: Option<String>,
    pub request: Value,
    pub path: Option<String>,
    /// A backup's storage target and key there.
    pub storage: String,
    pub key: Option<String>,
}

/// Reads a row of `job_id, kind, database, request, path, storage, key`.
fn interrupted(row: &pgrx::spi::SpiHeapTupleData) -> SpiResult<Interrupted> {
    Ok(Interrupted {
        job_id: row.get(1)?.unwrap_or_default(),
        kind: job_kind(row.get(2)?),
        database: row.get(3)?,
        request: row.get::<JsonB>(4)?.map(|j| j.0).unwrap_or(Value::Null),
        path: row.get(5)?,
        storage: row
            .get::<String>(6)?
            .unwrap_or_else(|| super::LOCAL_STORAGE.into()),
        key: row.get(7)?,
    })
}

/// Marks every job left running by an earlier worker as failed; returns them so the caller can
/// remove what they left behind (partial files, half-restored or scratch databases).
pub fn fail_interrupted_jobs(reason: &str) -> SpiResult<Vec<Interrupted>> {
    Spi::connect_mut(|client| {
        let rows = client.update(
            "SELECT j.job_id, j.kind, j.database, j.request, a.path, a.storage, a.key
               FROM backup_ext.jobs j LEFT JOIN backup_ext.artifacts a ON a.job_id = j.job_id
              WHERE j.status = 'running'
                FOR UPDATE OF j",
            None,
            &[],
        )?;
        let mut out = Vec::new();
        for row in rows {
            out.push(interrupted(&row)?);
        }
        let ids: Vec<i64> = out.iter().map(|i| i.job_id).collect();
        client.update(
            "UPDATE backup_ext.jobs
                SET status = 'failed', finished_at = clock_timestamp(), error = $1
              WHERE job_id = ANY($2)",
            None,
            &[reason.into(), ids.clone().into()],
        )?;
        client.update(
            "UPDATE backup_ext.backup_copies
                SET status = 'failed', finished_at = clock_timestamp(), error = $1,
                    next_try_at = clock_timestamp()
              WHERE job_id = ANY($2)",
            None,
            &[reason.into(), ids.clone().into()],
        )?;
        client.update(
            "UPDATE backup_ext.artifacts
                SET path = NULL, key = CASE WHEN upload_id IS NULL THEN NULL ELSE key END
              WHERE job_id = ANY($1)",
            None,
            &[ids.into()],
        )?;
        Ok(out)
    })
}

/// An unfinished restore into `database`, if any: two restores into one database would trip
/// over each other.
pub fn unfinished_restore_into(database: &str) -> SpiResult<Option<i64>> {
    Spi::get_one_with_args::<i64>(
        "SELECT min(job_id) FROM backup_ext.jobs
          WHERE kind = 'restore' AND database = $1 AND status IN ('queued', 'running')",
        &[database.into()],
    )
}

/// A restore or verify job: reads a backup, writes no artifact of its own.
pub struct NewJob<'a> {
    pub kind: JobKind,
    pub database: Option<&'a str>,
    pub run_as: &'a str,
    pub backup_id: i64,
    pub request: Value,
    pub timeout_seconds: Option<i32>,
}

pub fn enqueue_job(job: &NewJob) -> SpiResult<i64> {
    Ok(Spi::get_one_with_args::<i64>(
        "INSERT INTO backup_ext.jobs (kind, database, backup_id, request, timeout_seconds, run_as)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING job_id",
        &[
            job.kind.as_str().into(),
            job.database.into(),
            job.backup_id.into(),
            JsonB(job.request.clone()).into(),
            job.timeout_seconds.into(),
            job.run_as.into(),
        ],
    )?
    .unwrap_or_default())
}

/// The newest succeeded backup still kept of one database, or (`None`) of each database and of
/// the globals, from the summary the triggers keep: (backup id, database; None for globals).
pub fn newest_backups(database: Option<&str>) -> SpiResult<Vec<(i64, Option<String>)>> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT last_backup_id, nullif(database, '') FROM backup_ext.database_summary
              WHERE last_backup_id IS NOT NULL
                AND CASE WHEN $1::text IS NULL THEN true
                         ELSE kind = 'database' AND database = $1 END
              ORDER BY kind, database",
            None,
            &[database.into()],
        )?;
        let mut out = Vec::new();
        for row in rows {
            if let Some(id) = row.get::<i64>(1)? {
                out.push((id, row.get::<String>(2)?));
            }
        }
        Ok(out)
    })
}

/// Names the schedule that enqueued a job (restore drills enqueue through [`enqueue_job`]).
pub fn set_job_schedule(job_id: i64, schedule: &str) -> SpiResult<()> {
    Spi::run_with_args(
        "UPDATE backup_ext.jobs SET schedule = $2 WHERE job_id = $1",
        &[job_id.into(), schedule.into()],
    )
}
