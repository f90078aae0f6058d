//! Streaming a reader into a store without publishing it.
//!
//! For S3, a reader thread cuts the data into parts of `part_size` bytes,
//! hashing on the way (SHA-256 of everything, MD5 of each part), and hands
//! them to the I/O thread, which uploads up to [`MAX_PARTS_IN_FLIGHT`] of
//! them at once. The reader needs a token for each part it fills, and a token
//! comes back only when a part has been sent, so at most
//! `MAX_PARTS_IN_FLIGHT + 1` parts are in memory.
//!
//! Data that fits in one part never starts a multipart upload: the bytes are
//! kept in the [`PendingUpload`] and [`PendingUpload::complete`] stores them
//! with a single PUT, with the SHA-256 as object metadata (`x-amz-meta-sha256`).
//! A multipart upload cannot carry it, since metadata is fixed when the upload
//! is created, before the data is read: there the SHA-256 lives in the
//! backup's sidecar only.

use super::error::{Failure, StorageError};
use super::etag::{self, MultipartEtag};
use super::s3::{Inner, Limits};
use super::{on_io_thread, run_async, StorageUrl, Store, MAX_PARTS_IN_FLIGHT};
use crate::error::quoted;
use crate::process::stream::spawn_signal_free;
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use object_store::multipart::{MultipartStore, PartId};
use object_store::{
    Attribute, Attributes, ObjectStore, ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions,
    PutPayload,
};
use sha2::{Digest, Sha256};
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

/// S3 allows at most this many parts in one upload.
const MAX_PARTS: usize = 10_000;
/// How much the reader asks of its source at a time.
const READ_SIZE: usize = 256 * 1024;

/// An upload whose data is all in the store (or, if it fits in one part, in
/// memory: up to `part_size` bytes) but not yet visible under its key.
///
/// Dropping it without [`Self::complete`] or [`Self::abort`] leaves an S3
/// multipart upload (or a file store's partial file) behind, which takes
/// space until [`Store::abort_upload`] is called with the recorded
/// [`Self::upload_id`].
#[derive(Debug)]
pub struct PendingUpload {
    pub(crate) url: StorageUrl,
    pub(crate) key: String,
    pub(crate) size: u64,
    pub(crate) sha256: String,
    pub(crate) expected_etag: String,
    pub(crate) state: Pending,
}

pub(crate) enum Pending {
    /// Sent as parts; completing joins them.
    Multipart {
        upload_id: String,
        parts: Vec<PartId>,
    },
    /// Small enough for one PUT at completion.
    Single { data: Bytes },
    /// A file store's `<key>.partial`, renamed at completion; `id` is that
    /// name relative to the store's root.
    File { partial: PathBuf, id: String },
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pending::Multipart { upload_id, parts } => f
                .debug_struct("Multipart")
                .field("upload_id", upload_id)
                .field("parts", &parts.len())
                .finish(),
            Pending::Single { data } => f
                .debug_struct("Single")
                .field("bytes", &data.len())
                .finish(),
            Pending::File { partial, .. } => {
                f.debug_struct("File").field("partial", partial).finish()
            }
        }
    }
}

impl PendingUpload {
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What to record for crash recovery and pass to [`Store::abort_upload`]:
    /// the S3 multipart upload id, or for file storage the partial file
    /// (`<key>.partial`). `None` when nothing is stored yet (small data held in
    /// memory).
    pub fn upload_id(&self) -> Option<&str> {
        match &self.state {
            Pending::Multipart { upload_id, .. } => Some(upload_id),
            Pending::Single { .. } => None,
            Pending::File { id, .. } => Some(id),
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Lower-case hex SHA-256 of the data read.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The ETag S3 must report once completed: the MD5 of the data for a
    /// single PUT, `md5-of-part-md5s-N` for N parts. For file storage, the
    /// MD5 of the data.
    pub fn expected_etag(&self) -> &str {
        &self.expected_etag
    }

    /// Number of parts uploaded: 0 for data kept in memory and for file storage.
    pub fn parts(&self) -> usize {
        match &self.state {
            Pending::Multipart { parts, .. } => parts.len(),
            _ => 0,
        }
    }

    /// Publishes the object under its key. On S3 the ETag the service reports
    /// is compared with [`Self::expected_etag`]: on a mismatch the object is
    /// deleted and a [`Failure::Corrupted`] error returned.
    pub fn complete(&self, store: &Store) -> Result<(), StorageError> {
        self.check_store(store)?;
        match store {
            Store::S3(s) => s.complete(self),
            Store::File(f) => f.complete(self),
        }
    }

    /// Discards the upload; nothing is left in the store.
    pub fn abort(&self, store: &Store) -> Result<(), StorageError> {
        self.check_store(store)?;
        match self.upload_id() {
            Some(id) => store.abort_upload(&self.key, id),
            None => Ok(()),
        }
    }

    fn check_store(&self, store: &Store) -> Result<(), StorageError> {
        let url = store.url();
        if url == self.url {
            return Ok(());
        }
        Err(StorageError::new(
            Failure::Invalid,
            format!(
                "the upload of {} belongs to {}, not to {url}",
                quoted(&self.key),
                self.url
            ),
            "Complete or abort an upload with the store it was started on.",
        ))
    }
}

/// Counts parts being sent, remembering the most at once (for tests).
#[derive(Debug, Default)]
pub(crate) struct PartGauge {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl PartGauge {
    fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }

    #[cfg(test)]
    pub(crate) fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
}

/// What the reader thread hands to the uploader.
enum Chunk {
    Part {
        index: usize,
        data: Bytes,
        md5: [u8; 16],
        /// No data follows this part.
        last: bool,
    },
    /// The source reached end of file; follows the last part.
    End {
        size: u64,
        sha256: String,
    },
    Failed(io::Error),
}

type ChunkSender = tokio::sync::mpsc::UnboundedSender<Chunk>;

/// Reads `source` into parts, waiting for a token before filling each.
/// Returns quietly when the uploader has gone away.
fn read_parts(
    mut source: impl Read,
    part_size: usize,
    chunks: ChunkSender,
    tokens: mpsc::Receiver<()>,
    progress: &AtomicU64,
) {
    let mut buf = vec![0u8; READ_SIZE];
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut index = 0;
    let mut part: Option<Vec<u8>> = None;
    let send_part = |index: usize, data: Vec<u8>, last: bool| {
        let md5 = etag::md5(&data);
        let data = Bytes::from(data);
        chunks
            .send(Chunk::Part {
                index,
                data,
                md5,
                last,
            })
            .is_ok()
    };
    loop {
        let n = match source.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = chunks.send(Chunk::Failed(e));
                return;
            }
        };
        if n == 0 {
            if let Some(data) = part.take() {
                if !send_part(index, data, true) {
                    return;
                }
            }
            let sha256 = hex::encode(hasher.finalize());
            let _ = chunks.send(Chunk::End { size, sha256 });
            return;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
        progress.store(size, Ordering::Relaxed);
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            if part.as_ref().is_some_and(|p| p.len() == part_size) {
                // A full part with more data after it.
                if !send_part(index, part.take().unwrap_or_default(), false) {
                    return;
                }
                index += 1;
            }
            if part.is_none() {
                if tokens.recv().is_err() {
                    return;
                }
                part = Some(Vec::with_capacity(part_size));
            }
            if let Some(p) = part.as_mut() {
                let take = (part_size - p.len()).min(rest.len());
                p.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
            }
        }
    }
}

pub(crate) fn upload_s3(
    inner: Arc<Inner>,
    key: &str,
    source: impl Read + Send + 'static,
    progress: Arc<AtomicU64>,
    started: super::UploadStarted,
    gauge: Option<Arc<PartGauge>>,
) -> Result<PendingUpload, StorageError> {
    let key = key.to_string();
    let part_size = usize::try_from(inner.part_size()).unwrap_or(usize::MAX);
    on_io_thread("backup_ext s3 upload", move |runtime| {
        let (chunk_tx, chunk_rx) = tokio::sync::mpsc::unbounded_channel();
        let (token_tx, token_rx) = mpsc::channel();
        for _ in 0..=MAX_PARTS_IN_FLIGHT {
            let _ = token_tx.send(());
        }
        let reader = spawn_signal_free("backup_ext s3 upload reader", move || {
            read_parts(source, part_size, chunk_tx, token_rx, &progress)
        })
        .map_err(|e| {
            StorageError::new(
                Failure::External,
                format!("starting the upload reader thread failed: {e}"),
                "The server may be out of memory or threads; retry later.",
            )
        })?;
        let result = runtime.block_on(send_parts(&inner, &key, chunk_rx, token_tx, started, gauge));
        if result.is_ok() {
            // It has sent End and is returning.
            let _ = reader.join();
        }
        result
    })
}

async fn send_parts(
    inner: &Inner,
    key: &str,
    mut chunks: tokio::sync::mpsc::UnboundedReceiver<Chunk>,
    tokens: mpsc::Sender<()>,
    started: super::UploadStarted,
    gauge: Option<Arc<PartGauge>>,
) -> Result<PendingUpload, StorageError> {
    let client = Arc::new(inner.client(Limits::Parts)?);
    let path = inner.path(key);
    let what = inner.describe("uploading", key);
    let mut upload_id: Option<String> = None;
    let mut single: Option<Bytes> = None;
    let mut parts: Vec<Option<PartId>> = Vec::new();
    let mut etags = MultipartEtag::default();
    let mut part_bytes: u64 = 0;
    let mut in_flight = FuturesUnordered::new();
    let mut end: Option<(u64, String)> = None;

    let failure: StorageError = loop {
        tokio::select! {
            // Finished parts first: they return tokens and make room.
            biased;
            Some((index, result)) = in_flight.next(), if !in_flight.is_empty() => {
                let _ = tokens.send(());
                match result {
                    Ok(part) => parts[index] = Some(part),
                    Err(e) => break inner.error(&e, &format!("{what} (part {})", index + 1)),
                }
            }
            chunk = chunks.recv(), if end.is_none() && in_flight.len() < MAX_PARTS_IN_FLIGHT => {
                match chunk {
                    Some(Chunk::Part { index: 0, data, last: true, .. }) => single = Some(data),
                    Some(Chunk::Part { index, data, md5, .. }) => {
                        if index >= MAX_PARTS {
                            break StorageError::new(
                                Failure::Invalid,
                                format!(
                                    "{what} failed: the data needs more than {MAX_PARTS} parts \
                                     of {} bytes",
                                    inner.part_size()
                                ),
                                "Raise the \"part_size\" storage option (up to 512 MiB).",
                            );
                        }
                        let id = match &upload_id {
                            Some(id) => id.clone(),
                            None => match create(inner, &client, key).await {
                                Ok(id) => {
                                    upload_id = Some(id.clone());
                                    let _ = started.set(id.clone());
                                    id
                                }
                                Err(e) => break e,
                            },
                        };
                        etags.set(index, md5);
                        part_bytes += data.len() as u64;
                        if parts.len() <= index {
                            parts.resize(index + 1, None);
                        }
                        let (client, path, gauge) = (client.clone(), path.clone(), gauge.clone());
                        in_flight.push(async move {
                            if let Some(g) = &gauge {
                                g.enter();
                            }
                            let result = client
                                .put_part(&path, &id, index, PutPayload::from(data))
                                .await;
                            if let Some(g) = &gauge {
                                g.leave();
                            }
                            (index, result)
                        });
                    }
                    Some(Chunk::End { size, sha256 }) => end = Some((size, sha256)),
                    Some(Chunk::Failed(e)) => {
                        break StorageError::new(
                            Failure::SourceFailed,
                            format!("{what} failed: reading the data failed: {e}"),
                            super::error::hint(Failure::SourceFailed),
                        )
                    }
                    None => {
                        break StorageError::new(
                            Failure::External,
                            format!("{what} failed: the reader thread stopped early"),
                            super::error::hint(Failure::External),
                        )
                    }
                }
            }
            else => {
                // Everything read and every part sent.
                let Some((size, sha256)) = end.take() else {
                    break StorageError::new(
                        Failure::External,
                        format!("{what} failed: the upload ended without its data"),
                        super::error::hint(Failure::External),
                    );
                };
                let url = StorageUrl::S3 { bucket: inner.bucket.clone(), prefix: inner.prefix.clone() };
                let key = key.to_string();
                return match (upload_id, single) {
                    (Some(upload_id), None) => {
                        let parts: Vec<PartId> = parts.into_iter().flatten().collect();
                        if part_bytes != size {
                            let e = StorageError::new(
                                Failure::External,
                                format!("{what} failed: {part_bytes} bytes sent of {size} read"),
                                super::error::hint(Failure::External),
                            );
                            inner.abort(&client, &key, &upload_id).await?;
                            return Err(e);
                        }
                        Ok(PendingUpload {
                            url,
                            key,
                            size,
                            sha256,
                            expected_etag: etags.finish(),
                            state: Pending::Multipart { upload_id, parts },
                        })
                    }
                    (None, single) => {
                        let data = single.unwrap_or_default();
                        Ok(PendingUpload {
                            url,
                            key,
                            size,
                            sha256,
                            expected_etag: etag::single_etag(&data),
                            state: Pending::Single { data },
                        })
                    }
                    (Some(_), Some(_)) => unreachable!("a single part is never sent as a part"),
                };
            }
        }
    };
    // Stop sending, then remove what was sent; the reader stops at its next
    // channel operation.
    drop(in_flight);
    drop(chunks);
    if let Some(id) = upload_id {
        if let Err(abort_error) = inner.abort(&client, key, &id).await {
            return Err(StorageError::new(
                failure.failure,
                format!(
                    "{}; aborting the upload failed too ({}), so the upload id {} must be \
                     aborted later",
                    failure.message,
                    abort_error.message,
                    quoted(&id)
                ),
                failure.hint,
            ));
        }
    }
    Err(failure)
}

async fn create(
    inner: &Inner,
    client: &object_store::aws::AmazonS3,
    key: &str,
) -> Result<String, StorageError> {
    let mut attributes = Attributes::new();
    attributes.insert(Attribute::ContentType, "application/octet-stream".into());
    let options = PutMultipartOptions {
        attributes,
        ..Default::default()
    };
    client
        .create_multipart_opts(&inner.path(key), options)
        .await
        .map_err(|e| inner.error(&e, &inner.describe("starting the upload of", key)))
}

pub(crate) fn complete_s3(inner: Arc<Inner>, pending: &PendingUpload) -> Result<(), StorageError> {
    let key = pending.key.clone();
    let expected = pending.expected_etag.clone();
    let sha256 = pending.sha256.clone();
    let (multipart, data) = match &pending.state {
        Pending::Multipart { upload_id, parts } => (Some((upload_id.clone(), parts.clone())), None),
        Pending::Single { data } => (None, Some(data.clone())),
        Pending::File { .. } => {
            return Err(StorageError::new(
                Failure::Invalid,
                format!("the upload of {} is not an S3 upload", quoted(&pending.key)),
                "Complete an upload with the store it was started on.",
            ))
        }
    };
    run_async("backup_ext s3 complete", move || async move {
        let client = inner.client(Limits::Requests)?;
        let path = inner.path(&key);
        let what = inner.describe("completing the upload of", &key);
        let result = match (multipart, data) {
            (Some((upload_id, parts)), _) => client
                .complete_multipart(&path, &upload_id, parts)
                .await
                .map_err(|e| inner.error(&e, &what))?,
            (None, data) => {
                let mut attributes = Attributes::new();
                attributes.insert(Attribute::ContentType, "application/octet-stream".into());
                attributes.insert(Attribute::Metadata("sha256".into()), sha256.into());
                let options = PutOptions {
                    mode: PutMode::Overwrite,
                    attributes,
                    ..Default::default()
                };
                client
                    .put_opts(&path, PutPayload::from(data.unwrap_or_default()), options)
                    .await
                    .map_err(|e| inner.error(&e, &what))?
            }
        };
        let reported = match result.e_tag {
            Some(e) => e,
            None => client
                .head(&path)
                .await
                .map_err(|e| inner.error(&e, &what))?
                .e_tag
                .unwrap_or_default(),
        };
        if etag::normalise(&reported) == etag::normalise(&expected) {
            return Ok(());
        }
        let cleanup = inner.delete(&client, &key).await;
        let removed = match cleanup {
            Ok(()) => "it was deleted".to_string(),
            Err(e) => format!("deleting it failed too: {}", e.message),
        };
        Err(StorageError::new(
            Failure::Corrupted,
            format!(
                "{what} failed: the storage reports ETag {} where {} was expected; {removed}",
                quoted(&etag::normalise(&reported)),
                quoted(&expected)
            ),
            super::error::hint(Failure::Corrupted),
        ))
    })
}
