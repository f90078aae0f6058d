//! Off-host storage targets for backups: S3 (and S3-compatible services) and
//! local directories (`file://`), behind one blocking API.
//!
//! # Threads
//! The caller may be a PostgreSQL background worker, whose thread must never
//! host an async runtime nor receive a signal meant for the server. So every
//! S3 operation runs on a freshly spawned thread that starts with all
//! signals blocked ([`crate::process::stream::spawn_signal_free`]), builds a
//! current-thread tokio runtime and an S3 client there, does its work, drops
//! both, and is joined. Threads created from there (tokio's blocking pool for
//! name lookups, the reader of an upload, the writer of a download) inherit
//! the blocked mask. The caller's thread only waits.
//!
//! # Uploads
//! [`Store::upload`] streams a reader into the store but does not publish
//! anything: it returns a [`PendingUpload`] that the caller completes once it
//! knows the data is whole (e.g. the dump tool exited 0), or aborts. End of
//! file alone proves nothing: a killed child closes its pipe too.

pub(crate) mod background;
pub mod copy;
pub mod credentials;
mod download;
pub mod error;
mod etag;
pub mod fetch;
mod file;
pub mod options;
mod s3;
pub mod tree;
mod upload;
pub mod url;

pub use credentials::{Credentials, CREDENTIALS_FILE_SETTING};
pub use error::{Failure, StorageError};
pub use file::FileStore;
pub use options::{S3Options, StorageOptions, ALLOW_HTTP_SETTING};
pub use s3::S3Store;
pub use upload::PendingUpload;
pub use url::StorageUrl;

use crate::error::RequestError;
use std::future::Future;
use std::io::{Read, Write};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// At most this many parts of one upload are sent at the same time; with the
/// part being read, an upload holds at most `MAX_PARTS_IN_FLIGHT + 1` parts in
/// memory.
pub const MAX_PARTS_IN_FLIGHT: usize = 3;

/// The largest object [`Store::get_bytes`] reads into memory.
pub const MAX_GET_BYTES: u64 = 64 * 1024 * 1024;

/// Set to the upload's id as soon as the store has one (an S3 multipart upload is created with
/// the first full part), so that a caller can record it for recovery while the data flows.
pub type UploadStarted = Arc<std::sync::OnceLock<String>>;

/// An object in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Relative to the store's prefix (S3) or root directory (file).
    pub key: String,
    pub size: u64,
    /// As the service reports it, without quotes; `None` for file storage.
    pub etag: Option<String>,
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

/// What a download wrote into its sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    pub size: u64,
    /// Lower-case hex SHA-256 of the bytes written.
    pub sha256: String,
}

/// A storage target: the same operations whatever is behind it.
#[derive(Debug, Clone)]
pub enum Store {
    File(FileStore),
    S3(S3Store),
}

impl Store {
    /// Builds the store for `url`. `options` must have been validated for the
    /// same URL. `credentials` are used for S3 only; `None` sends unsigned
    /// (anonymous) requests.
    pub fn new(
        url: &StorageUrl,
        options: &StorageOptions,
        credentials: Option<Credentials>,
    ) -> Result<Store, RequestError> {
        match (url, options) {
            (StorageUrl::File { root }, StorageOptions::File) => {
                Ok(Store::File(FileStore::new(root.clone())))
            }
            (StorageUrl::S3 { bucket, prefix }, StorageOptions::S3(o)) => Ok(Store::S3(
                S3Store::new(bucket, prefix, o.clone(), credentials)?,
            )),
            _ => Err(RequestError::invalid(
                format!("the storage options do not belong to {url}"),
                "Validate the options with StorageOptions::from_json for this URL.",
            )),
        }
    }

    pub fn url(&self) -> StorageUrl {
        match self {
            Store::File(s) => s.url(),
            Store::S3(s) => s.url(),
        }
    }

    /// Proves cheaply that the target is usable: for S3 an authenticated
    /// listing of (at most one key of) the prefix, so wrong credentials,
    /// anonymous access and a missing bucket all fail; for a directory, that
    /// it exists (it is created, mode 0700, if missing) and is writable.
    pub fn check(&self) -> Result<(), StorageError> {
        match self {
            Store::File(s) => s.check(),
            Store::S3(s) => s.check(),
        }
    }

    /// Streams `source` into the store under `key` without publishing it; see
    /// [`PendingUpload`]. `progress` is set to the number of bytes read from
    /// `source` so far. The data is read on a separate thread, so a blocking
    /// reader such as a child's stdout is fine. On S3, parts of `part_size`
    /// bytes are uploaded while the next ones are read, at most
    /// [`MAX_PARTS_IN_FLIGHT`] at a time; data that fits in one part is held in
    /// memory and sent by [`PendingUpload::complete`] with a single PUT. Any
    /// error aborts what was uploaded before it is returned.
    ///
    /// When a part fails, the call returns without waiting for `source` to be
    /// read to its end: the reading thread stops at its next read, so a
    /// reader that blocks forever (a child that neither writes nor exits)
    /// keeps it alive until the caller ends that child.
    pub fn upload(
        &self,
        key: &str,
        source: impl Read + Send + 'static,
        progress: Arc<AtomicU64>,
        started: UploadStarted,
    ) -> Result<PendingUpload, StorageError> {
        match self {
            Store::File(s) => s.upload(key, source, progress, started),
            Store::S3(s) => s.upload(key, source, progress, started, None),
        }
    }

    /// Aborts an upload left behind by a crash, given the id recorded from
    /// [`PendingUpload::upload_id`]. An upload that is already gone is fine.
    pub fn abort_upload(&self, key: &str, upload_id: &str) -> Result<(), StorageError> {
        match self {
            Store::File(s) => s.abort_upload(key, upload_id),
            Store::S3(s) => s.abort_upload(key, upload_id),
        }
    }

    /// Stores a small object (e.g. a JSON sidecar) in one request.
    pub fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        match self {
            Store::File(s) => s.put_bytes(key, &bytes),
            Store::S3(s) => s.put_bytes(key, bytes),
        }
    }

    /// Reads a small object (at most [`MAX_GET_BYTES`]) into memory.
    pub fn get_bytes(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        match self {
            Store::File(s) => s.get_bytes(key),
            Store::S3(s) => s.get_bytes(key),
        }
    }

    /// Streams the object into `sink` (e.g. a child's stdin) without holding
    /// it in memory, then flushes the sink. `progress` is set to the number of
    /// bytes written so far. A sink closed by its reader is reported as
    /// [`Failure::SinkClosed`].
    pub fn download(
        &self,
        key: &str,
        sink: impl Write + Send + 'static,
        progress: Arc<AtomicU64>,
    ) -> Result<Downloaded, StorageError> {
        match self {
            Store::File(s) => s.download(key, sink, progress),
            Store::S3(s) => s.download(key, sink, progress),
        }
    }

    /// The object's size, ETag and time, or `None` if there is no such key.
    pub fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        match self {
            Store::File(s) => s.head(key),
            Store::S3(s) => s.head(key),
        }
    }

    /// Deletes the object; a missing one is fine.
    pub fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self {
            Store::File(s) => s.delete(key),
            Store::S3(s) => s.delete(key),
        }
    }

    /// Deletes a backup: its sidecar, its object and, for a directory-format backup, every
    /// object under `<key>/`. What is missing is fine.
    pub fn delete_backup(&self, key: &str) -> Result<(), StorageError> {
        self.delete(&crate::files::sidecar::sidecar_key(key))?;
        self.delete(key)?;
        for object in self.list(&format!("{key}/"))? {
            self.delete(&object.key)?;
        }
        Ok(())
    }

    /// Every object below `prefix` (a folder such as `db/`; empty for all),
    /// with keys relative to the store, sorted. Unfinished uploads are not
    /// listed.
    pub fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        match self {
            Store::File(s) => s.list(prefix),
            Store::S3(s) => s.list(prefix),
        }
    }
}

/// Runs `f` on a new signal-free thread that owns a current-thread tokio
/// runtime, and waits for it.
pub(crate) fn on_io_thread<T: Send + 'static>(
    name: &str,
    f: impl FnOnce(&tokio::runtime::Runtime) -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    let handle = crate::process::stream::spawn_signal_free(name, move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| thread_error(&format!("starting an I/O runtime failed: {e}")))?;
        let result = f(&runtime);
        // Name lookups run on tokio's blocking pool; do not wait long for one.
        runtime.shutdown_timeout(Duration::from_secs(1));
        result
    })
    .map_err(|e| thread_error(&format!("starting a storage thread failed: {e}")))?;
    handle
        .join()
        .map_err(|_| thread_error("a storage thread panicked"))?
}

/// Runs the future `make()` builds on a new I/O thread (see [`on_io_thread`]).
pub(crate) fn run_async<T, F, Fut>(name: &str, make: F) -> Result<T, StorageError>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, StorageError>>,
{
    on_io_thread(name, move |runtime| runtime.block_on(make()))
}

fn thread_error(message: &str) -> StorageError {
    StorageError::new(
        Failure::External,
        message,
        "The server may be out of memory or threads; retry later.",
    )
}

#[cfg(test)]
mod tests;
