//! Jobs and backups as the SQL API reports them, and waiting for jobs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use postgres::Client;

use crate::sql::describe;
use crate::{Cluster, FINAL};

/// A job as reported by `backup_ext.job_status`.
#[derive(Debug, Clone)]
pub struct Job {
    pub job_id: i64,
    pub kind: String,
    pub status: String,
    pub database: Option<String>,
    pub requested_by: Option<String>,
    pub started: bool,
    pub finished: bool,
    pub bytes_written: Option<i64>,
    pub error: Option<String>,
}

/// A row of `backup_ext.list_backups()`.
#[derive(Debug, Clone)]
pub struct Backup {
    pub backup_id: i64,
    pub job_id: i64,
    pub kind: String,
    pub database: Option<String>,
    pub format: Option<String>,
    pub status: String,
    pub label: Option<String>,
    pub path: Option<String>,
    pub size_bytes: Option<i64>,
    pub sha256: Option<String>,
    pub requested_by: Option<String>,
    pub started: bool,
    pub finished: bool,
    pub error: Option<String>,
    pub server_version: Option<String>,
    pub tool_version: Option<String>,
}

impl Backup {
    pub fn path_buf(&self) -> PathBuf {
        PathBuf::from(
            self.path
                .as_deref()
                .unwrap_or_else(|| panic!("backup of job {} has no path", self.job_id)),
        )
    }
}

impl Cluster {
    /// Calls a function returning a job id, e.g.
    /// `enqueue("SELECT backup_ext.backup_database('db')")`.
    pub fn enqueue(&self, sql: &str) -> i64 {
        let mut c = self.client("postgres");
        let row = c
            .query_one(sql, &[])
            .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
        row.get(0)
    }

    /// Current status of a job.
    pub fn status(&self, client: &mut Client, job_id: i64) -> String {
        client
            .query_one(
                "SELECT status::text FROM backup_ext.job_status($1)",
                &[&job_id],
            )
            .unwrap_or_else(|e| panic!("job_status({job_id}): {}", describe(&e)))
            .get(0)
    }

    /// Polls `job_status` every 50 ms until the status is one of `wanted`;
    /// panics (with the server log) when `deadline` passes first.
    pub fn wait_for_status(&self, job_id: i64, wanted: &[&str], deadline: Duration) -> String {
        let mut client = self.client("postgres");
        let start = Instant::now();
        let last = loop {
            let last = self.status(&mut client, job_id);
            if wanted.contains(&last.as_str()) {
                return last;
            }
            if FINAL.contains(&last.as_str()) {
                // A final status never changes again.
                let job = self.job(job_id);
                panic!(
                    "job {job_id} ended {last:?} while waiting for {wanted:?}: {job:?}\n\
                     --- server log ---\n{}",
                    self.log_tail(40)
                );
            }
            if start.elapsed() > deadline {
                break last;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        panic!(
            "job {job_id} still {last:?} after {deadline:?}, wanted {wanted:?}\n\
             --- server log ---\n{}",
            self.log_tail(40)
        );
    }

    /// Waits until the job is final and returns its status.
    pub fn wait_final(&self, job_id: i64, deadline: Duration) -> String {
        self.wait_for_status(job_id, FINAL, deadline)
    }

    /// The `job_status` row of a job.
    pub fn job(&self, job_id: i64) -> Job {
        let mut c = self.client("postgres");
        let row = c
            .query_one(
                "SELECT job_id, kind::text, status::text, database::text, requested_by::text,
                        started_at IS NOT NULL, finished_at IS NOT NULL,
                        bytes_written::bigint, error::text
                   FROM backup_ext.job_status($1)",
                &[&job_id],
            )
            .unwrap_or_else(|e| panic!("job_status({job_id}): {}", describe(&e)));
        Job {
            job_id: row.get(0),
            kind: row.get(1),
            status: row.get(2),
            database: row.get(3),
            requested_by: row.get(4),
            started: row.get(5),
            finished: row.get(6),
            bytes_written: row.get(7),
            error: row.get(8),
        }
    }

    /// The rows of `list_backups()` belonging to a job (normally one).
    pub fn backups_of(&self, job_id: i64) -> Vec<Backup> {
        let mut c = self.client("postgres");
        c.query(
            "SELECT backup_id::bigint, job_id, kind::text, database::text, format::text,
                    status::text, label, path::text, size_bytes::bigint, sha256::text,
                    requested_by::text, started_at IS NOT NULL, finished_at IS NOT NULL,
                    error::text, server_version::text, tool_version::text
               FROM backup_ext.list_backups()
              WHERE job_id = $1",
            &[&job_id],
        )
        .unwrap_or_else(|e| panic!("list_backups(): {}", describe(&e)))
        .into_iter()
        .map(|row| Backup {
            backup_id: row.get(0),
            job_id: row.get(1),
            kind: row.get(2),
            database: row.get(3),
            format: row.get(4),
            status: row.get(5),
            label: row.get(6),
            path: row.get(7),
            size_bytes: row.get(8),
            sha256: row.get::<_, Option<String>>(9).map(normalize_hex),
            requested_by: row.get(10),
            started: row.get(11),
            finished: row.get(12),
            error: row.get(13),
            server_version: row.get(14),
            tool_version: row.get(15),
        })
        .collect()
    }

    /// The single `list_backups()` row of a job.
    pub fn backup(&self, job_id: i64) -> Backup {
        let mut rows = self.backups_of(job_id);
        assert_eq!(
            rows.len(),
            1,
            "list_backups() rows for job {job_id}: {rows:?}"
        );
        rows.pop().unwrap()
    }
}

fn normalize_hex(s: String) -> String {
    s.strip_prefix("\\x").map(str::to_string).unwrap_or(s)
}
