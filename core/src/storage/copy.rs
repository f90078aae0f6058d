//! Copying a finished backup to a further storage target, as a job step: the bytes stream from
//! the backup's file (or from its own storage target) into an upload to the other target, with
//! no full local copy, and the copy is completed only when its size and SHA-256 equal what was
//! recorded when the backup was written. The sidecar follows.

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::background::Background;

use super::{StorageError, Store, UploadStarted};
use crate::job::{JobResult, JobRun};
use crate::process::stream::spawn_signal_free;

/// Where the backup is read from.
#[derive(Debug, Clone)]
pub enum CopySource {
    /// Its file under backup_ext.directory.
    Local(PathBuf),
    /// An object in another storage target.
    Remote { store: Store, key: String },
}

#[derive(Debug, Clone)]
pub struct CopySpec {
    pub source: CopySource,
    pub dest: Store,
    /// For messages: the destination target's name.
    pub dest_storage: String,
    pub key: String,
    pub expected_size: u64,
    pub expected_sha256: String,
    /// The backup's sidecar, written next to the copy once it is complete.
    pub sidecar: Option<Vec<u8>>,
    pub started: UploadStarted,
}

/// A reader that fails once the copy is cancelled, which makes the upload abort itself.
pub(super) struct Cancellable<R> {
    pub(super) inner: R,
    pub(super) cancelled: Arc<AtomicBool>,
}

impl<R: Read> Read for Cancellable<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "cancelled"));
        }
        self.inner.read(buf)
    }
}

/// Runs the copy; `Err` is the job's message.
fn copy(
    spec: CopySpec,
    progress: Arc<AtomicU64>,
    cancelled: Arc<AtomicBool>,
) -> Result<(), String> {
    let to = |e: StorageError| format!("copy to storage \"{}\": {e}", spec.dest_storage);
    let (reader, download): (Box<dyn Read + Send>, Option<JoinHandle<_>>) = match &spec.source {
        CopySource::Local(path) => (
            Box::new(File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?),
            None,
        ),
        CopySource::Remote { store, key } => {
            let (pipe_reader, pipe_writer) =
                io::pipe().map_err(|e| format!("cannot create a pipe: {e}"))?;
            let (store, key) = (store.clone(), key.clone());
            let handle = spawn_signal_free("backup_ext-copy-source", move || {
                store.download(&key, pipe_writer, Arc::new(AtomicU64::new(0)))
            })
            .map_err(|e| format!("cannot start the download: {e}"))?;
            (Box::new(pipe_reader), Some(handle))
        }
    };
    let reader = Cancellable {
        inner: reader,
        cancelled,
    };
    let uploaded = spec
        .dest
        .upload(&spec.key, reader, progress, spec.started.clone());
    let downloaded = download.map(|h| {
        h.join().unwrap_or_else(|_| {
            Err(StorageError::new(
                super::Failure::External,
                "the download thread panicked",
                "See the server log.",
            ))
        })
    });
    let pending = uploaded.map_err(to)?;
    if let Some(Err(e)) = downloaded {
        let _ = pending.abort(&spec.dest);
        return Err(format!("cannot read the backup from its storage: {e}"));
    }
    if pending.size() != spec.expected_size || pending.sha256() != spec.expected_sha256 {
        let _ = pending.abort(&spec.dest);
        return Err(format!(
            "the backup no longer matches its recorded checksum: expected {} bytes with sha256 \
             {}, read {} bytes with sha256 {}",
            spec.expected_size,
            spec.expected_sha256,
            pending.size(),
            pending.sha256()
        ));
    }
    if let Err(e) = pending.complete(&spec.dest) {
        let _ = pending.abort(&spec.dest);
        return Err(to(e));
    }
    if let Some(sidecar) = &spec.sidecar {
        if let Err(e) = spec.dest.put_bytes(
            &crate::files::sidecar::sidecar_key(&spec.key),
            sidecar.clone(),
        ) {
            let _ = spec.dest.delete(&spec.key);
            return Err(to(e));
        }
    }
    Ok(())
}

/// A copy running on its own thread.
pub struct CopyRun {
    work: Background<()>,
    progress: Arc<AtomicU64>,
}

impl CopyRun {
    pub fn start(spec: CopySpec) -> io::Result<CopyRun> {
        let progress = Arc::new(AtomicU64::new(0));
        let p = progress.clone();
        let work = Background::spawn("backup_ext-copy", move |cancelled| copy(spec, p, cancelled))?;
        Ok(CopyRun { work, progress })
    }
}

impl JobRun for CopyRun {
    fn poll(&mut self) -> Option<JobResult> {
        let result = self.work.poll()?;
        Some(JobResult::Copied {
            ok: result.is_ok(),
            message: result.err().unwrap_or_default(),
        })
    }

    /// Stops reading; the upload then aborts itself. Blocks until the thread has cleaned up.
    fn cancel(&mut self) {
        self.work.cancel();
    }

    fn progress(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }
}

impl Drop for CopyRun {
    fn drop(&mut self) {
        self.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::fetch::tests::poll_until_done;
    use crate::storage::FileStore;
    use crate::test_support::TempDir;
    use sha2::{Digest, Sha256};
    use std::fs;

    fn spec(dir: &TempDir, recorded: &[u8]) -> CopySpec {
        let source = dir.path().join("b.dump");
        fs::write(&source, b"the backup").unwrap();
        CopySpec {
            source: CopySource::Local(source),
            dest: Store::File(FileStore::new(dir.path().join("vault"))),
            dest_storage: "vault".into(),
            key: "42/db/b.dump".into(),
            expected_size: recorded.len() as u64,
            expected_sha256: hex::encode(Sha256::digest(recorded)),
            sidecar: Some(b"{}".to_vec()),
            started: UploadStarted::default(),
        }
    }

    #[test]
    fn a_copy_is_completed_with_its_sidecar_only_when_it_matches() {
        let dir = TempDir::new("copy");
        let mut run = CopyRun::start(spec(&dir, b"the backup")).unwrap();
        assert_eq!(
            poll_until_done(&mut run),
            JobResult::Copied {
                ok: true,
                message: String::new()
            }
        );
        let vault = dir.path().join("vault/42/db");
        assert_eq!(fs::read(vault.join("b.dump")).unwrap(), b"the backup");
        assert_eq!(fs::read(vault.join("b.dump.json")).unwrap(), b"{}");

        fs::remove_dir_all(dir.path().join("vault")).unwrap();
        let mut run = CopyRun::start(spec(&dir, b"what was recorded")).unwrap();
        let JobResult::Copied { ok: false, message } = poll_until_done(&mut run) else {
            panic!("a changed backup was copied");
        };
        assert!(
            message.starts_with("the backup no longer matches its recorded checksum"),
            "{message}"
        );
        let left: Vec<_> = fs::read_dir(&vault)
            .map(|d| d.count())
            .into_iter()
            .collect();
        assert!(left.iter().all(|n| *n == 0), "{left:?}");
    }
}
