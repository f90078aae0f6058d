//! One step of a
//! multi-step job: a tool run as a child, optionally fed a file on stdin
//! and with its stdout read, all without blocking the caller.
//!
//! Helper threads (feeding stdin, reading stdout) are plain std threads
//! with every signal blocked, like the dump's stream thread.

use crate::dump::run::{CANCEL_GRACE, STDERR_TAIL_BYTES};
use crate::files::plain::{plain_dump_reader, ScriptFilter};
use crate::process::child::{describe_exit, stderr_tail, without_progress_lines, ChildGuard};
use crate::process::command::ToolCommand;
use crate::process::stream::spawn_signal_free;
use crate::restore::source::ArchiveSource;
use crate::restore::table::CopyInto;
use crate::verify::rows::count_copy_rows;
use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, BufReader, ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a clean-up step (dropping a database) may take when it has to
/// run synchronously, on cancel.
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes of stderr searched for `ERROR:` lines.
const STDERR_SCAN_BYTES: usize = 1 << 20;

/// Stops a reader thread early when set (the read then fails).
pub(crate) struct Stoppable<R> {
    pub inner: R,
    pub stop: Arc<AtomicBool>,
    pub count: Arc<AtomicU64>,
}

impl<R: Read> Read for Stoppable<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(io::Error::new(ErrorKind::Interrupted, "stopped"));
        }
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// What goes to the child's stdin.
pub(crate) enum Feed {
    Nothing,
    /// An archive as it is (pg_restore reading its stdin). The child may stop reading once it
    /// has what it needs (`pg_restore --list`); if it then exits successfully, so does the step.
    Archive(ArchiveSource),
    /// A plain script, gunzipped when `compressed`, without the header's `SET` lines for the
    /// parameters in `skip` (see [`ScriptFilter`]); with `rows_of`, only that table's rows.
    File {
        source: ArchiveSource,
        compressed: bool,
        skip: Vec<String>,
        rows_of: Option<CopyInto>,
    },
    /// The stdout of another tool (`pg_restore --file=-`), through the same filter. That tool
    /// runs beside the step's child, reading `input` on its stdin when given; a failure of it
    /// fails the step.
    Tool {
        command: ToolCommand,
        input: Option<ArchiveSource>,
        skip: Vec<String>,
        copy_into: Option<CopyInto>,
    },
}

/// What is done with the child's stdout.
#[derive(Clone, Copy)]
pub(crate) enum Capture {
    Discard,
    /// Kept as text; more than `limit` bytes is an error.
    Text {
        limit: usize,
    },
    CopyRows,
}

#[derive(Debug)]
pub(crate) enum Captured {
    Nothing,
    Text(String),
    Rows(BTreeMap<String, u64>),
}

/// How a step ended.
pub(crate) struct StepEnd {
    pub name: String,
    pub status: io::Result<ExitStatus>,
    /// The end of stderr with verbose chatter removed.
    pub tail: String,
    /// The last MiB of stderr.
    pub stderr: String,
    pub output: io::Result<Captured>,
    pub feed: io::Result<()>,
}

impl StepEnd {
    /// Every `ERROR:` line in (the last MiB of) stderr.
    pub fn errors(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.contains("ERROR:"))
            .collect()
    }

    pub fn exited_ok(&self) -> bool {
        matches!(&self.status, Ok(s) if s.success())
    }

    pub fn ok(&self) -> bool {
        self.exited_ok() && self.output.is_ok() && self.feed.is_ok()
    }

    /// Why the step failed, for a job message ("" when it did not).
    pub fn failure(&self) -> String {
        let name = &self.name;
        match &self.status {
            Err(e) => return format!("{name} failed: {e}"),
            Ok(status) if !status.success() => {
                let mut m = format!("{name} {}", describe_exit(*status));
                if !self.tail.is_empty() {
                    m.push_str(": ");
                    m.push_str(&self.tail);
                }
                return m;
            }
            Ok(_) => {}
        }
        if let Err(e) = &self.feed {
            return format!("could not feed the input to {name}: {e}");
        }
        if let Err(e) = &self.output {
            return format!("could not read the output of {name}: {e}");
        }
        String::new()
    }
}

/// Runs a tool to its end (at most `timeout`) for a short chore such as a dropdb; waiting goes
/// through the wait hook (see `child::set_wait_hook`).
pub fn run_tool(cmd: &ToolCommand, work_dir: &Path, timeout: Duration) -> Result<(), String> {
    let end = Step::run_sync(cmd, work_dir, timeout);
    if end.ok() {
        Ok(())
    } else {
        Err(end.failure())
    }
}

/// The most `pg_restore --list` may print before it is treated as an error.
const LISTING_LIMIT: usize = 64 * 1024 * 1024;

/// `pg_restore --list` (or another short read-only tool) to its end, at most `timeout`,
/// returning its stdout; `input` is streamed into its stdin when given.
pub fn list_archive(
    cmd: &ToolCommand,
    input: Option<&ArchiveSource>,
    work_dir: &Path,
    timeout: Duration,
) -> Result<String, String> {
    let started = Step::start(
        cmd,
        work_dir,
        input.map_or(Feed::Nothing, |i| Feed::Archive(i.clone())),
        Capture::Text {
            limit: LISTING_LIMIT,
        },
        Arc::default(),
    );
    let end = match started {
        Ok(step) => step.wait(timeout),
        Err(e) => StepEnd::not_started(cmd, e),
    };
    if !end.ok() {
        return Err(end.failure());
    }
    match end.output {
        Ok(Captured::Text(text)) => Ok(text),
        _ => Ok(String::new()),
    }
}

static STEP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// One running tool. Dropping it kills the child's process group.
pub(crate) struct Step {
    child: ChildGuard,
    name: String,
    stderr_path: PathBuf,
    feeder: Option<JoinHandle<io::Result<()>>>,
    reader: Option<JoinHandle<io::Result<Captured>>>,
    stop: Arc<AtomicBool>,
    /// The tool feeding the child's stdin ([`Feed::Tool`]).
    upstream: Option<Upstream>,
    /// The child reads an archive, and may stop before its end ([`Feed::Archive`]).
    reads_archive: bool,
}

/// The tool of a [`Feed::Tool`]: its process group and stderr.
struct Upstream {
    child: ChildGuard,
    name: String,
    stderr_path: PathBuf,
    /// Feeding the tool's own stdin (an archive streamed from a store).
    feeder: Option<JoinHandle<io::Result<()>>>,
}

impl Upstream {
    /// How it ended, once the step's child has: an error names the tool and its stderr.
    fn finish(&mut self) -> io::Result<()> {
        let status = match self.child.wait_timeout(CLEANUP_TIMEOUT) {
            Ok(Some(status)) => status,
            Ok(None) => {
                self.child.kill();
                return Err(io::Error::other(format!(
                    "{} did not finish with its reader",
                    self.name
                )));
            }
            Err(e) => return Err(e),
        };
        let fed = join(self.feeder.take(), ());
        if status.success() {
            fed_archive(fed)?;
        }
        let tail = without_progress_lines(
            &stderr_tail(&self.stderr_path, STDERR_TAIL_BYTES),
            &self.name,
        );
        let _ = fs::remove_file(&self.stderr_path);
        if status.success() {
            return Ok(());
        }
        let mut m = format!("{} {}", self.name, describe_exit(status));
        if !tail.is_empty() {
            m.push_str(": ");
            m.push_str(&tail);
        }
        Err(io::Error::other(m))
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.stderr_path);
    }
}

/// A private stderr file for a tool run by a step.
fn stderr_file(work_dir: &Path, name: &str) -> io::Result<(PathBuf, fs::File)> {
    let n = STEP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = work_dir.join(format!("{name}-{}-{n}.stderr", std::process::id()));
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    Ok((path, file))
}

fn read_capped(mut r: impl Read, limit: usize) -> io::Result<Captured> {
    let mut kept = Vec::new();
    (&mut r)
        .take(u64::try_from(limit).unwrap_or(u64::MAX))
        .read_to_end(&mut kept)?;
    // Drain the rest so that the child is not blocked on a full pipe.
    let extra = io::copy(&mut r, &mut io::sink())?;
    if extra > 0 {
        return Err(io::Error::new(
            ErrorKind::InvalidData,
            format!("output is larger than {limit} bytes"),
        ));
    }
    Ok(Captured::Text(String::from_utf8_lossy(&kept).into_owned()))
}

/// The `rchar` field of a `/proc/<pid>/io` file.
fn read_chars(io: &str) -> Option<u64> {
    io.lines()
        .find_map(|l| l.strip_prefix("rchar:"))
        .and_then(|n| n.trim().parse().ok())
}

/// How feeding an archive ended, for a reader that exited successfully: one that stopped
/// reading early (a broken pipe) had what it needed.
fn fed_archive(fed: io::Result<()>) -> io::Result<()> {
    match fed {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Copies an archive into a child's stdin on a signal-free thread, counting into `count`.
fn feed_archive(
    source: ArchiveSource,
    mut stdin: impl io::Write + Send + 'static,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
) -> io::Result<JoinHandle<io::Result<()>>> {
    spawn_signal_free("backup_ext feed", move || {
        let mut raw = Stoppable {
            inner: source.open()?,
            stop,
            count,
        };
        io::copy(&mut raw, &mut stdin).map(|_| ())
    })
}

fn join<T>(handle: Option<JoinHandle<io::Result<T>>>, none: T) -> io::Result<T> {
    match handle {
        None => Ok(none),
        Some(h) => h
            .join()
            .map_err(|_| io::Error::other("a helper thread panicked"))?,
    }
}

impl Step {
    /// `fed` counts the bytes read from a fed file (before gunzipping).
    pub fn start(
        cmd: &ToolCommand,
        work_dir: &Path,
        feed: Feed,
        capture: Capture,
        fed: Arc<AtomicU64>,
    ) -> io::Result<Step> {
        let name = cmd.name();
        // The feeding tool first: its stdout is what the child reads.
        let mut upstream = match &feed {
            Feed::Tool { command, input, .. } => {
                let up_name = command.name();
                let (path, file) = stderr_file(work_dir, &up_name)?;
                let mut upstream = Upstream {
                    child: ChildGuard::spawn_with(
                        &command.program,
                        &command.args,
                        &command.env,
                        input.is_some(),
                        true,
                        file,
                    )?,
                    name: up_name,
                    stderr_path: path,
                    feeder: None,
                };
                if let (Some(input), Some(stdin)) = (input, upstream.child.take_stdin()) {
                    upstream.feeder = Some(feed_archive(
                        input.clone(),
                        stdin,
                        Arc::default(),
                        Arc::default(),
                    )?);
                }
                Some(upstream)
            }
            _ => None,
        };
        let upstream_out = upstream.as_mut().and_then(|u| u.child.take_stdout());
        let (stderr_path, stderr) = stderr_file(work_dir, &name)?;
        let stop = Arc::new(AtomicBool::new(false));
        let piped_out = !matches!(capture, Capture::Discard);
        let spawned = ChildGuard::spawn_with(
            &cmd.program,
            &cmd.args,
            &cmd.env,
            !matches!(feed, Feed::Nothing),
            piped_out,
            stderr,
        );
        let mut step = match spawned {
            Ok(child) => Step {
                child,
                name,
                stderr_path,
                feeder: None,
                reader: None,
                stop: stop.clone(),
                upstream,
                reads_archive: matches!(feed, Feed::Archive(_)),
            },
            Err(e) => {
                let _ = fs::remove_file(&stderr_path);
                return Err(e);
            }
        };
        // From here on, an error drops `step`, which kills the child.
        let stdin = step.child.take_stdin();
        match (feed, stdin) {
            (Feed::Archive(source), Some(stdin)) => {
                step.feeder = Some(feed_archive(source, stdin, stop.clone(), fed)?);
            }
            (
                Feed::File {
                    source,
                    compressed,
                    skip,
                    rows_of,
                },
                Some(mut stdin),
            ) => {
                let stop = stop.clone();
                step.feeder = Some(spawn_signal_free("backup_ext feed", move || {
                    let inner = source.open()?;
                    let raw = Stoppable {
                        inner,
                        stop,
                        count: fed,
                    };
                    let script = ScriptFilter::new(plain_dump_reader(raw, compressed), skip);
                    match rows_of {
                        Some(table) => io::copy(&mut script.only_rows_of(table), &mut stdin),
                        None => io::copy(&mut { script }, &mut stdin),
                    }
                    .map(|_| ())
                })?);
            }
            (
                Feed::Tool {
                    skip, copy_into, ..
                },
                Some(mut stdin),
            ) => {
                let inner = upstream_out
                    .ok_or_else(|| io::Error::other("the feeding tool has no stdout"))?;
                let stop = stop.clone();
                step.feeder = Some(spawn_signal_free("backup_ext feed", move || {
                    let raw = Stoppable {
                        inner,
                        stop,
                        count: fed,
                    };
                    let mut script = ScriptFilter::new(raw, skip).copying_into(copy_into);
                    io::copy(&mut script, &mut stdin).map(|_| ())
                })?);
            }
            _ => {}
        }
        if let Some(stdout) = step.child.take_stdout() {
            step.reader = Some(spawn_signal_free(
                "backup_ext read",
                move || match capture {
                    Capture::Discard => {
                        io::copy(&mut { stdout }, &mut io::sink()).map(|_| Captured::Nothing)
                    }
                    Capture::Text { limit } => read_capped(stdout, limit),
                    Capture::CopyRows => {
                        count_copy_rows(BufReader::new(stdout)).map(Captured::Rows)
                    }
                },
            )?);
        }
        Ok(step)
    }

    fn finish(&mut self, status: io::Result<ExitStatus>) -> StepEnd {
        let mut feed = join(self.feeder.take(), ());
        if self.reads_archive && matches!(&status, Ok(s) if s.success()) {
            feed = fed_archive(feed);
        }
        if let Some(mut upstream) = self.upstream.take() {
            // A feeding tool that failed is the cause, whatever the reader made of its output.
            if let Err(e) = upstream.finish() {
                feed = Err(e);
            }
        }
        let output = join(self.reader.take(), Captured::Nothing);
        let tail = without_progress_lines(
            &stderr_tail(&self.stderr_path, STDERR_TAIL_BYTES),
            &self.name,
        );
        let stderr = stderr_tail(&self.stderr_path, STDERR_SCAN_BYTES);
        let _ = fs::remove_file(&self.stderr_path);
        StepEnd {
            name: self.name.clone(),
            status,
            tail,
            stderr,
            output,
            feed,
        }
    }

    /// Where the child's stderr goes while it runs (removed when the step ends).
    pub fn stderr_path(&self) -> &Path {
        &self.stderr_path
    }

    /// Bytes the child has read so far (files, pipes and sockets: `rchar` in
    /// `/proc/<pid>/io`); 0 where the kernel does not say.
    pub fn bytes_read(&self) -> u64 {
        fs::read_to_string(format!("/proc/{}/io", self.child.id()))
            .ok()
            .and_then(|io| read_chars(&io))
            .unwrap_or(0)
    }

    /// Non-blocking: None while the child runs.
    pub fn poll(&mut self) -> Option<StepEnd> {
        match self.child.try_wait() {
            Ok(None) => None,
            Ok(Some(status)) => Some(self.finish(Ok(status))),
            Err(e) => {
                self.stop();
                Some(self.finish(Err(e)))
            }
        }
    }

    /// SIGTERM, then SIGKILL after [`CANCEL_GRACE`]; helper threads are
    /// told to stop too.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(upstream) = &mut self.upstream {
            let _ = upstream.child.shutdown(CANCEL_GRACE);
        }
        let _ = self.child.shutdown(CANCEL_GRACE);
    }

    /// Waits up to `timeout` for the step, stopping it after that.
    pub fn wait(mut self, timeout: Duration) -> StepEnd {
        match self.child.wait_timeout(timeout) {
            Ok(Some(status)) => self.finish(Ok(status)),
            Ok(None) => {
                self.stop();
                let status = self.child.try_wait().and_then(|s| {
                    s.ok_or_else(|| io::Error::other("the child did not exit after SIGKILL"))
                });
                let mut end = self.finish(status);
                end.tail = format!("did not finish within {}s", timeout.as_secs());
                end
            }
            Err(e) => {
                self.stop();
                self.finish(Err(e))
            }
        }
    }

    /// Runs `cmd` to completion, for at most `timeout`.
    pub fn run_sync(cmd: &ToolCommand, work_dir: &Path, timeout: Duration) -> StepEnd {
        match Step::start(
            cmd,
            work_dir,
            Feed::Nothing,
            Capture::Discard,
            Arc::default(),
        ) {
            Ok(step) => step.wait(timeout),
            Err(e) => StepEnd::not_started(cmd, e),
        }
    }
}

impl StepEnd {
    pub fn not_started(cmd: &ToolCommand, e: io::Error) -> StepEnd {
        StepEnd {
            name: cmd.name(),
            status: Err(io::Error::new(e.kind(), format!("could not start: {e}"))),
            tail: String::new(),
            stderr: String::new(),
            output: Ok(Captured::Nothing),
            feed: Ok(()),
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        // The guard's own Drop kills the group; helper threads then see
        // end of file or a broken pipe and end by themselves.
        self.stop.store(true, Ordering::Relaxed);
        let _ = fs::remove_file(&self.stderr_path);
    }
}

#[cfg(test)]
mod tests;
