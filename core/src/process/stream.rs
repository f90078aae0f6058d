//! Copying a child's stdout into the backup file while hashing it.
//!
//! The copy runs on a plain std thread so the calling thread stays free to
//! poll for cancellation and report progress. The thread only uses std and
//! never calls back into the caller, which matters when the caller is a
//! PostgreSQL process whose own APIs are not thread safe.

use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

const BUFFER_SIZE: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamOutcome {
    pub size: u64,
    /// Lower-case hex SHA-256 of the bytes written.
    pub sha256: String,
}

pub struct StreamWriter {
    handle: JoinHandle<io::Result<StreamOutcome>>,
}

/// Blocks every signal in the calling thread. Signals sent to the process
/// are then delivered to a thread that has them unblocked, i.e. the main
/// thread, whose handlers (PostgreSQL's, for a background worker) expect to
/// run there and not on a helper thread.
fn block_all_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data that sigfillset/pthread_sigmask
    // initialise; both calls only fail on invalid arguments, which these
    // are not.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        old
    }
}

fn restore_signal_mask(old: &libc::sigset_t) {
    // SAFETY: `old` was filled in by pthread_sigmask.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut());
    }
}

/// Starts a helper thread that never has a signal delivered to it (see
/// [`block_all_signals`]). The new thread inherits the mask, so it never
/// runs with signals deliverable, not even before its first instruction.
pub(crate) fn spawn_signal_free<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<JoinHandle<T>> {
    let old = block_all_signals();
    let spawned = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            block_all_signals();
            f()
        });
    restore_signal_mask(&old);
    spawned
}

fn copy_and_hash(
    mut reader: impl Read,
    mut file: File,
    progress: &AtomicU64,
) -> io::Result<StreamOutcome> {
    let mut buf = vec![0u8; BUFFER_SIZE];
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = &buf[..n];
        file.write_all(chunk)?;
        hasher.update(chunk);
        size += n as u64;
        progress.store(size, Ordering::Relaxed);
    }
    // A backup is only reported as written once it is durable.
    file.sync_all()?;
    Ok(StreamOutcome {
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

impl StreamWriter {
    /// Creates `partial_path` (it must not exist; mode 0600 because dumps
    /// contain all the data of the database) and starts copying `reader`
    /// into it.
    pub fn spawn(
        reader: impl Read + Send + 'static,
        partial_path: &Path,
        progress: Arc<AtomicU64>,
    ) -> io::Result<StreamWriter> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(partial_path)?;
        Self::spawn_into(reader, file, progress)
    }

    /// Starts copying `reader` into an already open `file` (tests use /dev/full).
    pub(crate) fn spawn_into(
        reader: impl Read + Send + 'static,
        file: File,
        progress: Arc<AtomicU64>,
    ) -> io::Result<StreamWriter> {
        let handle = spawn_signal_free("backup_ext stream", move || {
            copy_and_hash(reader, file, &progress)
        })?;
        Ok(StreamWriter { handle })
    }

    /// Waits until the reader reaches end of file (the child closed its
    /// stdout) and returns the size and hash of the fsynced file.
    pub fn join(self) -> io::Result<StreamOutcome> {
        self.handle
            .join()
            .map_err(|_| io::Error::other("the backup stream thread panicked"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::publish::hash_file;
    use crate::test_support::TempDir;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    const SHA_ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    const SHA_EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn copies_and_hashes() {
        let dir = TempDir::new("stream");
        let partial = dir.path().join("x.dump.partial");
        let progress = Arc::new(AtomicU64::new(0));
        let w = StreamWriter::spawn(&b"abc"[..], &partial, progress.clone()).unwrap();
        let out = w.join().unwrap();
        assert_eq!(out.size, 3);
        assert_eq!(out.sha256, SHA_ABC);
        assert_eq!(progress.load(Ordering::Relaxed), 3);
        assert_eq!(fs::read(&partial).unwrap(), b"abc");
        let mode = fs::metadata(&partial).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn empty_and_large_input() {
        let dir = TempDir::new("stream");
        let p = dir.path().join("empty");
        let out = StreamWriter::spawn(io::empty(), &p, Arc::default())
            .unwrap()
            .join()
            .unwrap();
        assert_eq!((out.size, out.sha256.as_str()), (0, SHA_EMPTY));

        let data: Vec<u8> = (0..(3 * BUFFER_SIZE + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        let expected = hex::encode(Sha256::digest(&data));
        let on_disk = dir.path().join("hashed");
        std::fs::write(&on_disk, &data).unwrap();
        assert_eq!(
            hash_file(&on_disk).unwrap(),
            (data.len() as u64, expected.clone())
        );
        let p = dir.path().join("large");
        let progress = Arc::new(AtomicU64::new(0));
        let out = StreamWriter::spawn(io::Cursor::new(data.clone()), &p, progress.clone())
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(out.size, data.len() as u64);
        assert_eq!(out.sha256, expected);
        assert_eq!(progress.load(Ordering::Relaxed), data.len() as u64);
        assert_eq!(fs::read(&p).unwrap(), data);
    }

    #[test]
    fn refuses_existing_file() {
        let dir = TempDir::new("stream");
        let p = dir.path().join("exists");
        fs::write(&p, b"keep").unwrap();
        let err = StreamWriter::spawn(&b"abc"[..], &p, Arc::default())
            .err()
            .unwrap();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&p).unwrap(), b"keep");
    }

    struct FailingReader;
    impl Read for FailingReader {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("boom"))
        }
    }

    #[test]
    fn reader_errors_are_returned() {
        let dir = TempDir::new("stream");
        let p = dir.path().join("f");
        let err = StreamWriter::spawn(FailingReader, &p, Arc::default())
            .unwrap()
            .join()
            .unwrap_err();
        assert_eq!(err.to_string(), "boom");
    }

    #[test]
    fn a_full_disk_is_returned_as_enospc() {
        let full = OpenOptions::new().write(true).open("/dev/full").unwrap();
        let err = StreamWriter::spawn_into(&b"abc"[..], full, Arc::default())
            .unwrap()
            .join()
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    }
}
