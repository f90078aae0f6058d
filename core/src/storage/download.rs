//! Streaming an object into a writer (typically a child's stdin) on a
//! signal-free thread, hashing what was written.

use super::error::{Failure, StorageError};
use super::Downloaded;
use crate::process::stream::spawn_signal_free;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Chunks waiting for the writer; object_store's chunks are small (tens of
/// KiB), so this bounds memory to well under a few MiB.
const QUEUE: usize = 16;

/// Writes and hashes; counts bytes into `progress`.
struct HashingSink<W: Write> {
    sink: W,
    hasher: Sha256,
    size: u64,
    progress: Arc<AtomicU64>,
}

impl<W: Write> HashingSink<W> {
    fn new(sink: W, progress: Arc<AtomicU64>) -> Self {
        HashingSink {
            sink,
            hasher: Sha256::new(),
            size: 0,
            progress,
        }
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.sink.write_all(data)?;
        self.hasher.update(data);
        self.size += data.len() as u64;
        self.progress.store(self.size, Ordering::Relaxed);
        Ok(())
    }

    /// Flushes and closes the sink (a pipe's reader then sees end of file).
    fn finish(mut self) -> io::Result<Downloaded> {
        self.sink.flush()?;
        drop(self.sink);
        Ok(Downloaded {
            size: self.size,
            sha256: hex::encode(self.hasher.finalize()),
        })
    }
}

pub(crate) fn sink_error(e: &io::Error, what: &str) -> StorageError {
    let failure = if e.kind() == io::ErrorKind::BrokenPipe {
        Failure::SinkClosed
    } else {
        Failure::SinkFailed
    };
    StorageError::new(
        failure,
        format!("{what} failed: writing the data failed: {e}"),
        super::error::hint(failure),
    )
}

fn thread_failed(what: &str) -> StorageError {
    StorageError::new(
        Failure::External,
        format!("{what} failed: the writer thread could not be started or stopped early"),
        "The server may be out of memory or threads; retry later.",
    )
}

/// Sends `stream` (of `expected` bytes) into `sink` through a writer thread.
pub(crate) async fn stream_into<S>(
    stream: S,
    expected: u64,
    sink: impl Write + Send + 'static,
    progress: Arc<AtomicU64>,
    what: &str,
) -> Result<Downloaded, StorageError>
where
    S: Stream<Item = Result<Bytes, StorageError>>,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(QUEUE);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    spawn_signal_free("backup_ext download writer", move || {
        let mut out = HashingSink::new(sink, progress);
        let result = loop {
            match rx.blocking_recv() {
                Some(chunk) => {
                    if let Err(e) = out.write(&chunk) {
                        break Err(e);
                    }
                }
                None => break out.finish(),
            }
        };
        let _ = done_tx.send(result);
    })
    .map_err(|_| thread_failed(what))?;

    let mut stream = std::pin::pin!(stream);
    let mut received: u64 = 0;
    while let Some(chunk) = stream.next().await {
        // On an error the writer stops after its current chunk (tx dropped).
        let chunk = chunk?;
        received += chunk.len() as u64;
        if tx.send(chunk).await.is_err() {
            // The writer failed; its error says why.
            break;
        }
    }
    drop(tx);
    let written = done_rx
        .await
        .map_err(|_| thread_failed(what))?
        .map_err(|e| sink_error(&e, what))?;
    if received != expected {
        return Err(StorageError::new(
            Failure::External,
            format!("{what} failed: the object has {expected} bytes but {received} arrived"),
            super::error::hint(Failure::External),
        ));
    }
    Ok(written)
}

/// Copies a local reader into `sink` on a signal-free thread and waits.
pub(crate) fn copy_into(
    mut source: impl Read + Send + 'static,
    sink: impl Write + Send + 'static,
    progress: Arc<AtomicU64>,
    what: &str,
) -> Result<Downloaded, StorageError> {
    let what_owned = what.to_string();
    let handle = spawn_signal_free("backup_ext file download", move || {
        let mut out = HashingSink::new(sink, progress);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match source.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StorageError::from_io(&e, &what_owned)),
            };
            out.write(&buf[..n])
                .map_err(|e| sink_error(&e, &what_owned))?;
        }
        out.finish().map_err(|e| sink_error(&e, &what_owned))
    })
    .map_err(|_| thread_failed(what))?;
    handle.join().map_err(|_| thread_failed(what))?
}
