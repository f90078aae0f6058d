//! A restore as a non-blocking sequence of steps: count the archive's rows, create the target
//! database (optional), restore into it, count the restored rows and compare, and drop the
//! database again if the restore failed or the counts differ, so that a failed restore leaves
//! nothing half-filled behind. When the restore creates its database, the archive's rows are
//! counted while it runs (a failure drops the database anyway); into an existing database
//! they are counted first, so that an unreadable archive touches nothing.

use crate::dump::progress::{scan_new_lines, ProgressTracker};
use crate::job::{JobResult, JobRun};
use crate::process::command::ToolCommand;
use crate::process::step::{Capture, Feed, Step, StepEnd, CLEANUP_TIMEOUT};
use crate::restore::check::{judge_counts, RestoredRows, RowCheck, RowCounts, RowsReading};
use crate::restore::source::ArchiveSource;
use crate::restore::table::CopyInto;
use crate::verify::run::MAX_COUNT_OUTPUT_BYTES;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How the archive gets into the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreStep {
    PgRestore(ToolCommand),
    /// pg_restore newer than the server, run without `--exit-on-error`: it sets parameters
    /// the server does not know (pg_restore 17 sets `transaction_timeout`), which fail and
    /// are skipped. The restore succeeds when those are its only errors.
    PgRestoreIntoOlderServer(ToolCommand),
    /// psql reads the script itself (`--file=<path>`).
    PsqlFile(ToolCommand),
    /// psql reads stdin (`--file=-`); `input` (a file, or an object in a storage target) is
    /// streamed into it,
    /// gunzipped when `compressed`, without the header's `SET` lines of the parameters in
    /// `skip_settings` (set by a newer pg_dump, unknown to this server).
    PsqlStdin {
        command: ToolCommand,
        input: ArchiveSource,
        compressed: bool,
        skip_settings: Vec<String>,
        /// Set for one table of the script (`restore_table()`): only its rows are fed, into
        /// the new table.
        rows_of: Option<CopyInto>,
    },
    /// An archive restored as a script: `source` (`pg_restore --file=-`) streams into psql
    /// through the same filter as [`RestoreStep::PsqlStdin`]. Used when the archive holds what
    /// the filter must take out (see [`crate::files::plain::SERVER_ATTRIBUTE_OPTION`]).
    PsqlFromTool {
        command: ToolCommand,
        source: ToolCommand,
        skip_settings: Vec<String>,
        /// Set when one table's rows are loaded into another table (`restore_table()`).
        copy_into: Option<CopyInto>,
    },
    /// A globals script, run by psql without ON_ERROR_STOP: roles that
    /// already exist are reported, not fatal.
    Globals {
        command: ToolCommand,
    },
}

impl RestoreStep {
    /// Starts the step; `stdin` is the archive the tool (or, for [`RestoreStep::PsqlFromTool`],
    /// the tool feeding psql) reads on its stdin instead of from a path.
    pub(crate) fn start(
        &self,
        work_dir: &Path,
        fed: Arc<AtomicU64>,
        stdin: Option<&ArchiveSource>,
    ) -> io::Result<Step> {
        let archive = || stdin.map_or(Feed::Nothing, |s| Feed::Archive(s.clone()));
        let (cmd, feed) = match self {
            RestoreStep::PgRestore(c)
            | RestoreStep::PgRestoreIntoOlderServer(c)
            | RestoreStep::PsqlFile(c) => (c, archive()),
            RestoreStep::Globals { command } => (command, archive()),
            RestoreStep::PsqlStdin {
                command,
                input,
                compressed,
                skip_settings,
                rows_of,
            } => (
                command,
                Feed::File {
                    source: input.clone(),
                    compressed: *compressed,
                    skip: skip_settings.clone(),
                    rows_of: rows_of.clone(),
                },
            ),
            RestoreStep::PsqlFromTool {
                command,
                source,
                skip_settings,
                copy_into,
            } => (
                command,
                Feed::Tool {
                    command: source.clone(),
                    input: stdin.cloned(),
                    skip: skip_settings.clone(),
                    copy_into: copy_into.clone(),
                },
            ),
        };
        Step::start(cmd, work_dir, feed, Capture::Discard, fed)
    }

    pub(crate) fn command(&self) -> &ToolCommand {
        match self {
            RestoreStep::PgRestore(c)
            | RestoreStep::PgRestoreIntoOlderServer(c)
            | RestoreStep::PsqlFile(c) => c,
            RestoreStep::PsqlStdin { command, .. }
            | RestoreStep::PsqlFromTool { command, .. }
            | RestoreStep::Globals { command } => command,
        }
    }

    /// The success message, or the failure message.
    pub(crate) fn outcome(&self, end: &StepEnd) -> Result<String, String> {
        if let RestoreStep::PgRestoreIntoOlderServer(_) = self {
            let exited_1 = matches!(&end.status, Ok(s) if s.code() == Some(1));
            if exited_1 && end.output.is_ok() && end.feed.is_ok() {
                if let Some(names) = unknown_settings_only(&end.stderr) {
                    return Ok(format!(
                        "{} finished; this server does not know {} (SET by the newer \
                         pg_restore), skipped",
                        end.name,
                        names.join(", ")
                    ));
                }
            }
        }
        if !end.ok() {
            return Err(end.failure());
        }
        if let RestoreStep::PsqlStdin { skip_settings, .. }
        | RestoreStep::PsqlFromTool { skip_settings, .. } = self
        {
            if !skip_settings.is_empty() {
                let by = match self {
                    RestoreStep::PsqlFromTool { .. } => "pg_restore",
                    _ => "pg_dump",
                };
                return Ok(format!(
                    "{} finished; this server does not know {} (SET by the newer {by}), \
                     skipped",
                    end.name,
                    skip_settings.join(", ")
                ));
            }
        }
        let errors = end.errors();
        if !matches!(self, RestoreStep::Globals { .. }) || errors.is_empty() {
            return Ok(format!("{} finished", end.name));
        }
        globals_outcome(&errors)
    }
}

/// The parameters of a pg_restore run whose only errors were `SET <name> = ...` refused with
/// `unrecognized configuration parameter "<name>"`; None when there was any other error, or
/// none at all.
pub(crate) fn unknown_settings_only(stderr: &str) -> Option<Vec<String>> {
    const UNKNOWN: &str = "ERROR:  unrecognized configuration parameter \"";
    let lines: Vec<&str> = stderr.lines().collect();
    let mut names: Vec<String> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let is_error = line.contains("ERROR:") || line.starts_with("pg_restore: error:");
        if !is_error {
            continue;
        }
        let name = line
            .split_once(UNKNOWN)
            .and_then(|(_, rest)| rest.strip_suffix('"'))?;
        let command = lines.get(i + 1)?.strip_prefix("Command was: ")?;
        if !command.starts_with(&format!("SET {name} = ")) {
            return None;
        }
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    (!names.is_empty()).then_some(names)
}

/// The part of a psql error line from `ERROR:` on, without the
/// `psql:<file>:<line>: ` prefix.
fn error_text(line: &str) -> &str {
    line.find("ERROR:").map_or(line, |i| &line[i..])
}

/// `ERROR:` lines of a globals script: only "already exists" ones are
/// acceptable (the cluster has the role or tablespace already).
pub(crate) fn globals_outcome(errors: &[&str]) -> Result<String, String> {
    let texts: Vec<&str> = errors.iter().map(|l| error_text(l)).collect();
    let fatal: Vec<&str> = texts
        .iter()
        .copied()
        .filter(|t| !t.ends_with("already exists"))
        .collect();
    if !fatal.is_empty() {
        return Err(format!(
            "psql reported {} error{}: {}",
            fatal.len(),
            if fatal.len() == 1 { "" } else { "s" },
            fatal.join("; ")
        ));
    }
    let what = if texts.iter().all(|t| t.contains(" role \"")) {
        "role"
    } else {
        "object"
    };
    let n = texts.len();
    Ok(format!(
        "{n} {what}{} already existed: {}",
        if n == 1 { "" } else { "s" },
        texts.join("; ")
    ))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePlan {
    /// createdb for the target database, when the restore creates it.
    pub create: Option<ToolCommand>,
    pub restore: RestoreStep,
    /// dropdb for the target database, run when the restore fails or is
    /// cancelled (never when `create` itself failed: the database may then
    /// belong to someone else).
    pub drop_on_failure: Option<ToolCommand>,
    /// Where stderr logs go while the tools run.
    pub work_dir: PathBuf,
    /// The archive streamed into the restoring tool's stdin, when it reads no file (a backup
    /// in a storage target).
    pub stdin: Option<ArchiveSource>,
    /// How the restored rows are checked against the archive's.
    pub rows: RowCheck,
}

enum Stage {
    /// Counting the archive's rows, before anything touches the target.
    ArchiveRows(RowsReading),
    Create(Step),
    Restore(Step),
    /// The restore is done (its message kept); the archive's rows, counted beside it, are not
    /// yet.
    AwaitArchiveRows(String),
    /// Counting the restored rows; the restoring tool's message is kept.
    Count(Step, String),
    /// Dropping the database after a failure whose message is kept.
    Drop(Step, String),
    Done,
}

pub struct RestoreRun {
    plan: RestorePlan,
    stage: Stage,
    fed: Arc<AtomicU64>,
    archive_rows: Option<RowCounts>,
    /// The archive's rows being counted beside the restore (see the module's doc).
    beside: Option<RowsReading>,
    /// Why counting them beside the restore failed.
    beside_failed: Option<String>,
    /// Tables of the restoring tool, from its `--verbose` lines.
    tables: ProgressTracker,
    /// How far the restoring tool's stderr has been read.
    stderr_offset: u64,
    /// The restoring tool exited successfully: every table it was to restore is done.
    restored: bool,
}

impl RestoreRun {
    pub fn start(plan: RestorePlan) -> io::Result<RestoreRun> {
        let fed = Arc::new(AtomicU64::new(0));
        let mut run = RestoreRun {
            stage: Stage::Done,
            fed,
            archive_rows: None,
            beside: None,
            beside_failed: None,
            tables: ProgressTracker::for_restore(),
            stderr_offset: 0,
            restored: false,
            plan,
        };
        run.stage = match &run.plan.rows.archive {
            Some(from) if run.plan.create.is_some() => {
                // Its own byte count: the job's progress is what the restore has read.
                run.beside = Some(RowsReading::start(
                    from,
                    &run.plan.work_dir,
                    Arc::default(),
                )?);
                run.first_target_step()?
            }
            Some(from) => Stage::ArchiveRows(RowsReading::start(
                from,
                &run.plan.work_dir,
                run.fed.clone(),
            )?),
            None => run.first_target_step()?,
        };
        Ok(run)
    }

    /// createdb, or the restore itself when the database exists.
    fn first_target_step(&self) -> io::Result<Stage> {
        Ok(match &self.plan.create {
            Some(create) => Stage::Create(Step::start(
                create,
                &self.plan.work_dir,
                Feed::Nothing,
                Capture::Discard,
                Arc::default(),
            )?),
            None => Stage::Restore(self.start_restore()?),
        })
    }

    fn start_restore(&self) -> io::Result<Step> {
        self.plan.restore.start(
            &self.plan.work_dir,
            self.fed.clone(),
            self.plan.stdin.as_ref(),
        )
    }

    fn failed(message: String) -> JobResult {
        JobResult::Restore { ok: false, message }
    }

    /// After a failed restore: start the drop step if there is one.
    fn fail(&mut self, message: String) -> Option<JobResult> {
        self.stop_beside();
        let Some(drop) = &self.plan.drop_on_failure else {
            self.stage = Stage::Done;
            return Some(Self::failed(message));
        };
        let started = Step::start(
            drop,
            &self.plan.work_dir,
            Feed::Nothing,
            Capture::Discard,
            Arc::default(),
        );
        match started {
            Ok(step) => {
                self.stage = Stage::Drop(step, message);
                None
            }
            Err(e) => {
                self.stage = Stage::Done;
                let end = StepEnd::not_started(drop, e);
                Some(Self::failed(with_drop_failure(message, &end)))
            }
        }
    }

    fn after_archive_rows(&mut self, rows: Result<RowCounts, String>) -> Option<JobResult> {
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                // Nothing was touched yet.
                self.stage = Stage::Done;
                return Some(Self::failed(format!(
                    "counting the rows in the archive failed, the target was not touched: {e}"
                )));
            }
        };
        self.counted(rows);
        // From here on the bytes are those the restore reads.
        self.fed.store(0, Ordering::Relaxed);
        match self.first_target_step() {
            Ok(stage) => {
                self.stage = stage;
                None
            }
            Err(e) => {
                self.stage = Stage::Done;
                Some(Self::failed(format!("could not start the restore: {e}")))
            }
        }
    }

    /// The archive's row counts are known: they give the number of tables to restore.
    fn counted(&mut self, rows: RowCounts) {
        self.tables.set_total(rows.len() as u64);
        self.archive_rows = Some(rows);
    }

    /// Stops the count beside the restore, if it still runs.
    fn stop_beside(&mut self) {
        if let Some(mut reading) = self.beside.take() {
            reading.stop();
        }
    }

    /// Polls the count beside the restore; true once it is over (or there is none).
    fn poll_beside(&mut self) -> bool {
        let Some(reading) = &mut self.beside else {
            return true;
        };
        let Some(rows) = reading.poll() else {
            return false;
        };
        self.beside = None;
        match rows {
            Ok(rows) => self.counted(rows),
            Err(e) => self.beside_failed = Some(e),
        }
        true
    }

    fn after_restore(&mut self, end: StepEnd) -> Option<JobResult> {
        // The last lines, which the step removed with its stderr file.
        for line in end.stderr.lines() {
            self.tables.feed_line(line);
        }
        let message = match self.plan.restore.outcome(&end) {
            Ok(message) => message,
            Err(message) => return self.fail(message),
        };
        self.tables.finish();
        self.restored = true;
        if !self.poll_beside() {
            self.stage = Stage::AwaitArchiveRows(message);
            return None;
        }
        self.compare(message)
    }

    /// After a successful restore: counts the restored rows when the archive's are known.
    fn compare(&mut self, message: String) -> Option<JobResult> {
        if let Some(e) = self.beside_failed.take() {
            return self.fail(format!(
                "{message}, but counting the rows in the archive failed: {e}"
            ));
        }
        let count = match (&self.plan.rows.restored, &self.archive_rows) {
            (RestoredRows::Count(count), Some(_)) => count.clone(),
            (RestoredRows::NotCompared(why), _) => {
                self.stage = Stage::Done;
                return Some(JobResult::Restore {
                    ok: true,
                    message: format!("{message}; row counts not compared: {why}"),
                });
            }
            _ => {
                self.stage = Stage::Done;
                return Some(JobResult::Restore { ok: true, message });
            }
        };
        let started = Step::start(
            &count,
            &self.plan.work_dir,
            Feed::Nothing,
            Capture::Text {
                limit: MAX_COUNT_OUTPUT_BYTES,
            },
            Arc::default(),
        );
        match started {
            Ok(step) => {
                self.stage = Stage::Count(step, message);
                None
            }
            Err(e) => self.fail(format!(
                "{message}, but the restored rows could not be counted: {}",
                StepEnd::not_started(&count, e).failure()
            )),
        }
    }
}

fn with_drop_failure(message: String, drop: &StepEnd) -> String {
    if drop.ok() {
        message
    } else {
        format!(
            "{message}; dropping the database afterwards failed too: {}",
            drop.failure()
        )
    }
}

impl JobRun for RestoreRun {
    fn poll(&mut self) -> Option<JobResult> {
        let counted = self.poll_beside();
        // An archive that cannot be read through stops the restore at once.
        if let (Some(e), Stage::Create(step) | Stage::Restore(step)) =
            (&self.beside_failed, &mut self.stage)
        {
            step.stop();
            let message = format!("counting the rows in the archive failed: {e}");
            self.beside_failed = None;
            return self.fail(message);
        }
        match &mut self.stage {
            Stage::Done => None,
            Stage::AwaitArchiveRows(_) => {
                if !counted {
                    return None;
                }
                match std::mem::replace(&mut self.stage, Stage::Done) {
                    Stage::AwaitArchiveRows(message) => self.compare(message),
                    _ => None,
                }
            }
            Stage::ArchiveRows(reading) => {
                let rows = reading.poll()?;
                self.after_archive_rows(rows)
            }
            Stage::Create(step) => {
                let end = step.poll()?;
                if !end.ok() {
                    self.stop_beside();
                    self.stage = Stage::Done;
                    return Some(Self::failed(end.failure()));
                }
                match self.start_restore() {
                    Ok(step) => {
                        self.stage = Stage::Restore(step);
                        None
                    }
                    Err(e) => {
                        let name = self.plan.restore.command().name();
                        self.fail(format!("could not start {name}: {e}"))
                    }
                }
            }
            Stage::Restore(step) => {
                let end = step.poll()?;
                self.after_restore(end)
            }
            Stage::Count(step, restored) => {
                let end = step.poll()?;
                let archive = self.archive_rows.clone().unwrap_or_default();
                match judge_counts(&archive, &end, restored) {
                    Ok(message) => {
                        self.stage = Stage::Done;
                        Some(JobResult::Restore { ok: true, message })
                    }
                    Err(message) => self.fail(message),
                }
            }
            Stage::Drop(step, _) => {
                let end = step.poll()?;
                match std::mem::replace(&mut self.stage, Stage::Done) {
                    Stage::Drop(_, message) => Some(Self::failed(with_drop_failure(message, &end))),
                    _ => None,
                }
            }
        }
    }

    /// Stops the running tool, then drops the target database (waiting at
    /// most [`CLEANUP_TIMEOUT`]). A createdb that was interrupted may have
    /// created the database already, so the drop runs then too.
    fn cancel(&mut self) {
        self.stop_beside();
        let needs_drop = match std::mem::replace(&mut self.stage, Stage::Done) {
            Stage::Done => false,
            // The restore is done, and the database it made is dropped like any other.
            Stage::AwaitArchiveRows(_) => true,
            Stage::ArchiveRows(mut reading) => {
                reading.stop();
                false
            }
            Stage::Create(mut step) | Stage::Restore(mut step) | Stage::Count(mut step, _) => {
                step.stop();
                true
            }
            Stage::Drop(step, _) => {
                let _ = step.wait(CLEANUP_TIMEOUT);
                false
            }
        };
        if needs_drop {
            if let Some(drop) = &self.plan.drop_on_failure {
                let _ = Step::run_sync(drop, &self.plan.work_dir, CLEANUP_TIMEOUT);
            }
        }
    }

    /// Bytes of the archive read so far by the step running now: those streamed to the tool
    /// when the worker feeds it, else what the tool itself has read.
    fn progress(&self) -> u64 {
        let fed = self.fed.load(Ordering::Relaxed);
        let own = match &self.stage {
            Stage::ArchiveRows(reading) => reading.bytes_read(),
            Stage::Restore(step) => step.bytes_read(),
            _ => 0,
        };
        if fed > 0 {
            fed
        } else {
            own
        }
    }

    /// Tables restored so far, of those the archive count found. A restore through psql says
    /// nothing per table: its tables are all done when it exits successfully.
    fn tables(&mut self) -> Option<(u64, Option<u64>)> {
        if let Stage::Restore(step) = &self.stage {
            // Best effort: a missed line only makes the count lag.
            let _ = scan_new_lines(
                step.stderr_path(),
                &mut self.stderr_offset,
                &mut self.tables,
            );
        }
        let total = self.tables.tables_total();
        let done = match total {
            Some(total) if self.restored => total,
            _ => self.tables.tables_done(),
        };
        Some((done, total))
    }

    /// Watched while the archive is read: by the row count (before or beside the restore),
    /// and by the restoring tool.
    fn activity(&mut self) -> Option<u64> {
        let (done, _) = self.tables()?;
        let beside = self.beside.as_ref().map_or(0, RowsReading::bytes_read);
        matches!(
            self.stage,
            Stage::ArchiveRows(_) | Stage::Restore(_) | Stage::AwaitArchiveRows(_)
        )
        .then(|| self.progress() + self.stderr_offset + done + beside)
    }
}

#[cfg(test)]
mod tests;
