//! A job: its lifecycle as stored in the catalog table, and the interface
//! through which the worker drives it and gets its result.

use crate::dump::run::{DumpRun, RunResult};
use crate::error::{quoted, RequestError};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

const HINT: &str = "Statuses: queued, running, succeeded, failed, cancelled.";

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    /// The spelling stored in the catalog; must match the table's CHECK
    /// constraint.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Result<JobStatus, RequestError> {
        JobStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| RequestError::invalid(format!("unknown job status {}", quoted(s)), HINT))
    }

    /// A final job never changes again, so its row can be trusted as the
    /// record of what happened.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
        )
    }

    /// Guards every status update so a late worker report cannot resurrect
    /// a job that was already cancelled or finished.
    pub fn can_transition_to(self, next: JobStatus) -> bool {
        use JobStatus::*;
        matches!(
            (self, next),
            (Queued, Running) | (Queued, Cancelled) | (Running, Succeeded | Failed | Cancelled)
        )
    }
}

impl JobStatus {
    /// The statuses a job may be in for it to move to `self`: what status updates put in their
    /// WHERE clause, so that no update can break [`JobStatus::can_transition_to`].
    pub fn predecessors(self) -> Vec<&'static str> {
        JobStatus::ALL
            .into_iter()
            .filter(|from| from.can_transition_to(self))
            .map(JobStatus::as_str)
            .collect()
    }
}

/// What a job does; the spellings match the `jobs.kind` CHECK constraint (and, for the two
/// kinds of backup, `artifacts.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// pg_dump of one database.
    Database,
    /// pg_dumpall --globals-only.
    Globals,
    Restore,
    Verify,
    /// A backup copied to a further storage target.
    Copy,
}

impl JobKind {
    pub const ALL: [JobKind; 5] = [
        JobKind::Database,
        JobKind::Globals,
        JobKind::Restore,
        JobKind::Verify,
        JobKind::Copy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Database => "database",
            JobKind::Globals => "globals",
            JobKind::Restore => "restore",
            JobKind::Verify => "verify",
            JobKind::Copy => "copy",
        }
    }

    pub fn parse(s: &str) -> Result<JobKind, RequestError> {
        JobKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                RequestError::invalid(
                    format!("unknown job kind {}", quoted(s)),
                    "Job kinds are: database, globals, restore, verify, copy.",
                )
            })
    }

    /// Whether the job writes a backup (and so has an `artifacts` row of its own).
    pub fn is_backup(self) -> bool {
        matches!(self, JobKind::Database | JobKind::Globals)
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job the worker drives from its main loop. `poll` never blocks on a
/// child; it returns the result once, then None.
pub trait JobRun: Send {
    fn poll(&mut self) -> Option<JobResult>;
    /// Stops the job and cleans up after it; may block for a bounded time.
    fn cancel(&mut self);
    fn progress(&self) -> u64;
    /// Tables done and, once known, how many there are: for jobs that count them as they go
    /// (restores).
    fn tables(&mut self) -> Option<(u64, Option<u64>)> {
        None
    }
    /// While the job reads its archive: a number that changes whenever it gets further (bytes
    /// read, lines the tool printed). What `backup_ext.stall_timeout` watches; None in the
    /// steps it does not watch.
    fn activity(&mut self) -> Option<u64> {
        None
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobResult {
    Dump(RunResult),
    Restore {
        ok: bool,
        message: String,
    },
    Verify(VerifyReport),
    /// A backup copied from a storage target into a work file (the first step of a restore
    /// or verification of a remote backup).
    Fetched {
        ok: bool,
        message: String,
    },
    /// A backup copied to a further storage target, checked against its recorded size and
    /// SHA-256.
    Copied {
        ok: bool,
        message: String,
    },
    /// A staged directory dump uploaded to its storage target (the second step of such a
    /// backup).
    Uploaded {
        ok: bool,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub passed: bool,
    pub message: String,
    /// Rows per table in the backup, when a test restore counted them.
    pub archive_rows: Option<BTreeMap<String, u64>>,
}

impl JobRun for DumpRun {
    fn poll(&mut self) -> Option<JobResult> {
        DumpRun::poll(self).map(JobResult::Dump)
    }

    fn cancel(&mut self) {
        DumpRun::cancel(self)
    }

    fn progress(&self) -> u64 {
        DumpRun::progress(self)
    }
}

#[cfg(test)]
mod kind_tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_unknown_is_refused() {
        for k in JobKind::ALL {
            assert_eq!(JobKind::parse(k.as_str()).unwrap(), k);
        }
        assert!(JobKind::parse("cluster").is_err());
        assert!(JobKind::Database.is_backup() && JobKind::Globals.is_backup());
        assert!(!JobKind::Restore.is_backup() && !JobKind::Verify.is_backup());
    }

    #[test]
    fn predecessors_follow_the_transitions() {
        assert_eq!(JobStatus::Running.predecessors(), ["queued"]);
        assert_eq!(JobStatus::Cancelled.predecessors(), ["queued", "running"]);
        assert_eq!(JobStatus::Succeeded.predecessors(), ["running"]);
        assert_eq!(JobStatus::Failed.predecessors(), ["running"]);
        assert!(JobStatus::Queued.predecessors().is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::JobStatus::*;
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn round_trips_every_status() {
        for st in JobStatus::ALL {
            assert_eq!(JobStatus::parse(st.as_str()), Ok(st));
            assert_eq!(st.to_string(), st.as_str());
        }
    }

    #[test]
    fn rejects_unknown_and_wrong_case() {
        for bad in ["", "Queued", "done", "canceled", " queued"] {
            let e = JobStatus::parse(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidParameter);
            assert!(e.message.contains(&format!("{bad:?}")), "{}", e.message);
            assert!(e
                .hint
                .contains("queued, running, succeeded, failed, cancelled"));
        }
    }

    #[test]
    fn final_states() {
        assert!(!Queued.is_final());
        assert!(!Running.is_final());
        assert!(Succeeded.is_final());
        assert!(Failed.is_final());
        assert!(Cancelled.is_final());
    }

    #[test]
    fn every_transition() {
        let allowed = [
            (Queued, Running),
            (Queued, Cancelled),
            (Running, Succeeded),
            (Running, Failed),
            (Running, Cancelled),
        ];
        for from in JobStatus::ALL {
            for to in JobStatus::ALL {
                let expected = allowed.contains(&(from, to));
                assert_eq!(
                    from.can_transition_to(to),
                    expected,
                    "{from} -> {to} should be {expected}"
                );
            }
        }
    }

    #[test]
    fn queued_cannot_jump_to_a_result() {
        assert!(!Queued.can_transition_to(Succeeded));
        assert!(!Queued.can_transition_to(Failed));
        assert!(!Queued.can_transition_to(Queued));
        assert!(!Running.can_transition_to(Queued));
        assert!(!Running.can_transition_to(Running));
    }

    #[test]
    fn nothing_leaves_a_final_state() {
        for from in [Succeeded, Failed, Cancelled] {
            for to in JobStatus::ALL {
                assert!(!from.can_transition_to(to), "{from} -> {to}");
            }
        }
    }
}
