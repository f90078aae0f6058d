//! A restore that first proves the backup still matches its recorded checksum: the target is
//! not touched until the hash (or directory manifest) agrees.

use crate::restore_run::{RestorePlan, RestoreRun};
use crate::steps::{JobResult, JobRun};
use crate::verify_run::{VerifyPlan, VerifyRun};
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
}
