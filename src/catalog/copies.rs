//! The `copy_policy` and `backup_copies` tables: which targets each backup is copied to, and
//! how each copy went.

use pgrx::prelude::*;

use super::SpiResult;

/// After a backup succeeded (in the transaction recording it): one `copy` job per target of
/// its database's policy (or the default policy) other than the backup's own target.
pub fn enqueue_copies(backup_id: i64) -> SpiResult<()> {
    super::run_kept(
        "WITH b AS (
             SELECT a.backup_id, a.database, a.kind, a.storage, j.run_as, j.requested_by
               FROM backup_ext.artifacts a JOIN backup_ext.jobs j USING (job_id)
              WHERE a.backup_id = $1
                -- a directory backup is a tree of files; copies take one object
                AND a.format <> 'directory'),
         policy AS (
             SELECT storages FROM (
                 SELECT p.storages, 0 AS rank FROM backup_ext.copy_policy p, b
                  WHERE p.database = CASE WHEN b.kind = 'globals' THEN 'globals' ELSE b.database END
                 UNION ALL
                 SELECT p.storages, 1 FROM backup_ext.copy_policy p WHERE p.database IS NULL) x
              ORDER BY rank LIMIT 1),
         targets AS (
             SELECT DISTINCT t.storage FROM policy, unnest(policy.storages) AS t(storage), b
              WHERE t.storage <> b.storage
                AND NOT EXISTS (SELECT 1 FROM backup_ext.backup_copies c
                                 WHERE c.backup_id = b.backup_id AND c.storage = t.storage)),
         jobs AS (
             INSERT INTO backup_ext.jobs (kind, database, backup_id, request, run_as, requested_by)
             SELECT 'copy', b.database, b.backup_id,
                    pg_catalog.jsonb_build_object('storage', t.storage), b.run_as, b.requested_by
               FROM b, targets t
             RETURNING job_id, backup_id, request->>'storage' AS storage)
         INSERT INTO backup_ext.backup_copies (backup_id, storage, job_id)
         SELECT backup_id, storage, job_id FROM jobs",
        &[backup_id.into()],
    )
}

/// A copy job has started: one more attempt.
pub fn record_copy_start(job_id: i64) -> SpiResult<()> {
    Spi::run_with_args(
        "UPDATE backup_ext.backup_copies
            SET status = 'running', attempts = attempts + 1, error = NULL
          WHERE job_id = $1",
        &[job_id.into()],
    )
}

/// Where a copy job writes in its target.
pub fn record_copy_key(job_id: i64, key: &str) -> SpiResult<()> {
    Spi::run_with_args(
        "UPDATE backup_ext.backup_copies SET key = $2 WHERE job_id = $1",
        &[job_id.into(), key.into()],
    )
}

/// How a copy job ended (nothing when `job_id` is no copy). A failed copy is tried again after
/// `delay_seconds`, doubled for each earlier attempt, until `retries` attempts were made; a
/// cancelled one (`retry` false) is not.
pub fn record_copy_outcome(
    job_id: i64,
    error: Option<&str>,
    retry: bool,
    retries: i32,
    delay_seconds: i32,
) -> SpiResult<()> {
    super::run_kept(
        "UPDATE backup_ext.backup_copies c
            SET status = CASE WHEN $2::text IS NULL THEN 'succeeded' ELSE 'failed' END,
                finished_at = clock_timestamp(),
                error = $2,
                attempts = greatest(c.attempts, 1),
                upload_id = CASE WHEN $2::text IS NULL THEN NULL ELSE c.upload_id END,
                size_bytes = CASE WHEN $2::text IS NULL THEN a.size_bytes END,
                sha256 = CASE WHEN $2::text IS NULL THEN a.sha256 END,
                next_try_at = CASE WHEN $2::text IS NOT NULL AND $3 AND c.attempts < $4
                                   THEN clock_timestamp() + pg_catalog.make_interval(
                                            secs => $5 * pg_catalog.power(2, greatest(c.attempts, 1) - 1))
                              END
           FROM backup_ext.artifacts a
          WHERE c.job_id = $1 AND a.backup_id = c.backup_id",
        &[
            job_id.into(),
            error.into(),
            retry.into(),
            retries.into(),
            delay_seconds.into(),
        ],
    )
}

/// Queues a new attempt of every failed copy whose time has come (and whose backup is still
/// live).
pub fn retry_due_copies(retries: i32) -> SpiResult<()> {
    Spi::run_with_args(
        "WITH due AS (
             SELECT c.backup_id, c.storage, a.database, j.run_as, j.requested_by
               FROM backup_ext.backup_copies c
               JOIN backup_ext.artifacts a ON a.backup_id = c.backup_id
               JOIN backup_ext.jobs j ON j.job_id = a.job_id
              WHERE c.status = 'failed' AND c.next_try_at <= clock_timestamp()
                AND c.attempts < $1 AND a.expired_at IS NULL
                FOR UPDATE OF c SKIP LOCKED),
         jobs AS (
             INSERT INTO backup_ext.jobs (kind, database, backup_id, request, run_as, requested_by)
             SELECT 'copy', d.database, d.backup_id,
                    pg_catalog.jsonb_build_object('storage', d.storage), d.run_as, d.requested_by
               FROM due d
             RETURNING job_id, backup_id, request->>'storage' AS storage)
         UPDATE backup_ext.backup_copies c
            SET status = 'queued', next_try_at = NULL, job_id = jobs.job_id
           FROM jobs
          WHERE c.backup_id = jobs.backup_id AND c.storage = jobs.storage",
        &[retries.into()],
    )
}

/// The live copies of a backup: (target, key) in target name order, for deleting them with it
/// or reading one when the primary cannot be read.
pub fn copies_of(backup_id: i64) -> SpiResult<Vec<(String, String)>> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT storage, key FROM backup_ext.backup_copies
              WHERE backup_id = $1 AND status = 'succeeded' AND key IS NOT NULL
              ORDER BY storage",
            None,
            &[backup_id.into()],
        )?;
        let mut out = Vec::new();
        for row in rows {
            out.push((
                row.get::<String>(1)?.unwrap_or_default(),
                row.get::<String>(2)?.unwrap_or_default(),
            ));
        }
        Ok(out)
    })
}

/// Where a succeeded copy of a backup lies in `storage`, if it has one there.
pub fn copy_key(backup_id: i64, storage: &str) -> SpiResult<Option<String>> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT key FROM backup_ext.backup_copies
              WHERE backup_id = $1 AND storage = $2 AND status = 'succeeded'",
            None,
            &[backup_id.into(), storage.into()],
        )?;
        match rows.into_iter().next() {
            Some(row) => row.get::<String>(1),
            None => Ok(None),
        }
    })
}

/// A deleted copy.
pub fn expire_copy(backup_id: i64, storage: &str) -> SpiResult<()> {
    Spi::run_with_args(
        "UPDATE backup_ext.backup_copies SET status = 'expired'
          WHERE backup_id = $1 AND storage = $2",
        &[backup_id.into(), storage.into()],
    )
}
