//! A restore that first proves the backup still matches its recorded checksum: the target is
//! not touched until the hash (or directory manifest) agrees.

use crate::job::{JobResult, JobRun};
use crate::restore::run::{RestorePlan, RestoreRun};
use crate::verify::run::{VerifyPlan, VerifyRun};
use std::io;

pub struct CheckedRestore {
    check: Option<VerifyRun>,
    plan: Option<RestorePlan>,
    restore: Option<RestoreRun>,
}

impl CheckedRestore {
    /// `check` should be a verification without listing or test restore: checksum only.
    pub fn start(check: VerifyPlan, plan: RestorePlan) -> io::Result<CheckedRestore> {
        Ok(CheckedRestore {
            check: Some(VerifyRun::start(check)?),
            plan: Some(plan),
            restore: None,
        })
    }
}

impl JobRun for CheckedRestore {
    fn poll(&mut self) -> Option<JobResult> {
        if let Some(check) = &mut self.check {
            let result = check.poll()?;
            self.check = None;
            match result {
                JobResult::Verify(report) if report.passed => {
                    let plan = self.plan.take()?;
                    match RestoreRun::start(plan) {
                        Ok(run) => self.restore = Some(run),
                        Err(e) => {
                            return Some(JobResult::Restore {
                                ok: false,
                                message: format!("cannot start the restore: {e}"),
                            })
                        }
                    }
                }
                JobResult::Verify(report) => {
                    self.plan = None;
                    return Some(JobResult::Restore {
                        ok: false,
                        message: format!("refused before touching the target: {}", report.message),
                    });
                }
                other => return Some(other),
            }
        }
        self.restore.as_mut()?.poll()
    }

    fn cancel(&mut self) {
        if let Some(check) = &mut self.check {
            check.cancel();
        }
        self.plan = None;
        if let Some(restore) = &mut self.restore {
            restore.cancel();
        }
    }

    fn progress(&self) -> u64 {
        match (&self.check, &self.restore) {
            (Some(check), _) => check.progress(),
            (None, Some(restore)) => restore.progress(),
            _ => 0,
        }
    }

    fn tables(&mut self) -> Option<(u64, Option<u64>)> {
        self.restore.as_mut()?.tables()
    }

    /// The checksum reads the archive too: its bytes hashed are its activity.
    fn activity(&mut self) -> Option<u64> {
        match (&self.check, &mut self.restore) {
            (Some(check), _) => Some(check.progress()),
            (None, Some(restore)) => restore.activity(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Format;
    use crate::restore::run::RestoreStep;
    use crate::test_support::{fake_tool, poll_job, TempDir};

    const SHA_ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn setup(dir: &TempDir, sha: &str) -> (VerifyPlan, RestorePlan) {
        let archive = dir.path().join("a.dump");
        std::fs::write(&archive, b"abc").unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        let marker = dir.path().join("restored");
        let restore = fake_tool(dir, "pg_restore", &format!("touch '{}'", marker.display()));
        let check = VerifyPlan {
            decrypted: None,
            path: archive,
            format: Format::Custom,
            expected_sha256: sha.into(),
            expected_size: 3,
            list: None,
            test_restore: None,
            work_dir: work.clone(),
        };
        let plan = RestorePlan {
            create: None,
            restore: RestoreStep::PgRestore(restore),
            drop_on_failure: None,
            work_dir: work,
            stdin: None,
            rows: Default::default(),
        };
        (check, plan)
    }

    #[test]
    fn restores_after_the_checksum_matches() {
        let dir = TempDir::new("checked-ok");
        let (check, plan) = setup(&dir, SHA_ABC);
        let mut run = CheckedRestore::start(check, plan).unwrap();
        let JobResult::Restore { ok, message } = poll_job(&mut run) else {
            panic!("not a restore result");
        };
        assert!(ok, "{message}");
        assert!(dir.path().join("restored").exists());
    }

    #[test]
    fn never_touches_the_target_when_the_checksum_differs() {
        let dir = TempDir::new("checked-bad");
        let (check, plan) = setup(&dir, &"0".repeat(64));
        let mut run = CheckedRestore::start(check, plan).unwrap();
        let JobResult::Restore { ok, message } = poll_job(&mut run) else {
            panic!("not a restore result");
        };
        assert!(!ok);
        assert!(
            message.starts_with("refused before touching the target: "),
            "{message}"
        );
        assert!(message.contains("sha256"), "{message}");
        assert!(!dir.path().join("restored").exists());
    }
}
