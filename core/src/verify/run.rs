//! Verifying a backup as a non-blocking sequence of steps: recompute its
//! hash and size, read its table of contents, and optionally restore it
//! into a scratch database and compare row counts. The scratch database is
//! dropped whatever happens once it was created.

use crate::files::manifest::{directory_manifest_metered, hash_file, HashMeter};
use crate::files::plain::{open_plain_dump, plain_dump_reader};
use crate::format::Format;
use crate::job::{JobResult, JobRun, VerifyReport};
use crate::process::command::ToolCommand;
use crate::process::step::{Capture, Captured, Feed, Step, StepEnd, Stoppable, CLEANUP_TIMEOUT};
use crate::process::stream::spawn_signal_free;
use crate::restore::run::RestoreStep;
use crate::restore::source::ArchiveSource;
use crate::restore::toc::parse_toc;
use crate::verify::rows::{compare_counts, count_copy_rows, parse_counts, quote_mismatches};
use std::collections::BTreeMap;
use std::io::{self, BufReader};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Largest `pg_restore --list` output accepted.
pub const MAX_LISTING_BYTES: usize = 64 << 20;
/// Largest row count output accepted.
pub const MAX_COUNT_OUTPUT_BYTES: usize = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveRows {
    /// Count COPY rows in the plain dump itself.
    FromPlainFile { compressed: bool },
    /// Count COPY rows in the stdout of `pg_restore --file=- --data-only`.
    FromPgRestore(ToolCommand),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRestorePlan {
    /// createdb for the scratch database.
    pub create: ToolCommand,
    pub restore: RestoreStep,
    pub archive_rows: ArchiveRows,
    /// psql running `row_count_query()` in the scratch database.
    pub count: ToolCommand,
    /// dropdb for the scratch database.
    pub drop: ToolCommand,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyPlan {
    pub path: PathBuf,
    pub format: Format,
    pub expected_sha256: String,
    pub expected_size: u64,
    /// `pg_restore --list`, for the archive formats.
    pub list: Option<ToolCommand>,
    pub test_restore: Option<TestRestorePlan>,
    pub work_dir: PathBuf,
    /// For an encrypted backup: the archive decrypted as it is read, fed to the listing, the
    /// test restore and the row count on their stdin (their commands then name no file).
    /// `path` still names the stored bytes the checksum is of.
    pub decrypted: Option<ArchiveSource>,
}

type Handle<T> = JoinHandle<io::Result<T>>;

enum Stage {
    Hash(Handle<(u64, String)>),
    List(Step),
    Create(Step),
    Restore(Step),
    RowsFromFile(Handle<BTreeMap<String, u64>>),
    RowsFromTool(Step),
    Count(Step),
    /// Dropping the scratch database; the report waits for it.
    Drop(Step),
    Done,
}

pub struct VerifyRun {
    plan: VerifyPlan,
    stage: Stage,
    meter: Arc<HashMeter>,
    stop: Arc<AtomicBool>,
    notes: Vec<String>,
    /// Set once the outcome is known, while the drop step still runs.
    failure: Option<String>,
    archive_rows: Option<BTreeMap<String, u64>>,
}

fn thread_result<T>(h: Handle<T>) -> io::Result<T> {
    h.join()
        .map_err(|_| io::Error::other("a helper thread panicked"))?
}

impl VerifyRun {
    pub fn start(plan: VerifyPlan) -> io::Result<VerifyRun> {
        let meter = Arc::new(HashMeter::default());
        let (path, directory, m) = (
            plan.path.clone(),
            plan.format == Format::Directory,
            meter.clone(),
        );
        let handle = spawn_signal_free("backup_ext hash", move || {
            if directory {
                directory_manifest_metered(&path, &m).map(|man| (man.total_size, man.sha256))
            } else {
                hash_file(&path, &m)
            }
        })?;
        Ok(VerifyRun {
            plan,
            stage: Stage::Hash(handle),
            meter,
            stop: Arc::new(AtomicBool::new(false)),
            notes: Vec::new(),
            failure: None,
            archive_rows: None,
        })
    }

    fn report(&mut self, passed: bool, last: Option<String>) -> Option<JobResult> {
        self.stage = Stage::Done;
        let mut parts = std::mem::take(&mut self.notes);
        parts.extend(last);
        Some(JobResult::Verify(VerifyReport {
            passed,
            message: parts.join("; "),
            archive_rows: self.archive_rows.take(),
        }))
    }

    fn step(&self, cmd: &ToolCommand, capture: Capture) -> io::Result<Step> {
        Step::start(
            cmd,
            &self.plan.work_dir,
            Feed::Nothing,
            capture,
            Arc::default(),
        )
    }

    /// A step reading the archive: on its stdin when it is decrypted on the way.
    fn reading_step(&self, cmd: &ToolCommand, capture: Capture) -> io::Result<Step> {
        let feed = self
            .plan
            .decrypted
            .clone()
            .map_or(Feed::Nothing, Feed::Archive);
        Step::start(cmd, &self.plan.work_dir, feed, capture, Arc::default())
    }

    /// Moves to `next`, or fails the verification if it could not start.
    fn enter(&mut self, cmd: &ToolCommand, next: io::Result<Stage>) -> Option<JobResult> {
        match next {
            Ok(stage) => {
                self.stage = stage;
                None
            }
            Err(e) => {
                let end = StepEnd::not_started(cmd, e);
                self.scratch_failed(end.failure())
            }
        }
    }

    fn after_hash(&mut self, result: io::Result<(u64, String)>) -> Option<JobResult> {
        let (size, sha) = match result {
            Ok(r) => r,
            Err(e) => {
                let msg = format!("could not read {}: {e}", self.plan.path.display());
                return self.report(false, Some(msg));
            }
        };
        let mut wrong = Vec::new();
        if sha != self.plan.expected_sha256 {
            let what = if self.plan.format == Format::Directory {
                "manifest sha256"
            } else {
                "sha256"
            };
            wrong.push(format!(
                "{what} mismatch: expected {}, got {sha}",
                self.plan.expected_sha256
            ));
        }
        if size != self.plan.expected_size {
            wrong.push(format!(
                "size mismatch: expected {} bytes, got {size}",
                self.plan.expected_size
            ));
        }
        if !wrong.is_empty() {
            return self.report(false, Some(wrong.join("; ")));
        }
        self.notes.push("sha256 and size match".into());
        match self.plan.list.clone() {
            Some(list) => {
                let next = self
                    .reading_step(
                        &list,
                        Capture::Text {
                            limit: MAX_LISTING_BYTES,
                        },
                    )
                    .map(Stage::List);
                self.enter_or_report(&list, next)
            }
            None => self.start_test_restore(),
        }
    }

    /// Like [`VerifyRun::enter`], before a scratch database exists.
    fn enter_or_report(&mut self, cmd: &ToolCommand, next: io::Result<Stage>) -> Option<JobResult> {
        match next {
            Ok(stage) => {
                self.stage = stage;
                None
            }
            Err(e) => {
                let msg = StepEnd::not_started(cmd, e).failure();
                self.report(false, Some(msg))
            }
        }
    }

    fn after_list(&mut self, end: StepEnd) -> Option<JobResult> {
        if !end.ok() {
            return self.report(false, Some(end.failure()));
        }
        let listing = match &end.output {
            Ok(Captured::Text(t)) => t.as_str(),
            _ => "",
        };
        match parse_toc(listing) {
            Ok(entries) => {
                self.notes
                    .push(format!("{} TOC entries read", entries.len()));
                self.start_test_restore()
            }
            Err(e) => self.report(false, Some(e.to_string())),
        }
    }

    fn start_test_restore(&mut self) -> Option<JobResult> {
        let Some(t) = self.plan.test_restore.clone() else {
            return self.report(true, None);
        };
        let next = self.step(&t.create, Capture::Discard).map(Stage::Create);
        self.enter_or_report(&t.create, next)
    }

    /// The test restore failed after the scratch database was created:
    /// drop it, then report.
    fn scratch_failed(&mut self, message: String) -> Option<JobResult> {
        self.failure = Some(format!("test restore: {message}"));
        self.start_drop()
    }

    fn start_drop(&mut self) -> Option<JobResult> {
        let Some(t) = self.plan.test_restore.clone() else {
            return self.finish_after_drop(None);
        };
        match self.step(&t.drop, Capture::Discard) {
            Ok(step) => {
                self.stage = Stage::Drop(step);
                None
            }
            Err(e) => self.finish_after_drop(Some(StepEnd::not_started(&t.drop, e))),
        }
    }

    fn finish_after_drop(&mut self, drop: Option<StepEnd>) -> Option<JobResult> {
        let mut last = self.failure.take();
        let passed = last.is_none();
        if let Some(end) = drop.filter(|e| !e.ok()) {
            self.notes.extend(last.take());
            last = Some(format!(
                "could not drop the scratch database: {}",
                end.failure()
            ));
        }
        self.report(passed, last)
    }

    fn after_restore(&mut self, t: &TestRestorePlan, end: StepEnd) -> Option<JobResult> {
        if let Err(message) = t.restore.outcome(&end) {
            return self.scratch_failed(message);
        }
        let next = match &t.archive_rows {
            ArchiveRows::FromPlainFile { compressed } => {
                let (path, compressed) = (self.plan.path.clone(), *compressed);
                let decrypted = self.plan.decrypted.clone();
                let stop = self.stop.clone();
                spawn_signal_free("backup_ext rows", move || {
                    let inner = match decrypted {
                        Some(source) => plain_dump_reader(source.open()?, compressed),
                        None => open_plain_dump(&path, compressed)?,
                    };
                    let count = Arc::default();
                    count_copy_rows(BufReader::new(Stoppable { inner, stop, count }))
                })
                .map(Stage::RowsFromFile)
            }
            ArchiveRows::FromPgRestore(cmd) => self
                .reading_step(cmd, Capture::CopyRows)
                .map(Stage::RowsFromTool),
        };
        let cmd = match &t.archive_rows {
            ArchiveRows::FromPgRestore(cmd) => cmd.clone(),
            ArchiveRows::FromPlainFile { .. } => t.restore.command().clone(),
        };
        self.enter(&cmd, next)
    }

    fn after_archive_rows(
        &mut self,
        t: &TestRestorePlan,
        rows: Result<BTreeMap<String, u64>, String>,
    ) -> Option<JobResult> {
        match rows {
            Ok(rows) => {
                self.archive_rows = Some(rows);
                let next = self
                    .step(
                        &t.count,
                        Capture::Text {
                            limit: MAX_COUNT_OUTPUT_BYTES,
                        },
                    )
                    .map(Stage::Count);
                self.enter(&t.count, next)
            }
            Err(e) => self.scratch_failed(format!("counting rows in the backup: {e}")),
        }
    }

    fn after_count(&mut self, end: StepEnd) -> Option<JobResult> {
        if !end.ok() {
            return self.scratch_failed(end.failure());
        }
        let text = match &end.output {
            Ok(Captured::Text(t)) => t.as_str(),
            _ => "",
        };
        let restored = match parse_counts(text) {
            Ok(c) => c,
            Err(e) => return self.scratch_failed(e),
        };
        let archive = self.archive_rows.clone().unwrap_or_default();
        let mismatches = compare_counts(&archive, &restored);
        let rows: u64 = archive.values().sum();
        let summary = format!("test restore: {} tables, {rows} rows", archive.len());
        if mismatches.is_empty() {
            self.notes.push(format!("{summary}, counts match"));
        } else {
            self.failure = Some(format!(
                "{summary}, {} count mismatches: {}",
                mismatches.len(),
                quote_mismatches(&mismatches)
            ));
        }
        self.start_drop()
    }
}

impl JobRun for VerifyRun {
    fn poll(&mut self) -> Option<JobResult> {
        let t = self.plan.test_restore.clone();
        match &mut self.stage {
            Stage::Done => None,
            Stage::Hash(h) => {
                if !h.is_finished() {
                    return None;
                }
                let Stage::Hash(h) = std::mem::replace(&mut self.stage, Stage::Done) else {
                    return None;
                };
                let result = thread_result(h);
                self.after_hash(result)
            }
            Stage::List(step) => {
                let end = step.poll()?;
                self.after_list(end)
            }
            Stage::Create(step) => {
                let end = step.poll()?;
                if !end.ok() {
                    // Never drop a database that createdb did not create.
                    let msg = format!("test restore: {}", end.failure());
                    return self.report(false, Some(msg));
                }
                let t = t?;
                let next = t
                    .restore
                    .start(
                        &self.plan.work_dir,
                        Default::default(),
                        self.plan.decrypted.as_ref(),
                    )
                    .map(Stage::Restore);
                self.enter(t.restore.command(), next)
            }
            Stage::Restore(step) => {
                let end = step.poll()?;
                self.after_restore(&t?, end)
            }
            Stage::RowsFromFile(h) => {
                if !h.is_finished() {
                    return None;
                }
                let Stage::RowsFromFile(h) = std::mem::replace(&mut self.stage, Stage::Done) else {
                    return None;
                };
                let rows = thread_result(h).map_err(|e| e.to_string());
                self.after_archive_rows(&t?, rows)
            }
            Stage::RowsFromTool(step) => {
                let end = step.poll()?;
                let rows = match end.output {
                    Ok(Captured::Rows(rows)) if end.ok() => Ok(rows),
                    _ => Err(end.failure()),
                };
                self.after_archive_rows(&t?, rows)
            }
            Stage::Count(step) => {
                let end = step.poll()?;
                self.after_count(end)
            }
            Stage::Drop(step) => {
                let end = step.poll()?;
                self.finish_after_drop(Some(end))
            }
        }
    }

    /// Stops the running step; once the scratch database may exist (an
    /// interrupted createdb may have created it), drops it, waiting at
    /// most [`CLEANUP_TIMEOUT`].
    fn cancel(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.meter.stop.store(true, Ordering::Relaxed);
        let needs_drop = match std::mem::replace(&mut self.stage, Stage::Done) {
            // Helper threads see the stop flags and end by themselves.
            Stage::Done | Stage::Hash(_) => false,
            Stage::List(mut step) => {
                step.stop();
                false
            }
            Stage::RowsFromFile(_) => true,
            Stage::Create(mut step)
            | Stage::Restore(mut step)
            | Stage::RowsFromTool(mut step)
            | Stage::Count(mut step) => {
                step.stop();
                true
            }
            Stage::Drop(step) => {
                let _ = step.wait(CLEANUP_TIMEOUT);
                false
            }
        };
        if needs_drop {
            if let Some(t) = &self.plan.test_restore {
                let _ = Step::run_sync(&t.drop, &self.plan.work_dir, CLEANUP_TIMEOUT);
            }
        }
    }

    /// Bytes hashed so far.
    fn progress(&self) -> u64 {
        self.meter.bytes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests;
