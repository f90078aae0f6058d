//! One dump from start to published file, as a non-blocking state machine.
//!
//! The worker calls [`DumpRun::poll`] from its main loop and
//! [`DumpRun::cancel`] when asked to stop, so it never blocks on the child
//! and stays responsive to PostgreSQL's signals. Output goes to a
//! `.partial` path and is renamed to the final name only after it is
//! complete and fsynced; every other outcome removes it. Output sent to a
//! storage target streams into an upload that is completed only after the
//! child exited 0, and aborted otherwise.

use crate::crypt::encrypting_reader;
use crate::files::dir_hasher::DirHasher;
use crate::files::manifest::{directory_manifest, sync_tree, tree_size, Manifest};
use crate::files::publish::{publish, remove_output};
use crate::process::child::{describe_exit, stderr_tail, without_progress_lines, ChildGuard};
use crate::process::stream::{spawn_signal_free, StreamOutcome, StreamWriter};
use crate::storage::background::Background;
use crate::storage::{Failure, PendingUpload, StorageError, Store, UploadStarted};
use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a cancelled child gets to exit on SIGTERM before SIGKILL.
pub const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// Bytes of stderr quoted in a failure message.
pub const STDERR_TAIL_BYTES: usize = 2000;

#[derive(Debug, Clone)]
pub enum OutputKind {
    /// The child writes the backup to stdout; it is streamed into `partial`.
    Stdout { partial: PathBuf },
    /// The child writes into the directory `partial` (its args contain `--file=`), which is
    /// created empty first so that its files can be hashed as the child closes them.
    Directory { partial: PathBuf },
    /// The child writes the backup to stdout; it is streamed into an upload to `store` under
    /// `key` (`final_path` is then only the name used in messages). `started` receives the
    /// upload's id once the store has one.
    Upload {
        store: Store,
        key: String,
        started: UploadStarted,
    },
}

impl OutputKind {
    /// The local path written until the output is complete; none for an upload.
    pub fn partial(&self) -> Option<&Path> {
        match self {
            OutputKind::Stdout { partial } | OutputKind::Directory { partial } => Some(partial),
            OutputKind::Upload { .. } => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunSpec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub output: OutputKind,
    pub final_path: PathBuf,
    pub stderr_path: PathBuf,
    /// What a complete output must look like beyond not being empty.
    pub expect: ExpectedOutput,
    /// age recipients the output is encrypted to while it streams (none: stored as written).
    pub encrypt_to: Vec<String>,
}

impl RunSpec {
    /// What the stored output must look like: an encrypted one shows no archive header, only
    /// its size can be checked.
    fn expected(&self) -> ExpectedOutput {
        if self.encrypt_to.is_empty() {
            self.expect
        } else {
            ExpectedOutput::AnyBytes
        }
    }
}

/// What a dump that exits 0 must have written for the backup to count as succeeded: never an
/// empty output, and for archives a table of contents. A tool that exits 0 after writing
/// nothing (a wrapper script, a full disk it did not notice) must not leave a `succeeded` row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExpectedOutput {
    /// Any bytes (plain SQL, possibly compressed; globals).
    #[default]
    AnyBytes,
    /// A custom-format archive: it starts with the `PGDMP` header that precedes its table of
    /// contents.
    CustomArchive,
    /// A tar-format archive: its first member is `toc.dat`.
    TarArchive,
    /// A directory-format archive: it holds `toc.dat`.
    DirectoryArchive,
}

impl ExpectedOutput {
    pub fn of_format(format: crate::format::Format) -> ExpectedOutput {
        match format {
            crate::format::Format::Custom => ExpectedOutput::CustomArchive,
            crate::format::Format::Tar => ExpectedOutput::TarArchive,
            crate::format::Format::Directory => ExpectedOutput::DirectoryArchive,
            crate::format::Format::Plain => ExpectedOutput::AnyBytes,
        }
    }

    /// Why the output at `path` (`size` bytes) is no backup, if it is not one.
    pub fn refusal(self, name: &str, path: Option<&Path>, size: u64) -> Option<String> {
        if size == 0 {
            return Some(format!(
                "{name} exited 0 but wrote 0 bytes: an empty dump is no backup"
            ));
        }
        let prefix: &[u8] = match self {
            ExpectedOutput::AnyBytes => return None,
            ExpectedOutput::CustomArchive => b"PGDMP",
            ExpectedOutput::TarArchive => b"toc.dat\0",
            ExpectedOutput::DirectoryArchive => {
                let dir = path?;
                return (!dir.join("toc.dat").is_file()).then(|| {
                    format!("{name} exited 0 but the archive has no table of contents (toc.dat)")
                });
            }
        };
        // An upload cannot be read back cheaply: its size was checked.
        let path = path?;
        let mut head = vec![0u8; prefix.len()];
        let read = fs::File::open(path).and_then(|mut f| {
            use std::io::Read;
            f.read_exact(&mut head)
        });
        (read.is_err() || head != prefix).then(|| {
            format!("{name} exited 0 but the archive has no table of contents (it does not start with its header)")
        })
    }
}

/// Where the child's stdout goes.
enum Sink {
    File(StreamWriter),
    Upload(JoinHandle<Result<PendingUpload, StorageError>>),
}

/// What the sink made of the stream once the child's stdout closed.
enum Streamed {
    File(io::Result<StreamOutcome>),
    Upload(Result<PendingUpload, StorageError>),
}

impl Sink {
    fn join(self) -> Streamed {
        match self {
            Sink::File(w) => Streamed::File(w.join()),
            Sink::Upload(h) => Streamed::Upload(h.join().unwrap_or_else(|_| {
                Err(StorageError::new(
                    Failure::External,
                    "the upload thread panicked",
                    "See the server log.",
                ))
            })),
        }
    }
}

impl Streamed {
    /// Throws the data away: an upload is aborted (a file output is removed by the caller).
    /// Returns what went wrong while streaming, if anything.
    fn discard(self, output: &OutputKind) -> Option<String> {
        match (self, output) {
            (Streamed::File(r), OutputKind::Stdout { partial }) => {
                r.err().map(|e| describe_write_error(partial, &e))
            }
            (Streamed::Upload(Ok(pending)), OutputKind::Upload { store, .. }) => {
                pending.abort(store).err().map(|e| e.to_string())
            }
            (Streamed::Upload(Err(e)), _) => Some(e.to_string()),
            (Streamed::File(r), _) => r.err().map(|e| e.to_string()),
            (Streamed::Upload(Ok(_)), _) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunResult {
    Succeeded {
        size: u64,
        /// File hash for streamed output; manifest hash for a directory.
        sha256: String,
        manifest: Option<Manifest>,
    },
    Failed {
        message: String,
    },
}

pub struct DumpRun {
    spec: RunSpec,
    child: Option<ChildGuard>,
    writer: Option<Sink>,
    progress: Arc<AtomicU64>,
    /// Set once a result was returned or the run was cancelled; the output
    /// then belongs to the caller (published) or is gone.
    finished: bool,
    /// After pg_dump succeeded into an upload: the last parts and the completion, on a thread
    /// of their own so that polling never waits for the store.
    completing: Option<Background<RunResult>>,
    /// For a directory dump: hashes each file as the child closes it (none when inotify is not
    /// available; the files are then all read after the child exited).
    hasher: Option<DirHasher>,
}

fn program_name(program: &Path) -> String {
    program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| program.display().to_string())
}

/// A failed write names the file, and says in words when the filesystem is full.
fn describe_write_error(path: &Path, e: &io::Error) -> String {
    if e.raw_os_error() == Some(libc::ENOSPC) || e.kind() == io::ErrorKind::StorageFull {
        format!(
            "the filesystem is full (ENOSPC): could not write {}: {e}",
            path.display()
        )
    } else {
        format!("could not write {}: {e}", path.display())
    }
}

impl DumpRun {
    pub fn start(spec: RunSpec) -> io::Result<DumpRun> {
        // Verbose pg_dump output names every table, so keep it private.
        let stderr = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&spec.stderr_path)?;
        let progress = Arc::new(AtomicU64::new(0));
        let hasher = match &spec.output {
            // Watching is an optimization: without it (an existing directory, no inotify),
            // pg_dump deals with the directory as it finds it and the files are read at the end.
            OutputKind::Directory { partial } => DirHasher::start(partial).ok(),
            _ => None,
        };
        match Self::spawn_parts(&spec, stderr, &progress) {
            Ok((child, writer)) => Ok(DumpRun {
                spec,
                child: Some(child),
                writer,
                progress,
                finished: false,
                completing: None,
                hasher,
            }),
            Err(e) => {
                drop(hasher);
                if let OutputKind::Directory { partial } = &spec.output {
                    let _ = remove_output(partial);
                }
                let _ = fs::remove_file(&spec.stderr_path);
                Err(e)
            }
        }
    }

    fn spawn_parts(
        spec: &RunSpec,
        stderr: fs::File,
        progress: &Arc<AtomicU64>,
    ) -> io::Result<(ChildGuard, Option<Sink>)> {
        let piped = !matches!(spec.output, OutputKind::Directory { .. });
        let mut child = ChildGuard::spawn(&spec.program, &spec.args, piped, stderr)?;
        let stdout: Option<Box<dyn io::Read + Send>> = match child.take_stdout() {
            Some(out) if !spec.encrypt_to.is_empty() => {
                Some(Box::new(encrypting_reader(&spec.encrypt_to, out)?))
            }
            Some(out) => Some(Box::new(out)),
            None => None,
        };
        let writer = match (&spec.output, stdout) {
            (OutputKind::Stdout { partial }, Some(stdout)) => {
                // On error `child` is dropped here, which kills it.
                Some(Sink::File(StreamWriter::spawn(
                    stdout,
                    partial,
                    progress.clone(),
                )?))
            }
            (
                OutputKind::Upload {
                    store,
                    key,
                    started,
                },
                Some(stdout),
            ) => {
                let (store, key, progress, started) = (
                    store.clone(),
                    key.clone(),
                    progress.clone(),
                    started.clone(),
                );
                Some(Sink::Upload(spawn_signal_free(
                    "backup_ext-upload",
                    move || store.upload(&key, stdout, progress, started),
                )?))
            }
            (OutputKind::Stdout { .. } | OutputKind::Upload { .. }, None) => {
                return Err(io::Error::other("child stdout was not captured"))
            }
            (OutputKind::Directory { .. }, _) => None,
        };
        Ok((child, writer))
    }

    pub fn child_pid(&self) -> Option<u32> {
        self.child.as_ref().map(ChildGuard::id)
    }

    /// Bytes written so far. For a directory dump this walks the partial
    /// directory, so it is only computed when asked.
    pub fn progress(&self) -> u64 {
        match &self.spec.output {
            OutputKind::Stdout { .. } | OutputKind::Upload { .. } => {
                self.progress.load(Ordering::Relaxed)
            }
            OutputKind::Directory { partial } => tree_size(partial),
        }
    }

    /// Non-blocking: None while the child runs (and forever after a result
    /// was returned or the run was cancelled).
    pub fn poll(&mut self) -> Option<RunResult> {
        if let Some(completing) = self.completing.as_mut() {
            let result = completing.poll()?;
            self.completing = None;
            let _ = fs::remove_file(&self.spec.stderr_path);
            return Some(result.unwrap_or_else(|message| RunResult::Failed { message }));
        }
        if self.finished {
            return None;
        }
        let child = self.child.as_mut()?;
        let status = match child.try_wait() {
            Ok(None) => return None,
            Ok(Some(status)) => Ok(status),
            Err(e) => Err(e),
        };
        self.finished = true;
        let name = program_name(&self.spec.program);
        let result = match status {
            Err(e) => {
                // The child may still be running: stop it before joining
                // the stream thread, which would otherwise wait for it.
                self.stop_child();
                RunResult::Failed {
                    message: format!("could not wait for {name}: {e}"),
                }
            }
            Ok(status)
                if status.success() && matches!(self.spec.output, OutputKind::Upload { .. }) =>
            {
                let (writer, spec) = (self.writer.take(), self.spec.clone());
                let completing = Background::spawn("backup_ext-complete", move |_| {
                    Ok(complete_upload(&spec, writer.map(Sink::join)))
                });
                match completing {
                    Ok(completing) => {
                        self.completing = Some(completing);
                        return None;
                    }
                    Err(e) => RunResult::Failed {
                        message: format!(
                            "{name} succeeded but its upload could not be completed: {e}"
                        ),
                    },
                }
            }
            Ok(status) if status.success() => {
                let streamed = self.writer.take().map(Sink::join);
                match self.finish_output(streamed) {
                    Ok(result) => result,
                    Err(e) => RunResult::Failed {
                        message: format!(
                            "{name} succeeded but its output could not be saved as {}: {e}",
                            self.spec.final_path.display()
                        ),
                    },
                }
            }
            Ok(status) => {
                let write_error = self
                    .writer
                    .take()
                    .and_then(|w| w.join().discard(&self.spec.output));
                let tail = without_progress_lines(
                    &stderr_tail(&self.spec.stderr_path, STDERR_TAIL_BYTES),
                    &name,
                );
                let mut message = format!("{name} {}", describe_exit(status));
                if !tail.is_empty() {
                    message.push_str(": ");
                    message.push_str(&tail);
                }
                // When the copy into the file fails (a full disk), the pipe closes and the child
                // dies of SIGPIPE: the write error is the cause and comes first.
                if let Some(e) = write_error {
                    message = format!("{e}; {message}");
                }
                RunResult::Failed { message }
            }
        };
        if matches!(result, RunResult::Failed { .. }) {
            self.remove_partial();
        }
        let _ = fs::remove_file(&self.spec.stderr_path);
        Some(result)
    }

    fn remove_partial(&mut self) {
        // The watching thread reads files of the directory: stopped before it goes.
        self.hasher = None;
        if let Some(partial) = self.spec.output.partial() {
            let _ = remove_output(partial);
        }
    }

    fn finish_output(&mut self, streamed: Option<Streamed>) -> io::Result<RunResult> {
        let result = match (&self.spec.output, streamed) {
            (OutputKind::Stdout { partial }, Some(Streamed::File(outcome))) => {
                let o = outcome.map_err(|e| io::Error::other(describe_write_error(partial, &e)))?;
                RunResult::Succeeded {
                    size: o.size,
                    sha256: o.sha256,
                    manifest: None,
                }
            }
            (OutputKind::Stdout { .. } | OutputKind::Upload { .. }, _) => {
                return Err(io::Error::other("no stream writer for stdout output"))
            }
            (OutputKind::Directory { partial }, _) => {
                let m = match self.hasher.take() {
                    Some(hasher) => hasher.finish()?,
                    None => {
                        sync_tree(partial)?;
                        directory_manifest(partial)?
                    }
                };
                RunResult::Succeeded {
                    size: m.total_size,
                    sha256: m.sha256.clone(),
                    manifest: Some(m),
                }
            }
        };
        if let RunResult::Succeeded { size, .. } = &result {
            let name = program_name(&self.spec.program);
            let partial = self.spec.output.partial();
            if let Some(message) = self.spec.expected().refusal(&name, partial, *size) {
                return Ok(RunResult::Failed { message });
            }
        }
        if let Some(partial) = self.spec.output.partial() {
            publish(partial, &self.spec.final_path)?;
        }
        Ok(result)
    }

    /// Reaps the child (SIGTERM, SIGKILL after the grace period) and waits
    /// for the stream thread, which ends once the pipe's writer is gone.
    fn stop_child(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.shutdown(CANCEL_GRACE);
        }
        if let Some(writer) = self.writer.take() {
            writer.join().discard(&self.spec.output);
        }
    }

    /// Stops the child and removes all output. Blocks for at most about
    /// [`CANCEL_GRACE`] plus the time to delete the partial output.
    pub fn cancel(&mut self) {
        if let Some(mut completing) = self.completing.take() {
            // The completion cannot be interrupted: an upload it completed is deleted again.
            if let (Some(Ok(RunResult::Succeeded { .. })), OutputKind::Upload { store, key, .. }) =
                (completing.stop(), &self.spec.output)
            {
                let _ = store.delete(key);
            }
            let _ = fs::remove_file(&self.spec.stderr_path);
            return;
        }
        if self.finished {
            return;
        }
        self.finished = true;
        self.stop_child();
        self.remove_partial();
        let _ = fs::remove_file(&self.spec.stderr_path);
    }
}

impl Drop for DumpRun {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Dropping the guard SIGKILLs and reaps the group; only then can the
        // stream thread see end of file and be joined.
        self.child = None;
        if let Some(writer) = self.writer.take() {
            writer.join().discard(&self.spec.output);
        }
        self.remove_partial();
        let _ = fs::remove_file(&self.spec.stderr_path);
    }
}

/// The end of a dump streamed into an upload: the last parts sent, then the upload completed
/// (and its ETag checked), or aborted when that fails.
fn complete_upload(spec: &RunSpec, streamed: Option<Streamed>) -> RunResult {
    let OutputKind::Upload { store, key, .. } = &spec.output else {
        return RunResult::Failed {
            message: "not an upload".into(),
        };
    };
    let failed = |e: String| RunResult::Failed {
        message: format!(
            "{} succeeded but its output could not be saved as {key}: {e}",
            program_name(&spec.program)
        ),
    };
    let pending = match streamed {
        Some(Streamed::Upload(Ok(pending))) => pending,
        Some(Streamed::Upload(Err(e))) => return failed(e.to_string()),
        _ => return failed("no stream writer for stdout output".into()),
    };
    let name = program_name(&spec.program);
    if let Some(message) = spec.expected().refusal(&name, None, pending.size()) {
        let _ = pending.abort(store);
        return RunResult::Failed { message };
    }
    if let Err(e) = pending.complete(store) {
        let _ = pending.abort(store);
        return failed(e.to_string());
    }
    RunResult::Succeeded {
        size: pending.size(),
        sha256: pending.sha256().to_string(),
        manifest: None,
    }
}

#[cfg(test)]
mod tests;
