//! Bringing a backup from a storage target into a local work file, or only reading it through
//! to check it, as a job step: the worker polls it like a child, and the restore or
//! verification that needs the archive starts once the bytes matched the size and SHA-256
//! recorded when the backup was written.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::background::Background;
use super::{Downloaded, StorageError, Store};
use crate::job::{JobResult, JobRun};

/// What to fetch, where to, and what it must turn out to be.
#[derive(Debug, Clone)]
pub struct FetchSpec {
    pub store: Store,
    /// For messages: the target's name.
    pub storage: String,
    pub key: String,
    /// The local copy; None to read the object through without keeping it (a check before
    /// the object is streamed into a restore).
    pub dest: Option<PathBuf>,
    /// A directory-format backup: every object under `<key>/`, fetched into the directory
    /// `dest` and checked against the manifest hash.
    pub tree: bool,
    pub expected_size: u64,
    pub expected_sha256: String,
}

/// A sink that refuses further writes once the fetch is cancelled, which ends the download at
/// its next chunk.
struct CancellableFile {
    file: Box<dyn Write + Send>,
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
    work: Background<Downloaded>,
    progress: Arc<AtomicU64>,
}

impl FetchRun {
    pub fn start(spec: FetchSpec) -> io::Result<FetchRun> {
        if spec.tree {
            return Self::start_tree(spec);
        }
        let file: Box<dyn Write + Send> = match &spec.dest {
            Some(dest) => Box::new(create_dest(dest).map_err(io::Error::other)?),
            None => Box::new(io::sink()),
        };
        let progress = Arc::new(AtomicU64::new(0));
        let (store, key, p) = (spec.store.clone(), spec.key.clone(), progress.clone());
        let described = spec.clone();
        let work = Background::spawn("backup_ext-fetch", move |cancelled| {
            let sink = CancellableFile { file, cancelled };
            store
                .download(&key, sink, p)
                .map_err(|e| describe(&described, &e))
        })
        .inspect_err(|_| remove_dest(&spec))?;
        Ok(FetchRun {
            spec,
            work,
            progress,
        })
    }

    fn start_tree(spec: FetchSpec) -> io::Result<FetchRun> {
        let dest = spec
            .dest
            .clone()
            .ok_or_else(|| io::Error::other("a directory backup is fetched into a directory"))?;
        let progress = Arc::new(AtomicU64::new(0));
        let (store, key, p) = (spec.store.clone(), spec.key.clone(), progress.clone());
        let described = spec.clone();
        let work = Background::spawn("backup_ext-fetch", move |cancelled| {
            super::tree::download_tree(&store, &key, &dest, p, &cancelled)
                .map_err(|e| describe(&described, &e))
        })?;
        Ok(FetchRun {
            spec,
            work,
            progress,
        })
    }

    /// The local copy, once [`FetchRun::poll`] reported success.
    pub fn dest(&self) -> Option<&Path> {
        self.spec.dest.as_deref()
    }
}

fn remove_dest(spec: &FetchSpec) {
    if let Some(dest) = &spec.dest {
        let _ = crate::files::publish::remove_output(dest);
    }
}

impl JobRun for FetchRun {
    fn poll(&mut self) -> Option<JobResult> {
        let checked = self
            .work
            .poll()?
            .and_then(|got| check_fetched(&self.spec, &got));
        if checked.is_err() {
            remove_dest(&self.spec);
        }
        Some(JobResult::Fetched {
            ok: checked.is_ok(),
            message: checked.err().unwrap_or_default(),
        })
    }

    fn cancel(&mut self) {
        if self.work.cancel() {
            remove_dest(&self.spec);
        }
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::storage::FileStore;
    use crate::test_support::TempDir;
    use sha2::{Digest, Sha256};
    use std::fs;
    use std::time::{Duration, Instant};

    pub(crate) fn poll_until_done(run: &mut dyn JobRun) -> JobResult {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(r) = run.poll() {
                return r;
            }
            assert!(Instant::now() < deadline, "the run did not end");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn spec(dir: &TempDir, key: &str, bytes: &[u8]) -> FetchSpec {
        let root = dir.path().join("store");
        fs::create_dir_all(root.join("db")).unwrap();
        fs::write(root.join("db/b.dump"), b"the backup").unwrap();
        FetchSpec {
            store: Store::File(FileStore::new(root)),
            storage: "nfs".into(),
            key: key.into(),
            dest: Some(dir.path().join("job-1.fetch")),
            tree: false,
            expected_size: bytes.len() as u64,
            expected_sha256: hex::encode(Sha256::digest(bytes)),
        }
    }

    #[test]
    fn a_fetched_copy_is_kept_only_when_it_matches() {
        let dir = TempDir::new("fetch");
        let good = spec(&dir, "db/b.dump", b"the backup");
        let mut run = FetchRun::start(good.clone()).unwrap();
        assert_eq!(
            poll_until_done(&mut run),
            JobResult::Fetched {
                ok: true,
                message: String::new()
            }
        );
        drop(run);
        let dest = good.dest.clone().unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"the backup");
        fs::remove_file(&dest).unwrap();

        // Only read through: the same check, and no file.
        let through = FetchSpec {
            dest: None,
            ..good.clone()
        };
        let mut run = FetchRun::start(through).unwrap();
        assert_eq!(
            poll_until_done(&mut run),
            JobResult::Fetched {
                ok: true,
                message: String::new()
            }
        );
        assert!(!dest.exists());

        // Recorded otherwise: refused, and the copy is gone.
        let changed = spec(&dir, "db/b.dump", b"another backup");
        let mut run = FetchRun::start(changed.clone()).unwrap();
        let JobResult::Fetched { ok: false, message } = poll_until_done(&mut run) else {
            panic!("a changed object was accepted");
        };
        assert!(
            message.starts_with("db/b.dump in storage \"nfs\" no longer matches its recorded checksum: expected 14 bytes"),
            "{message}"
        );
        assert!(!changed.dest.unwrap().exists());

        // Missing: the store's error, and nothing left.
        let missing = spec(&dir, "db/none.dump", b"x");
        let mut run = FetchRun::start(missing.clone()).unwrap();
        let JobResult::Fetched { ok: false, message } = poll_until_done(&mut run) else {
            panic!("a missing object was fetched");
        };
        assert!(
            message.starts_with("cannot read db/none.dump from storage \"nfs\": "),
            "{message}"
        );
        assert!(!missing.dest.unwrap().exists());
    }
}
