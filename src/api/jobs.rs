//! Following and stopping jobs: `wait_for()` and `cancel()`.

use std::time::{Duration, Instant};

use backup_core::JobStatus;
use pgrx::datum::Interval;
use pgrx::prelude::*;

use crate::catalog;
use crate::error::{BackupError, OrReport};
use crate::{privileges, wake};

/// How long to sleep between looks at the job: a primary-key lookup is cheap, so poll tightly
/// while short jobs are likely to finish, and back off for long ones.
fn poll_interval(waited: Duration) -> Duration {
    match waited.as_secs() {
        0 => Duration::from_millis(1),
        1..=59 => Duration::from_millis(10),
        _ => Duration::from_millis(50),
    }
}

fn interval_to_duration(interval: &Interval) -> Duration {
    let secs: f64 = Spi::get_one_with_args::<f64>(
        "SELECT extract(epoch FROM $1)::float8",
        &[(*interval).into()],
    )
    .or_report()
    .unwrap_or(0.0);
    Duration::from_secs_f64(secs.max(0.0))
}

fn sleep_interruptibly(d: Duration) {
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            d.as_millis() as std::os::raw::c_long,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
    // Lets pg_cancel_backend() and statement_timeout end the wait.
    pg_sys::check_for_interrupts!();
}

/// Blocks until the job has finished and returns its final status.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn wait_for(job_id: i64, timeout: default!(Option<Interval>, "'1 hour'")) -> String {
    let isolation = Spi::get_one::<String>("SELECT current_setting('transaction_isolation')")
        .or_report()
        .unwrap_or_default();
    if isolation != "read committed" {
        BackupError::WrongIsolation(isolation).report();
    }
    let limit = timeout
        .as_ref()
        .map(interval_to_duration)
        .unwrap_or(Duration::MAX);
    let (caller, _owner) = privileges::enter();
    let start = Instant::now();
    loop {
        // A job the caller may not see (its database is not theirs to read) does not exist
        // for them, as in backup_ext.jobs.
        let Some(state) = catalog::job_state(job_id)
            .or_report()
            .filter(|s| caller.may_see_job(s.database.as_deref(), s.run_as.as_deref()))
        else {
            BackupError::NoSuchJob(job_id).report();
        };
        if JobStatus::parse(&state.status).is_ok_and(JobStatus::is_final) {
            return state.status;
        }
        if unsafe { pg_sys::TransactionIdIsCurrentTransactionId(state.xmin.into()) } {
            BackupError::JobNotCommitted(job_id).report();
        }
        if start.elapsed() >= limit {
            BackupError::WaitTimedOut {
                job_id,
                status: state.status,
            }
            .report();
        }
        sleep_interruptibly(
            poll_interval(start.elapsed()).min(limit.saturating_sub(start.elapsed())),
        );
    }
}

/// Cancels a job: a queued job never runs ('cancelled'); a running job is stopped by the worker
/// as soon as this transaction commits ('cancelling').
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn cancel(job_id: i64) -> &'static str {
    let (caller, _owner) = privileges::enter();
    let Some(state) = catalog::job_state(job_id)
        .or_report()
        .filter(|s| caller.may_see_job(s.database.as_deref(), s.run_as.as_deref()))
    else {
        BackupError::NoSuchJob(job_id).report();
    };
    caller.require_acts_for(state.run_as.as_deref().unwrap_or_default(), job_id);
    match catalog::request_cancel(job_id).or_report().as_deref() {
        None => BackupError::NoSuchJob(job_id).report(),
        Some("queued") => "cancelled",
        Some("running") => {
            wake::wake_worker_on_commit();
            "cancelling"
        }
        Some(other) => BackupError::NotCancellable {
            job_id,
            status: other.to_string(),
        }
        .report(),
    }
}
