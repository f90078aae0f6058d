//! The S3 target, through object_store's `AmazonS3`. The client is built on
//! the I/O thread of each operation (see [`super::on_io_thread`]) and dropped
//! with its runtime, so no connection outlives the runtime that drives it.

use super::credentials::Credentials;
use super::error::{Failure, StorageError};
use super::options::S3Options;
use super::upload::{self, PartGauge, PendingUpload};
use super::url::{check_key, check_list_prefix, StorageUrl};
use super::{download, run_async, Downloaded, ObjectInfo, MAX_GET_BYTES};
use crate::error::{quoted, RequestError};
use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, BackoffConfig, ClientOptions, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMode, PutOptions, PutPayload, RetryConfig,
};
use std::fmt;
use std::io::{Read, Write};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// For requests without a large body, and the longest a response may stall.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const MAX_RETRIES: usize = 3;
pub(crate) const RETRY_TIMEOUT: Duration = Duration::from_secs(30);
/// A part upload may take [`REQUEST_TIMEOUT`] plus one second per this many
/// bytes, so large parts on a slow link are not cut off.
const SLOWEST_BYTES_PER_SECOND: u64 = 1024 * 1024;

/// Which time limits a client gets.
#[derive(Clone, Copy)]
pub(crate) enum Limits {
    /// Whole requests within [`REQUEST_TIMEOUT`].
    Requests,
    /// Part uploads of up to `part_size` bytes.
    Parts,
    /// A download of any length: only stalls are limited.
    Stream,
}

#[derive(Clone)]
pub struct S3Store {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) bucket: String,
    pub(crate) prefix: String,
    pub(crate) options: S3Options,
    credentials: Option<Credentials>,
    /// Signed requests never show these, but error texts are scrubbed of them.
    secrets: Vec<String>,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("url", &self.url().to_string())
            .field("options", &self.inner.options)
            .field("credentials", &self.inner.credentials)
            .finish()
    }
}

impl S3Store {
    pub fn new(
        bucket: &str,
        prefix: &str,
        options: S3Options,
        credentials: Option<Credentials>,
    ) -> Result<S3Store, RequestError> {
        let url = StorageUrl::parse(&format!("s3://{bucket}/{prefix}"))?;
        let StorageUrl::S3 { bucket, prefix } = url else {
            unreachable!("an s3:// URL parses as S3")
        };
        let secrets = credentials
            .as_ref()
            .map(Credentials::secrets)
            .unwrap_or_default();
        let inner = Inner {
            bucket,
            prefix,
            options,
            credentials,
            secrets,
        };
        // Surface configuration errors now rather than at the first request
        // (the client itself is only ever built on an I/O thread).
        if let Some(endpoint) = &inner.options.endpoint {
            inner.bucket_endpoint(endpoint)?;
        }
        Ok(S3Store {
            inner: Arc::new(inner),
        })
    }

    pub fn url(&self) -> StorageUrl {
        StorageUrl::S3 {
            bucket: self.inner.bucket.clone(),
            prefix: self.inner.prefix.clone(),
        }
    }

    pub fn check(&self) -> Result<(), StorageError> {
        let inner = self.inner.clone();
        run_async("backup_ext s3 check", move || async move {
            let client = inner.client(Limits::Requests)?;
            let prefix = (!inner.prefix.is_empty()).then(|| format!("{}/", inner.prefix));
            let options = PaginatedListOptions {
                max_keys: Some(1),
                ..Default::default()
            };
            client
                .list_paginated(prefix.as_deref(), options)
                .await
                .map_err(|e| inner.error(&e, &format!("listing {}", inner.url())))?;
            Ok(())
        })
    }

    pub(crate) fn upload(
        &self,
        key: &str,
        source: impl Read + Send + 'static,
        progress: Arc<AtomicU64>,
        started: super::UploadStarted,
        gauge: Option<Arc<PartGauge>>,
    ) -> Result<PendingUpload, StorageError> {
        check_key(key)?;
        upload::upload_s3(self.inner.clone(), key, source, progress, started, gauge)
    }

    pub(crate) fn complete(&self, pending: &PendingUpload) -> Result<(), StorageError> {
        upload::complete_s3(self.inner.clone(), pending)
    }

    pub fn abort_upload(&self, key: &str, upload_id: &str) -> Result<(), StorageError> {
        check_key(key)?;
        let inner = self.inner.clone();
        let (key, upload_id) = (key.to_string(), upload_id.to_string());
        run_async("backup_ext s3 abort", move || async move {
            let client = inner.client(Limits::Requests)?;
            inner.abort(&client, &key, &upload_id).await
        })
    }

    pub fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        check_key(key)?;
        let inner = self.inner.clone();
        let key = key.to_string();
        run_async("backup_ext s3 put", move || async move {
            let client = inner.client(Limits::Requests)?;
            let mut attributes = Attributes::new();
            attributes.insert(Attribute::ContentType, content_type(&key).into());
            let options = PutOptions {
                mode: PutMode::Overwrite,
                attributes,
                ..Default::default()
            };
            client
                .put_opts(&inner.path(&key), PutPayload::from(bytes), options)
                .await
                .map_err(|e| inner.error(&e, &inner.describe("writing", &key)))?;
            Ok(())
        })
    }

    pub fn get_bytes(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        check_key(key)?;
        let inner = self.inner.clone();
        let key = key.to_string();
        run_async("backup_ext s3 get", move || async move {
            let client = inner.client(Limits::Requests)?;
            let what = inner.describe("reading", &key);
            let result = client
                .get(&inner.path(&key))
                .await
                .map_err(|e| inner.error(&e, &what))?;
            if result.meta.size > MAX_GET_BYTES {
                return Err(too_large(&what, result.meta.size));
            }
            let bytes = result.bytes().await.map_err(|e| inner.error(&e, &what))?;
            Ok(bytes.to_vec())
        })
    }

    pub fn download(
        &self,
        key: &str,
        sink: impl Write + Send + 'static,
        progress: Arc<AtomicU64>,
    ) -> Result<Downloaded, StorageError> {
        check_key(key)?;
        let inner = self.inner.clone();
        let key = key.to_string();
        run_async("backup_ext s3 download", move || async move {
            let client = inner.client(Limits::Stream)?;
            let what = inner.describe("downloading", &key);
            let result = client
                .get(&inner.path(&key))
                .await
                .map_err(|e| inner.error(&e, &what))?;
            let expected = result.meta.size;
            let stream = result.into_stream().map_err(|e| inner.error(&e, &what));
            download::stream_into(stream, expected, sink, progress, &what).await
        })
    }

    pub fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        check_key(key)?;
        let inner = self.inner.clone();
        let key = key.to_string();
        run_async("backup_ext s3 head", move || async move {
            let client = inner.client(Limits::Requests)?;
            match client.head(&inner.path(&key)).await {
                Ok(meta) => Ok(Some(inner.info(&meta, key))),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(inner.error(&e, &inner.describe("looking up", &key))),
            }
        })
    }

    pub fn delete(&self, key: &str) -> Result<(), StorageError> {
        check_key(key)?;
        let inner = self.inner.clone();
        let key = key.to_string();
        run_async("backup_ext s3 delete", move || async move {
            let client = inner.client(Limits::Requests)?;
            inner.delete(&client, &key).await
        })
    }

    pub fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let prefix = check_list_prefix(prefix)?.to_string();
        let inner = self.inner.clone();
        run_async("backup_ext s3 list", move || async move {
            let client = inner.client(Limits::Requests)?;
            let path = (!inner.join(&prefix).is_empty()).then(|| inner.path(&prefix));
            let what = format!("listing {}", inner.url_of(&prefix));
            let metas: Vec<ObjectMeta> = client
                .list(path.as_ref())
                .try_collect()
                .await
                .map_err(|e| inner.error(&e, &what))?;
            let mut infos: Vec<ObjectInfo> = metas
                .iter()
                .filter_map(|meta| {
                    let key = inner.relative(&meta.location)?;
                    Some(inner.info(meta, key))
                })
                .collect();
            infos.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(infos)
        })
    }
}

#[cfg(test)]
impl S3Store {
    /// A user-metadata value (`x-amz-meta-<name>`) of an object.
    pub(crate) fn user_metadata(
        &self,
        key: &str,
        name: &str,
    ) -> Result<Option<String>, StorageError> {
        let inner = self.inner.clone();
        let (key, name) = (key.to_string(), name.to_string());
        run_async("backup_ext s3 metadata", move || async move {
            let client = inner.client(Limits::Requests)?;
            let result = client
                .get(&inner.path(&key))
                .await
                .map_err(|e| inner.error(&e, "reading metadata"))?;
            Ok(result
                .attributes
                .get(&Attribute::Metadata(name.into()))
                .map(|v| v.to_string()))
        })
    }
}

fn content_type(key: &str) -> &'static str {
    if key.ends_with(".json") {
        "application/json"
    } else {
        "application/octet-stream"
    }
}

pub(crate) fn too_large(what: &str, size: u64) -> StorageError {
    StorageError::new(
        Failure::Invalid,
        format!("{what} failed: the object has {size} bytes, more than {MAX_GET_BYTES}"),
        "Read large objects with download(), which streams them.",
    )
}

impl Inner {
    fn url(&self) -> StorageUrl {
        StorageUrl::S3 {
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
        }
    }

    /// `s3://bucket/prefix/rest`.
    fn url_of(&self, rest: &str) -> String {
        let full = self.join(rest);
        if full.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{full}", self.bucket)
        }
    }

    /// E.g. `reading "k" from s3://bucket/prefix`.
    pub(crate) fn describe(&self, verb: &str, key: &str) -> String {
        let preposition = match verb {
            "writing" | "uploading" => "to",
            "downloading" | "reading" | "deleting" => "from",
            _ => "in",
        };
        format!("{verb} {} {preposition} {}", quoted(key), self.url())
    }

    fn join(&self, key: &str) -> String {
        match (self.prefix.is_empty(), key.is_empty()) {
            (true, _) => key.to_string(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{key}", self.prefix),
        }
    }

    /// The object_store path of a checked key (or list prefix), taken
    /// literally: keys follow the rules `Path::parse` enforces, so nothing
    /// is percent-encoded and listed keys read back the same.
    pub(crate) fn path(&self, key: &str) -> Path {
        let joined = self.join(key);
        Path::parse(&joined).unwrap_or_else(|_| Path::from_iter(joined.split('/')))
    }

    fn relative(&self, location: &Path) -> Option<String> {
        let full = location.as_ref();
        if self.prefix.is_empty() {
            return Some(full.to_string());
        }
        full.strip_prefix(&self.prefix)?
            .strip_prefix('/')
            .map(str::to_string)
    }

    fn info(&self, meta: &ObjectMeta, key: String) -> ObjectInfo {
        ObjectInfo {
            key,
            size: meta.size,
            etag: meta
                .e_tag
                .as_deref()
                .map(|e| e.trim_matches('"').to_string()),
            last_modified: meta.last_modified,
        }
    }

    pub(crate) fn error(&self, e: &object_store::Error, what: &str) -> StorageError {
        let mut error = StorageError::from_object_store(e, what, &self.secrets);
        if error.failure == Failure::Unreachable {
            let endpoint = match &self.options.endpoint {
                Some(endpoint) => endpoint.clone(),
                None => format!("AWS S3 in {}", self.options.region),
            };
            error.message.push_str(&format!(" (endpoint {endpoint})"));
        }
        error
    }

    pub(crate) fn part_size(&self) -> u64 {
        self.options.part_size
    }

    pub(crate) fn client(&self, limits: Limits) -> Result<AmazonS3, StorageError> {
        let o = &self.options;
        let mut client_options = ClientOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_read_timeout(REQUEST_TIMEOUT)
            .with_allow_http(o.allow_http);
        client_options = match limits {
            Limits::Requests => client_options.with_timeout(REQUEST_TIMEOUT),
            Limits::Parts => client_options.with_timeout(
                REQUEST_TIMEOUT + Duration::from_secs(o.part_size / SLOWEST_BYTES_PER_SECOND),
            ),
            Limits::Stream => client_options.with_timeout_disabled(),
        };
        let retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: MAX_RETRIES,
            retry_timeout: RETRY_TIMEOUT,
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&self.bucket)
            .with_region(&o.region)
            .with_client_options(client_options)
            .with_retry(retry)
            .with_virtual_hosted_style_request(!o.path_style);
        if let Some(endpoint) = &o.endpoint {
            builder = builder.with_endpoint(self.bucket_endpoint(endpoint)?);
        }
        builder = match &self.credentials {
            Some(c) => {
                let b = builder
                    .with_access_key_id(c.access_key_id())
                    .with_secret_access_key(c.secret_access_key());
                match c.session_token() {
                    Some(token) => b.with_token(token),
                    None => b,
                }
            }
            None => builder.with_skip_signature(true),
        };
        builder.build().map_err(|e| {
            StorageError::new(
                Failure::Invalid,
                format!(
                    "the S3 client for {} cannot be set up: {}",
                    self.url(),
                    e.to_string().replace(&self.bucket, "bucket")
                ),
                "Check the storage options (endpoint, region, path_style).",
            )
        })
    }

    /// object_store wants the bucket in the endpoint for virtual-hosted
    /// requests: `https://bucket.host`.
    fn bucket_endpoint(&self, endpoint: &str) -> Result<String, StorageError> {
        if self.options.path_style {
            return Ok(endpoint.to_string());
        }
        let mut parsed = url::Url::parse(endpoint).map_err(|e| {
            StorageError::new(
                Failure::Invalid,
                format!("storage endpoint {} is not a URL: {e}", quoted(endpoint)),
                "Validate the options with StorageOptions::from_json.",
            )
        })?;
        let host = match parsed.host() {
            Some(url::Host::Domain(host)) => host.to_string(),
            _ => {
                return Err(StorageError::new(
                    Failure::Invalid,
                    format!(
                        "storage endpoint {} is an IP address, which cannot carry the bucket \
                         name as virtual-hosted-style requests need",
                        quoted(endpoint)
                    ),
                    "Add \"path_style\": true to the storage options.",
                ))
            }
        };
        let with_bucket = format!("{}.{host}", self.bucket);
        parsed.set_host(Some(&with_bucket)).map_err(|e| {
            StorageError::new(
                Failure::Invalid,
                format!(
                    "storage endpoint {} cannot take the bucket name: {e}",
                    quoted(endpoint)
                ),
                "Add \"path_style\": true to the storage options.",
            )
        })?;
        Ok(parsed.as_str().trim_end_matches('/').to_string())
    }

    pub(crate) async fn abort(
        &self,
        client: &AmazonS3,
        key: &str,
        upload_id: &str,
    ) -> Result<(), StorageError> {
        match client
            .abort_multipart(&self.path(key), &upload_id.to_string())
            .await
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(&e, &self.describe("aborting the upload of", key))),
        }
    }

    pub(crate) async fn delete(&self, client: &AmazonS3, key: &str) -> Result<(), StorageError> {
        match client.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(&e, &self.describe("deleting", key))),
        }
    }
}
