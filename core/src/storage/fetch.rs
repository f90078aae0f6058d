//! Bringing a backup from a storage target into a local work file, as a job step: the worker
//! polls it like a child, and the restore or verification that needs the archive starts once
//! the copy is whole and matches the size and SHA-256 recorded when the backup was written.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::{Downloaded, StorageError, Store};
use crate::job::{JobResult, JobRun};
use crate::process::stream::spawn_signal_free;

/// What to fetch, where to, and what it must turn out to be.
#[derive(Debug, Clone)]
pub struct FetchSpec {
    pub store: Store,
    /// For messages: the target's name.
    pub storage: String,
    pub key: String,
    pub dest: PathBuf,
    pub expected_size: u64,
    pub expected_sha256: String,
}

/// A file that refuses further writes once the fetch is cancelled, which ends the download at
/// its next chunk.
struct CancellableFile {
    file: File,
    cancelled: Arc<AtomicBool>,
}

impl Write for CancellableFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "cancelled"));
        }
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Compares a finished download with what the catalog recorded; `Err` is the job's message.
pub fn check_fetched(spec: &FetchSpec, got: &Downloaded) -> Result<(), String> {
    if got.size != spec.expected_size || got.sha256 != spec.expected_sha256 {
        return Err(format!(
            "{} in storage \"{}\" no longer matches its recorded checksum: expected {} bytes \
             with sha256 {}, found {} bytes with sha256 {}",
            spec.key, spec.storage, spec.expected_size, spec.expected_sha256, got.size, got.sha256
        ));
    }
    Ok(())
}

/// Why [`fetch_now`] failed.
#[derive(Debug)]
pub enum FetchError {
    /// The store (or the local file) failed; the error says how.
    Store(StorageError),
    /// The copy does not match what was recorded.
    Mismatch(String),
    /// The local copy could not be created.
    Local(String),
}

/// Downloads `spec` into `spec.dest` (created new, mode 0600) and checks it; blocking. For
/// callers that need the archive at once (inspection at call time).
pub fn fetch_now(spec: &FetchSpec) -> Result<(), FetchError> {
    let file = create_dest(&spec.dest).map_err(FetchError::Local)?;
    let checked = match spec
        .store
        .download(&spec.key, file, Arc::new(AtomicU64::new(0)))
    {
        Ok(got) => check_fetched(spec, &got).map_err(FetchError::Mismatch),
        Err(e) => Err(FetchError::Store(e)),
    };
    if checked.is_err() {
        let _ = fs::remove_file(&spec.dest);
    }
    checked
}

fn create_dest(dest: &Path) -> Result<File, String> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
        .map_err(|e| format!("cannot create {}: {e}", dest.display()))
}

fn describe(spec: &FetchSpec, e: &StorageError) -> String {
    format!(
        "cannot read {} from storage \"{}\": {e}",
        spec.key, spec.storage
    )
}

/// A download running on its own thread.
pub struct FetchRun {
    spec: FetchSpec,
    handle: Option<JoinHandle<Result<Downloaded, StorageError>>>,
    progress: Arc<AtomicU64>,
    cancelled: Arc<AtomicBool>,
    finished: bool,
}

impl FetchRun {
    pub fn start(spec: FetchSpec) -> io::Result<FetchRun> {
        let file = create_dest(&spec.dest).map_err(io::Error::other)?;
        let progress = Arc::new(AtomicU64::new(0));
        let cancelled = Arc::new(AtomicBool::new(false));
        let sink = CancellableFile {
            file,
            cancelled: cancelled.clone(),
        };
        let (store, key, p) = (spec.store.clone(), spec.key.clone(), progress.clone());
        let handle = spawn_signal_free("backup_ext-fetch", move || store.download(&key, sink, p))
            .inspect_err(|_| {
            let _ = fs::remove_file(&spec.dest);
        })?;
        Ok(FetchRun {
            spec,
            handle: Some(handle),
            progress,
            cancelled,
            finished: false,
        })
    }

    /// The local copy, once [`FetchRun::poll`] reported success.
    pub fn dest(&self) -> &Path {
        &self.spec.dest
    }

    fn join(&mut self) -> Option<Result<Downloaded, StorageError>> {
        let handle = self.handle.take()?;
        Some(handle.join().unwrap_or_else(|_| {
            Err(StorageError::new(
                super::Failure::External,
                "the download thread panicked",
                "See the server log.",
            ))
        }))
    }
}

impl JobRun for FetchRun {
    fn poll(&mut self) -> Option<JobResult> {
        if self.finished || !self.handle.as_ref()?.is_finished() {
            return None;
        }
        self.finished = true;
        let checked = match self.join()? {
            Ok(got) => check_fetched(&self.spec, &got),
            Err(e) => Err(describe(&self.spec, &e)),
        };
        if checked.is_err() {
            let _ = fs::remove_file(&self.spec.dest);
        }
        Some(JobResult::Fetched {
            ok: checked.is_ok(),
            message: checked.err().unwrap_or_default(),
        })
    }

    fn cancel(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.cancelled.store(true, Ordering::Relaxed);
        let _ = self.join();
        let _ = fs::remove_file(&self.spec.dest);
    }

    fn progress(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }
}

impl Drop for FetchRun {
    fn drop(&mut self) {
        self.cancel();
    }
}
