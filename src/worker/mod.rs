//! The background worker: waits on its latch, claims queued jobs, runs up to
//! `backup_ext.max_parallel` children, records each outcome, and cleans up after crashes.

mod alerts;
mod guardrails;
mod kinds;
mod scheduler;
mod txn;

use std::time::{Duration, Instant};

use backup_core::crypt::fingerprint;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::prelude::*;

use crate::catalog::{self, Outcome};
use crate::purge::{self, Scope};
use crate::{settings, tools, wake};
use kinds::{Context, Destination, Kind, RunningJob};
use txn::{in_transaction, spi};

/// Sleep between checks while children run: bounds cancel, timeout and progress latency. A
/// child's exit wakes the worker at once through SIGCHLD.
const BUSY_TICK: Duration = Duration::from_millis(100);
/// Fallback poll when idle; new jobs normally wake the worker through its latch.
const IDLE_TICK: Duration = Duration::from_secs(10);
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How often running local dumps check the free space of their filesystem.
const SPACE_CHECK_EVERY: Duration = Duration::from_secs(1);
/// How often failed copies are looked at for a retry, and uploads left open by failed or
/// interrupted backups are aborted (again).
const UPLOAD_SWEEP_EVERY: Duration = Duration::from_secs(10);

pub fn register() {
    BackgroundWorkerBuilder::new("backup_ext worker")
        .set_type("backup_ext worker")
        .set_library("backup_ext")
        .set_function("backup_ext_worker_main")
        .enable_spi_access()
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn backup_ext_worker_main(_arg: pg_sys::Datum) {
    // SIGCHLD sets the latch, so a finished child is recorded at once rather than at the next tick.
    BackgroundWorker::attach_signal_handlers(
        SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM | SignalWakeFlags::SIGCHLD,
    );
    let database = settings::database();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    let _ = WORKER_THREAD.set(std::thread::current().id());
    // Every statement of this session resolves names in pg_catalog only, whatever schemas
    // users can write to; and no lock a user holds makes it wait for long.
    if let Err(e) = in_transaction(|| {
        Spi::run("SET search_path = pg_catalog, pg_temp").map_err(|e| e.to_string())?;
        Spi::run("SET lock_timeout = '5s'").map_err(|e| e.to_string())
    }) {
        warning!("backup_ext: cannot set the worker's search_path: {e}");
        unsafe { pg_sys::proc_exit(1) };
    }
    backup_core::set_wait_hook(absorb_signal_barriers);
    wake::publish_worker_pid();
    log!("backup_ext worker started in database \"{database}\"");

    let mut worker = Worker::default();
    loop {
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            tools::forget_versions();
        }
        worker.tick();
        let wait = if worker.running.is_empty() {
            IDLE_TICK
        } else {
            BUSY_TICK
        };
        let wait = worker
            .outbox
            .wait_hint()
            .map_or(wait, |hint| hint.min(wait));
        if !BackgroundWorker::wait_latch(Some(wait)) {
            break;
        }
    }
    worker.shutdown();
    wake::clear_worker_pid();
    log!("backup_ext worker stopped");
    // Exit code 1 asks the postmaster to start the worker again after the restart time, so a
    // pg_terminate_backend() restarts it instead of leaving backups unserved. During a server
    // shutdown nothing is restarted anyway.
    unsafe { pg_sys::proc_exit(1) };
}

#[derive(Default)]
struct Worker {
    running: Vec<RunningJob>,
    recovered: bool,
    last_progress: Option<Instant>,
    last_schedule_check: Option<Instant>,
    last_upload_sweep: Option<Instant>,
    outbox: alerts::Outbox,
    last_space_check: Option<Instant>,
}

impl Worker {
    fn tick(&mut self) {
        match spi(catalog::extension_installed) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                warning!("backup_ext: cannot read pg_extension: {e}");
                return;
            }
        }
        if !self.recovered {
            self.recover();
        }
        self.collect_finished();
        self.handle_cancel_requests();
        self.handle_timeouts();
        self.check_free_space();
        self.publish_progress();
        self.sweep_storage();
        self.run_schedules();
        self.start_queued();
        self.outbox.tick();
    }

    /// Queues failed copies whose retry is due, and aborts the uploads of backups that ended
    /// without completing them, where the abort at the time failed (the store was down) or a
    /// crash came first. Runs every [`UPLOAD_SWEEP_EVERY`].
    fn sweep_storage(&mut self) {
        if self
            .last_upload_sweep
            .is_some_and(|t| t.elapsed() < UPLOAD_SWEEP_EVERY)
        {
            return;
        }
        self.last_upload_sweep = Some(Instant::now());
        if let Err(e) = spi(|| catalog::retry_due_copies(settings::copy_retries())) {
            warning!("backup_ext: cannot queue copy retries: {e}");
        }
        let open = match spi(catalog::abandoned_uploads) {
            Ok(open) => open,
            Err(e) => {
                warning!("backup_ext: cannot list abandoned uploads: {e}");
                return;
            }
        };
        for upload in open {
            let aborted = match open_store(&upload.storage) {
                Ok(Some(store)) => store
                    .abort_upload(&upload.key, &upload.upload_id)
                    .map_err(|e| e.to_string()),
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            };
            match aborted {
                Ok(()) => {
                    if let Err(e) = spi(|| catalog::forget_upload(upload.job_id, upload.copy)) {
                        warning!("backup_ext: {e}");
                    } else {
                        log!(
                            "backup_ext: aborted the unfinished upload of job {} to storage \"{}\"",
                            upload.job_id,
                            upload.storage
                        );
                    }
                }
                // Stays recorded; tried again at the next sweep.
                Err(e) => log!(
                    "backup_ext: the unfinished upload of job {} to storage \"{}\" is not aborted yet: {e}",
                    upload.job_id,
                    upload.storage
                ),
            }
        }
    }

    /// Enqueues what built-in schedules say is due; skips a run whose previous one is still
    /// going, so a schedule never overlaps itself.
    fn run_schedules(&mut self) {
        // Cron has minute resolution: once a second is plenty, however busy the loop is.
        if self
            .last_schedule_check
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.last_schedule_check = Some(Instant::now());
        let now = chrono::Utc::now();
        let entries = match spi(catalog::schedule_entries) {
            Ok(entries) => entries,
            Err(e) => {
                warning!("backup_ext: cannot read schedules: {e}");
                return;
            }
        };
        for entry in entries {
            let at = match scheduler::due(&entry, now) {
                Ok(Some(at)) => at,
                Ok(None) => continue,
                Err(e) => {
                    warning!("backup_ext: schedule \"{}\": {}", entry.name, e.message);
                    continue;
                }
            };
            let started = if entry.previous_running {
                Err("skipped: the previous run has not finished".to_string())
            } else {
                in_transaction(|| {
                    let started = scheduler::enqueue(&entry);
                    catalog::record_schedule_run(&entry.name, at, started, None)
                        .map_err(|e| e.to_string())?;
                    Ok(started)
                })
            };
            if let Err(e) = started {
                log!("backup_ext: schedule \"{}\" did not run: {e}", entry.name);
                if let Err(e) =
                    spi(|| catalog::record_schedule_run(&entry.name, at, (None, None), Some(&e)))
                {
                    warning!("backup_ext: cannot record schedule \"{}\": {e}", entry.name);
                }
            }
        }
    }

    /// Jobs left `running` belong to a worker that no longer exists (crash or restart).
    fn recover(&mut self) {
        match spi(|| catalog::fail_interrupted_jobs("interrupted by server restart")) {
            Ok(jobs) => {
                for interrupted in jobs {
                    if let Some(path) = &interrupted.path {
                        Destination::Local(path.into()).remove();
                    }
                    if let Some(key) = &interrupted.key {
                        remove_remote_leftovers(&interrupted, key);
                    }
                    if let Some(db) = kinds::database_left_behind(&interrupted) {
                        match context().and_then(|ctx| kinds::drop_database(&ctx, &db)) {
                            Ok(()) => log!(
                                "backup_ext: dropped database \"{db}\" left by interrupted job {}",
                                interrupted.job_id
                            ),
                            Err(e) => warning!(
                                "backup_ext: could not drop database \"{db}\" left by job {}: {e}",
                                interrupted.job_id
                            ),
                        }
                    }
                    log!(
                        "backup_ext: job {} was interrupted by a restart and is marked failed",
                        interrupted.job_id
                    );
                }
                match spi(catalog::leftover_job_roles) {
                    Ok(roles) => {
                        for role in roles {
                            let job_id = backup_core::login::job_of_role(&role).unwrap_or(0);
                            self.drop_login_role(job_id, Some(&role));
                        }
                    }
                    Err(e) => warning!("backup_ext: cannot list leftover job roles: {e}"),
                }
                let own_pid = u32::try_from(unsafe { pg_sys::MyProcPid }).ok();
                match spi(|| purge::work_leftovers(own_pid, false)) {
                    Ok(removed) if !removed.is_empty() => log!(
                        "backup_ext: removed {} work files left by earlier jobs",
                        removed.len()
                    ),
                    Ok(_) => {}
                    Err(e) => warning!("backup_ext: cannot remove old work files: {e}"),
                }
                self.recovered = true;
            }
            Err(e) => warning!("backup_ext: recovery failed, will retry: {e}"),
        }
    }

    /// Drops a job's own login role once its tools are gone.
    fn drop_login_role(&self, job_id: i64, role: Option<&str>) {
        let Some(role) = role else { return };
        match spi(|| catalog::drop_job_role(role)) {
            Ok(Ok(())) => {}
            Ok(Err(kept)) => warning!("backup_ext: job {job_id}: {kept}"),
            Err(e) => warning!("backup_ext: job {job_id}: cannot drop role \"{role}\": {e}"),
        }
    }

    fn record(&self, job_id: i64, outcome: Outcome) {
        self.record_with_progress(job_id, outcome, None);
    }

    /// The outcome, and the job's last progress when given, in one transaction (one commit per
    /// finished job is part of what a job costs beyond its tool).
    fn record_with_progress(
        &self,
        job_id: i64,
        outcome: Outcome,
        progress: Option<catalog::Progress>,
    ) {
        let recorded = spi(|| {
            if let Some(p) = progress {
                catalog::record_progress(&[p])?;
            }
            let succeeded_backup = match &outcome {
                Outcome::Succeeded {
                    artifact: Some(_), ..
                } => Some(job_id),
                _ => None,
            };
            catalog::record_outcome(
                job_id,
                &outcome,
                (settings::copy_retries(), settings::copy_retry_delay()),
            )?;
            if let Some(backup_id) = succeeded_backup {
                guardrails::check_size(job_id, backup_id)?;
                catalog::enqueue_copies(backup_id)?;
            }
            Ok(())
        });
        if let Err(e) = recorded {
            // The row stays `running`; recovery at the next start marks it failed.
            warning!("backup_ext: could not record the outcome of job {job_id}: {e}");
        }
    }

    /// Records a finished job; a verification also lands on the backup it checked, and a
    /// successful backup triggers its database's retention policy.
    fn finish(&self, job: &mut RunningJob, result: backup_core::JobResult) {
        let job_id = job.job_id;
        // A verification that could not even fetch the backup failed it.
        if let (
            Kind::Fetch {
                claimed, backup, ..
            },
            backup_core::JobResult::Fetched { ok: false, message },
        ) = (&job.kind, &result)
        {
            if claimed.kind == Ok(backup_core::JobKind::Verify) {
                if let Err(e) =
                    spi(|| catalog::record_verification(backup.backup_id, false, message, None))
                {
                    warning!(
                        "backup_ext: could not record the verification of backup {}: {e}",
                        backup.backup_id
                    );
                }
            }
        }
        // The last lines (and the table count, if it has arrived: never waited for).
        let progress = (job.stderr_path.is_some() || matches!(job.kind, Kind::Restore))
            .then(|| progress_of(job));
        if let (Kind::Verify { backup_id }, backup_core::JobResult::Verify(report)) =
            (&job.kind, &result)
        {
            let rows = report
                .archive_rows
                .as_ref()
                .and_then(|r| serde_json::to_value(r).ok());
            if let Err(e) = spi(|| {
                catalog::record_verification(*backup_id, report.passed, &report.message, rows)
            }) {
                warning!(
                    "backup_ext: could not record the verification of backup {backup_id}: {e}"
                );
            }
        }
        let mut outcome = kinds::outcome_of(result);
        if let (
            Outcome::Succeeded {
                artifact: Some(facts),
                ..
            },
            Some(destination),
        ) = (&mut outcome, &job.destination)
        {
            match write_sidecar(job_id, destination, facts) {
                Ok(()) => facts.etag = destination.etag(),
                Err(e) => {
                    destination.remove();
                    outcome = Outcome::Failed(e);
                }
            }
        }
        let succeeded = matches!(outcome, Outcome::Succeeded { .. });
        self.drop_login_role(job_id, job.login_role.as_deref());
        self.record_with_progress(job_id, outcome, progress);
        if let (true, Kind::Backup { database }) = (succeeded, &job.kind) {
            let scope = match database {
                Some(db) => Scope::Database(db),
                None => Scope::Globals,
            };
            match spi(|| purge::purge(scope, false)) {
                Ok(purged) => {
                    for p in purged {
                        log!(
                            "backup_ext: purged backup {} ({}): {}",
                            p.backup_id.unwrap_or_default(),
                            p.path.unwrap_or_default(),
                            p.reason
                        );
                    }
                }
                Err(e) => warning!("backup_ext: retention after job {job_id} failed: {e}"),
            }
        }
    }

    fn take(&mut self, job_id: i64) -> Option<RunningJob> {
        let pos = self.running.iter().position(|j| j.job_id == job_id)?;
        Some(self.running.swap_remove(pos))
    }

    fn collect_finished(&mut self) {
        let mut finished = Vec::new();
        for job in &mut self.running {
            if let Some(result) = job.run.poll() {
                finished.push((job.job_id, result));
            }
        }
        for (job_id, result) in finished {
            if let Some(mut job) = self.take(job_id) {
                if matches!(result, backup_core::JobResult::Fetched { ok: true, .. }) {
                    self.launch_fetched(job);
                    continue;
                }
                let Some(result) = upload_staged(&mut job, result) else {
                    self.running.push(job);
                    continue;
                };
                self.finish(&mut job, result);
                remove_staged(job.staged.as_deref());
                // A local backup held no large buffers (uploads and downloads do); trimming
                // after each one would only make the next job fault its memory in again.
                let buffered = !matches!(job.destination, Some(Destination::Local(_)));
                drop(job);
                if buffered {
                    backup_core::process::release_free_memory();
                }
            }
        }
    }

    fn stop(&mut self, job_id: i64, outcome: Outcome) {
        if let Some(mut job) = self.take(job_id) {
            job.run.cancel();
            // Files of a directory-format backup uploaded so far.
            if let (Some(_), Some(destination)) = (&job.pending, &job.destination) {
                destination.remove();
            }
            remove_staged(job.staged.as_deref());
            self.drop_login_role(job_id, job.login_role.as_deref());
            self.record(job_id, outcome);
        }
    }

    fn handle_cancel_requests(&mut self) {
        let ids: Vec<i64> = self.running.iter().map(|j| j.job_id).collect();
        match spi(|| catalog::cancel_requests(&ids)) {
            Ok(cancelled) => {
                for job_id in cancelled {
                    self.stop(job_id, Outcome::Cancelled("cancelled by request".into()));
                }
            }
            Err(e) => warning!("backup_ext: cannot read cancel requests: {e}"),
        }
    }

    fn handle_timeouts(&mut self) {
        let expired: Vec<(i64, Duration)> = self
            .running
            .iter()
            .filter_map(|j| {
                let limit = j.timeout?;
                (j.started.elapsed() > limit).then_some((j.job_id, limit))
            })
            .collect();
        for (job_id, limit) in expired {
            self.stop(
                job_id,
                Outcome::Failed(format!("timed out after {} s", limit.as_secs())),
            );
        }
        // backup_ext.stall_timeout: a restore reading its archive that gets no further.
        let stalled: Vec<(i64, String)> = self
            .running
            .iter_mut()
            .filter_map(|j| {
                let activity = j.run.activity();
                let watch = j.stall.as_mut()?;
                watch.stalled(activity).then(|| (j.job_id, watch.message()))
            })
            .collect();
        for (job_id, message) in stalled {
            self.stop(job_id, Outcome::Failed(message));
        }
    }

    /// Every second: a local dump whose filesystem runs short of space is stopped (its partial
    /// output removed) before it fills it.
    fn check_free_space(&mut self) {
        if self.running.is_empty()
            || self
                .last_space_check
                .is_some_and(|t| t.elapsed() < SPACE_CHECK_EVERY)
        {
            return;
        }
        self.last_space_check = Some(Instant::now());
        let short: Vec<(i64, Option<String>, String)> = self
            .running
            .iter()
            .filter_map(|j| {
                // Only while the dump writes here: its file or directory, or its staging
                // directory until the upload of the files starts.
                let path = match &j.destination {
                    Some(kinds::Destination::Local(path)) => path.clone(),
                    Some(remote) if j.pending.is_none() => remote.staged_dir()?,
                    _ => return None,
                };
                let database = match &j.kind {
                    Kind::Backup { database } => database.clone(),
                    _ => None,
                };
                guardrails::free_space_shortfall(&path).map(|why| (j.job_id, database, why))
            })
            .collect();
        for (job_id, database, why) in short {
            let message = format!("stopped: {why}; the partial output was removed");
            let raised =
                spi(|| guardrails::raise_guardrail_alert(job_id, database.as_deref(), &message));
            if let Err(e) = raised {
                warning!("backup_ext: {e}");
            }
            self.stop(job_id, Outcome::Failed(message));
        }
    }

    fn publish_progress(&mut self) {
        if self.running.is_empty()
            || self
                .last_progress
                .is_some_and(|t| t.elapsed() < PROGRESS_EVERY)
        {
            return;
        }
        self.last_progress = Some(Instant::now());
        let progress: Vec<catalog::Progress> = self.running.iter_mut().map(progress_of).collect();
        // Upload ids the catalog does not know yet, so that recovery can abort them.
        let uploads: Vec<(i64, catalog::OpenUpload)> = self
            .running
            .iter()
            .filter_map(|j| {
                let (upload_id, key) = match &j.kind {
                    Kind::Copy { started } => (started.get()?.clone(), None),
                    _ => j.destination.as_ref()?.upload()?,
                };
                let copy = matches!(j.kind, Kind::Copy { .. });
                (j.recorded_upload.as_ref() != Some(&upload_id)).then_some((
                    j.job_id,
                    catalog::OpenUpload {
                        upload_id,
                        key,
                        copy,
                    },
                ))
            })
            .collect();
        let recorded = spi(|| {
            for (job_id, upload) in &uploads {
                catalog::record_upload_id(*job_id, upload)?;
            }
            catalog::record_progress(&progress)
        });
        if recorded.is_ok() {
            for job in self.running.iter_mut() {
                if let Some((_, upload)) = uploads.iter().find(|(id, _)| *id == job.job_id) {
                    job.recorded_upload = Some(upload.upload_id.clone());
                }
            }
        }
        if let Err(e) = recorded {
            warning!("backup_ext: cannot record progress: {e}");
        }
    }

    fn start_queued(&mut self) {
        while self.running.len() < settings::max_parallel() {
            let ctx = match context() {
                Ok(ctx) => ctx,
                Err(e) => {
                    warning!("backup_ext: cannot start jobs: {e}");
                    return;
                }
            };
            let pid = unsafe { pg_sys::MyProcPid };
            // Claim, plan and record the output path in one transaction, so that a crash after
            // this point always finds the job `running` with its output known.
            let claimed = in_transaction(|| {
                let err = |e: pgrx::spi::Error| e.to_string();
                let Some(claimed) = catalog::claim_next_job(pid).map_err(err)? else {
                    return Ok(None);
                };
                let backup = match claimed.backup_id {
                    Some(id) => catalog::backup_record(id).map_err(err)?,
                    None => None,
                };
                // A restore told at call time to read a copy reads that copy.
                let copy = claimed
                    .request
                    .get("storage")
                    .and_then(|v| v.as_str())
                    .filter(|_| claimed.kind == Ok(backup_core::JobKind::Restore));
                let plan = match (backup, copy) {
                    (Some(b), Some(storage)) => match b.at_copy(storage).map_err(err)? {
                        Some(copy) => kinds::prepare(&claimed, Some(&copy), &ctx),
                        None => Err(format!(
                            "backup {} has no copy in storage \"{storage}\" any more",
                            b.backup_id
                        )),
                    },
                    (backup, _) => kinds::prepare(&claimed, backup.as_ref(), &ctx),
                };
                if let Ok(kinds::Plan {
                    output: Some(output),
                    tool,
                    ..
                }) = &plan
                {
                    let tool_version = tools::tool_version(&ctx.bin_dir, tool)
                        .map(|v| v.1)
                        .unwrap_or_default();
                    let server_version = catalog::server_version().map_err(err)?;
                    let (path, key) = output.columns();
                    let recipients = match &plan {
                        Ok(kinds::Plan {
                            start: kinds::Start::Dump(spec),
                            ..
                        }) => spec.encrypt_to.iter().map(|r| fingerprint(r)).collect(),
                        _ => Vec::new(),
                    };
                    catalog::record_start(
                        claimed.job_id,
                        path.as_deref(),
                        key.as_deref(),
                        &tool_version,
                        &server_version,
                        &recipients,
                    )
                    .map_err(err)?;
                }
                let timeout = claimed
                    .timeout_seconds
                    .map(|s| Duration::from_secs(s.max(1) as u64))
                    .or(ctx.job_timeout);
                Ok(Some((claimed.job_id, timeout, plan)))
            });
            let (job_id, timeout, plan) = match claimed {
                Ok(Some(c)) => c,
                Ok(None) => return,
                Err(e) => {
                    warning!("backup_ext: cannot claim a job: {e}");
                    return;
                }
            };
            self.launch(job_id, timeout, plan, Instant::now(), None);
        }
    }

    /// Starts a prepared job (or records why it cannot start). `staged` is the local copy of a
    /// remote backup the job reads, removed when the job ends.
    fn launch(
        &mut self,
        job_id: i64,
        timeout: Option<Duration>,
        plan: Result<kinds::Plan, String>,
        started: Instant,
        staged: Option<std::path::PathBuf>,
    ) {
        let plan = match plan {
            Ok(plan) => plan,
            Err(e) => {
                remove_staged(staged.as_deref());
                self.record(job_id, Outcome::Failed(e));
                return;
            }
        };
        let output = plan.output.clone();
        let login_role = plan.login_role.clone();
        // The staging directory of a directory-format backup to a storage target.
        let staged = staged.or_else(|| output.as_ref()?.staged_dir());
        // What the dump writes locally: its file or directory, or the staging directory.
        let written_here = match &output {
            Some(kinds::Destination::Local(path)) => Some(path.clone()),
            Some(remote) => remote.staged_dir(),
            None => None,
        };
        if let Some(path) = &written_here {
            if let Some(why) = guardrails::free_space_shortfall(path) {
                let message = format!("not started: {why}");
                let database = match &plan.kind {
                    Kind::Backup { database } => database.clone(),
                    _ => None,
                };
                let raised = spi(|| {
                    guardrails::raise_guardrail_alert(job_id, database.as_deref(), &message)
                });
                if let Err(e) = raised {
                    warning!("backup_ext: {e}");
                }
                if let Some(output) = &output {
                    output.remove();
                }
                remove_staged(staged.as_deref());
                self.record(job_id, Outcome::Failed(message));
                return;
            }
        }
        let stall = match plan.kind {
            Kind::Restore => settings::stall_timeout().map(backup_core::StallWatch::new),
            _ => None,
        };
        match kinds::start(plan.start) {
            Ok(run) => self.running.push(RunningJob {
                job_id,
                kind: plan.kind,
                login_role: plan.login_role,
                makes_database: plan.makes_database,
                run,
                started,
                timeout,
                stderr_path: plan.stderr_path,
                stderr_offset: 0,
                progress: plan.progress,
                table_count: plan.table_count,
                tables_total: None,
                destination: output,
                staged,
                recorded_upload: None,
                pending: None,
                stall,
            }),
            Err(e) => {
                if let Some(output) = output {
                    output.remove();
                }
                remove_staged(staged.as_deref());
                self.drop_login_role(job_id, login_role.as_deref());
                self.record(
                    job_id,
                    Outcome::Failed(format!("cannot start {}: {e}", plan.tool)),
                );
            }
        }
    }

    /// The second step of a job on a remote backup: its local copy is whole, so the restore
    /// or verification is planned against it and started.
    fn launch_fetched(&mut self, job: RunningJob) {
        let RunningJob {
            job_id,
            kind,
            started,
            timeout,
            ..
        } = job;
        let kinds::Kind::Fetch {
            claimed,
            backup,
            dest,
        } = kind
        else {
            return;
        };
        let mut backup = *backup;
        // From here on the backup is the local copy, or the checked object a restore streams.
        if let Some(dest) = &dest {
            backup.path = Some(dest.to_string_lossy().into_owned());
            backup.storage = catalog::LOCAL_STORAGE.to_string();
        }
        let staged = dest;
        let plan = match context() {
            Ok(ctx) => in_transaction(|| {
                Ok(kinds::work_dir(&ctx).and_then(|work_dir| {
                    kinds::prepare_checked(&claimed, Some(&backup), &ctx, work_dir)
                }))
            })
            .unwrap_or_else(Err),
            Err(e) => Err(e),
        };
        self.launch(job_id, timeout, plan, started, staged);
    }

    /// SIGTERM: stop every child at once and say so in the catalog while we still can.
    fn shutdown(&mut self) {
        // A database a job made (restore target, verify scratch) cannot be dropped while the
        // server shuts down: dropdb cannot connect. Such a job stays `running`, so that recovery
        // at the next start fails it and drops the database.
        let jobs: Vec<(i64, bool)> = self
            .running
            .iter()
            .map(|j| (j.job_id, j.makes_database))
            .collect();
        for (job_id, makes_database) in jobs {
            if !makes_database {
                self.stop(
                    job_id,
                    Outcome::Failed("interrupted by server shutdown".into()),
                );
            } else if let Some(mut job) = self.take(job_id) {
                job.run.cancel();
                log!(
                    "backup_ext: job {job_id} was interrupted; the next start marks it failed \
                     and drops its database"
                );
            }
        }
    }
}

/// While the worker waits for a child (cancelling a restore runs dropdb), it must answer the
/// signal barriers that DROP DATABASE sends to every backend, or the two would wait for each
/// other. Only on the worker's own thread: barriers belong to the backend.
fn absorb_signal_barriers() -> bool {
    if WORKER_THREAD.get() != Some(&std::thread::current().id()) {
        return false;
    }
    unsafe {
        if pg_sys::ProcSignalBarrierPending != 0 {
            pg_sys::ProcessProcSignalBarrier();
        }
    }
    false
}

static WORKER_THREAD: std::sync::OnceLock<std::thread::ThreadId> = std::sync::OnceLock::new();

/// How far a job has got: bytes from its run, tables from pg_dump's verbose lines.
fn progress_of(j: &mut RunningJob) -> catalog::Progress {
    if j.started.elapsed() >= PROGRESS_EVERY {
        // The count's stderr goes beside the dump's, in the work directory.
        let work_dir = j.stderr_path.as_deref().and_then(std::path::Path::parent);
        if let (Some(cmd), Some(dir)) = (j.table_count.take(), work_dir) {
            j.tables_total = Some(backup_core::count_in_background(cmd, dir));
        }
    }
    if let Some(total) = j.tables_total.as_ref().and_then(|rx| rx.try_recv().ok()) {
        j.tables_total = None;
        if let Some(n) = total {
            j.progress = std::mem::take(&mut j.progress).with_total(n);
        }
    }
    if let Some(path) = &j.stderr_path {
        // Best effort: a missed line only makes the share of tables lag.
        let _ = backup_core::scan_new_lines(path, &mut j.stderr_offset, &mut j.progress);
    }
    // A restore counts its tables itself.
    let (tables_done, tables_total) = match j.run.tables() {
        Some((done, total)) => (Some(done), total),
        None => (
            j.stderr_path.as_ref().map(|_| j.progress.tables_done()),
            j.progress.tables_total(),
        ),
    };
    catalog::Progress {
        job_id: j.job_id,
        bytes: j.run.progress() as i64,
        tables_done: tables_done.map(|t| t as i32),
        tables_total: tables_total.map(|t| t as i32),
    }
}

/// Reads the settings that shape a job; done per claim so that a reload applies at once.
fn context() -> Result<Context, String> {
    let connection = in_transaction(tools::tool_connection)?;
    Ok(Context {
        bin_dir: settings::bin_dir(),
        directory: settings::directory(),
        connection,
        catalog_database: settings::database(),
        job_timeout: settings::job_timeout(),
        server_major: pg_sys::PG_VERSION_NUM / 10000,
    })
}

/// Writes the sidecar of a successful backup next to it, from its catalog row and what the
/// job measured.
fn write_sidecar(
    job_id: i64,
    destination: &kinds::Destination,
    facts: &catalog::ArtifactFacts,
) -> Result<(), String> {
    let row = spi(|| catalog::sidecar_facts(job_id))
        .map_err(|e| format!("cannot read the catalog row for the sidecar: {e}"))?
        .ok_or_else(|| format!("job {job_id} has no catalog row for its sidecar"))?;
    let mut value = row;
    if let Some(map) = value.as_object_mut() {
        map.insert(
            "sidecar_version".into(),
            backup_core::SIDECAR_VERSION.into(),
        );
        map.insert("size_bytes".into(), facts.size.into());
        map.insert("sha256".into(), facts.sha256.clone().into());
        map.insert(
            "manifest".into(),
            facts.manifest.clone().unwrap_or(serde_json::Value::Null),
        );
    }
    let sidecar: backup_core::Sidecar = serde_json::from_value(value)
        .map_err(|e| format!("cannot describe the backup in its sidecar: {e}"))?;
    destination.write_sidecar(&sidecar)
}

/// What an interrupted backup may have left in its storage target: an object completed just
/// before the crash (deleted with its sidecar).
fn remove_remote_leftovers(job: &catalog::Interrupted, key: &str) {
    let store = match open_store(&job.storage) {
        Ok(Some(store)) => store,
        Ok(None) => return,
        Err(e) => {
            warning!(
                "backup_ext: cannot open storage \"{}\" to clean up after job {}: {e}",
                job.storage,
                job.job_id
            );
            return;
        }
    };
    // An open upload is aborted by the sweep (`sweep_storage`), which retries.
    kinds::Destination::Remote {
        storage: job.storage.clone(),
        key: key.to_string(),
        store,
        started: None,
        staged: None,
    }
    .remove();
}

/// The second step of a directory-format backup to a storage target: once pg_dump has written
/// it into its staging directory, its files are uploaded; the dump's result is kept meanwhile
/// (None: the job runs on). An upload that failed takes what it uploaded with it.
fn upload_staged(
    job: &mut RunningJob,
    result: backup_core::JobResult,
) -> Option<backup_core::JobResult> {
    use backup_core::storage::tree::{TreeUpload, TreeUploadSpec};
    use backup_core::{JobResult, RunResult};
    match (result, &job.destination) {
        (JobResult::Uploaded { ok: true, .. }, _) => {
            Some(job.pending.take().unwrap_or(JobResult::Uploaded {
                ok: false,
                message: "the backup was uploaded but its dump result was lost".into(),
            }))
        }
        (failed @ JobResult::Uploaded { ok: false, .. }, Some(destination)) => {
            job.pending = None;
            destination.remove();
            Some(failed)
        }
        (
            dumped @ JobResult::Dump(RunResult::Succeeded { .. }),
            Some(kinds::Destination::Remote {
                storage,
                key,
                store,
                staged: Some(staged),
                ..
            }),
        ) if job.pending.is_none() => {
            let spec = TreeUploadSpec {
                store: store.clone(),
                storage: storage.clone(),
                key: key.clone(),
                root: staged.dir.clone(),
                open: staged.open.clone(),
            };
            match TreeUpload::start(spec) {
                Ok(run) => {
                    job.run = Box::new(run);
                    job.pending = Some(dumped);
                    None
                }
                Err(e) => Some(JobResult::Dump(RunResult::Failed {
                    message: format!("cannot start the upload to storage \"{storage}\": {e}"),
                })),
            }
        }
        (other, _) => Some(other),
    }
}

/// Removes the local copy of a remote backup once the job that read it has ended.
fn remove_staged(staged: Option<&std::path::Path>) {
    if let Some(path) = staged {
        if let Err(e) = backup_core::remove_output(path) {
            warning!("backup_ext: could not remove {}: {e}", path.display());
        }
    }
}

/// A storage target's store, read from the catalog in a transaction of its own; `None` for
/// `local`.
fn open_store(name: &str) -> Result<Option<backup_core::storage::Store>, String> {
    spi(|| Ok(crate::storage::open_named(name)))?.map_err(|e| e.message())
}
