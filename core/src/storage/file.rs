//! A local (or mounted) directory as a storage target, with the same
//! semantics as S3: an upload is written to `<key>.partial` and only appears
//! under its key once completed (renamed, then the directory fsynced).

use super::download::copy_into;
use super::error::{Failure, StorageError};
use super::upload::{Pending, PendingUpload};
use super::url::{check_key, check_list_prefix, StorageUrl};
use super::{Downloaded, ObjectInfo, MAX_GET_BYTES};
use crate::error::quoted;
use crate::files::paths::create_private_dir;
use crate::process::stream::spawn_signal_free;
use md5::Md5;
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const PARTIAL: &str = ".partial";

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStore {
    root: PathBuf,
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn mtime(meta: &fs::Metadata) -> chrono::DateTime<chrono::Utc> {
    meta.modified()
        .map(chrono::DateTime::<chrono::Utc>::from)
        .unwrap_or_default()
}

impl FileStore {
    pub fn new(root: PathBuf) -> FileStore {
        FileStore { root }
    }

    pub fn url(&self) -> StorageUrl {
        StorageUrl::File {
            root: self.root.clone(),
        }
    }

    fn describe(&self, verb: &str, key: &str) -> String {
        format!("{verb} {} in {}", quoted(key), self.url())
    }

    /// A key for writing: checked, and not one the store uses for its own
    /// unfinished files.
    fn write_target(&self, key: &str) -> Result<PathBuf, StorageError> {
        check_key(key)?;
        if key.ends_with(PARTIAL) {
            return Err(StorageError::new(
                Failure::Invalid,
                format!("object key {} ends with {PARTIAL}", quoted(key)),
                "File storage keeps unfinished uploads under that suffix; choose another name.",
            ));
        }
        let path = self.root.join(key);
        if let Some(parent) = path.parent() {
            create_private_dir(parent).map_err(|e| {
                StorageError::from_io(&e, &self.describe("creating the folder of", key))
            })?;
        }
        Ok(path)
    }

    fn partial_of(path: &Path) -> PathBuf {
        let mut name = path.as_os_str().to_os_string();
        name.push(PARTIAL);
        PathBuf::from(name)
    }

    pub fn check(&self) -> Result<(), StorageError> {
        let what = format!("checking {}", self.url());
        if fs::metadata(&self.root).is_ok_and(|m| !m.is_dir()) {
            return Err(StorageError::new(
                Failure::External,
                format!("{what} failed: {} is not a directory", self.root.display()),
                "Point the storage URL at a directory, or remove what is in the way.",
            ));
        }
        create_private_dir(&self.root).map_err(|e| StorageError::from_io(&e, &what))?;
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let probe = self.root.join(format!(
            ".backup_ext-check-{}-{n}{PARTIAL}",
            std::process::id()
        ));
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&probe)
            .map_err(|e| StorageError::from_io(&e, &what))?;
        fs::remove_file(&probe).map_err(|e| StorageError::from_io(&e, &what))
    }

    pub fn upload(
        &self,
        key: &str,
        mut source: impl Read + Send + 'static,
        progress: Arc<AtomicU64>,
        started: super::UploadStarted,
    ) -> Result<PendingUpload, StorageError> {
        let path = self.write_target(key)?;
        let partial = Self::partial_of(&path);
        let _ = started.set(partial.to_string_lossy().into_owned());
        let what = self.describe("uploading", key);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)
            .map_err(|e| StorageError::from_io(&e, &what))?;
        let what_thread = what.clone();
        let handle = spawn_signal_free("backup_ext file upload", move || {
            let mut buf = vec![0u8; 256 * 1024];
            let mut sha = Sha256::new();
            let mut md5 = Md5::new();
            let mut size: u64 = 0;
            loop {
                let n = match source.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(StorageError::new(
                            Failure::SourceFailed,
                            format!("{what_thread} failed: reading the data failed: {e}"),
                            super::error::hint(Failure::SourceFailed),
                        ))
                    }
                };
                file.write_all(&buf[..n])
                    .map_err(|e| StorageError::from_io(&e, &what_thread))?;
                sha.update(&buf[..n]);
                md5.update(&buf[..n]);
                size += n as u64;
                progress.store(size, Ordering::Relaxed);
            }
            file.sync_all()
                .map_err(|e| StorageError::from_io(&e, &what_thread))?;
            Ok((
                size,
                hex::encode(sha.finalize()),
                hex::encode(md5.finalize()),
            ))
        })
        .map_err(|e| StorageError::from_io(&e, &what))?;
        let result = handle.join().unwrap_or_else(|_| {
            Err(StorageError::new(
                Failure::External,
                format!("{what} failed: the copying thread panicked"),
                super::error::hint(Failure::External),
            ))
        });
        match result {
            Ok((size, sha256, md5)) => Ok(PendingUpload {
                url: self.url(),
                key: key.to_string(),
                size,
                sha256,
                expected_etag: md5,
                state: Pending::File {
                    partial,
                    id: format!("{key}{PARTIAL}"),
                },
            }),
            Err(e) => {
                let _ = fs::remove_file(&partial);
                Err(e)
            }
        }
    }

    pub(crate) fn complete(&self, pending: &PendingUpload) -> Result<(), StorageError> {
        let Pending::File { partial, .. } = &pending.state else {
            return Err(StorageError::new(
                Failure::Invalid,
                format!(
                    "the upload of {} is not a file upload",
                    quoted(&pending.key)
                ),
                "Complete an upload with the store it was started on.",
            ));
        };
        let path = self.root.join(&pending.key);
        let what = self.describe("completing the upload of", &pending.key);
        fs::rename(partial, &path).map_err(|e| StorageError::from_io(&e, &what))?;
        sync_dir(path.parent().unwrap_or(&self.root)).map_err(|e| StorageError::from_io(&e, &what))
    }

    /// Removes `<key>.partial`; the id (that file's name) is not needed.
    pub fn abort_upload(&self, key: &str, _upload_id: &str) -> Result<(), StorageError> {
        check_key(key)?;
        let partial = Self::partial_of(&self.root.join(key));
        match fs::remove_file(&partial) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::from_io(
                &e,
                &self.describe("aborting the upload of", key),
            )),
        }
    }

    pub fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let path = self.write_target(key)?;
        let what = self.describe("writing", key);
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut temp = path.as_os_str().to_os_string();
        temp.push(format!(".{}-{n}{PARTIAL}", std::process::id()));
        let temp = PathBuf::from(temp);
        let write = || -> io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            fs::rename(&temp, &path)?;
            sync_dir(path.parent().unwrap_or(&self.root))
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&temp);
            StorageError::from_io(&e, &what)
        })
    }

    pub fn get_bytes(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        check_key(key)?;
        let what = self.describe("reading", key);
        let path = self.root.join(key);
        let meta = fs::metadata(&path).map_err(|e| StorageError::from_io(&e, &what))?;
        if meta.len() > MAX_GET_BYTES {
            return Err(super::s3::too_large(&what, meta.len()));
        }
        fs::read(&path).map_err(|e| StorageError::from_io(&e, &what))
    }

    pub fn download(
        &self,
        key: &str,
        sink: impl Write + Send + 'static,
        progress: Arc<AtomicU64>,
    ) -> Result<Downloaded, StorageError> {
        check_key(key)?;
        let what = self.describe("downloading", key);
        let file = File::open(self.root.join(key)).map_err(|e| StorageError::from_io(&e, &what))?;
        copy_into(file, sink, progress, &what)
    }

    pub fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        check_key(key)?;
        match fs::metadata(self.root.join(key)) {
            Ok(meta) if meta.is_file() => Ok(Some(ObjectInfo {
                key: key.to_string(),
                size: meta.len(),
                etag: None,
                last_modified: mtime(&meta),
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Ok(None),
            Err(e) => Err(StorageError::from_io(&e, &self.describe("looking up", key))),
        }
    }

    pub fn delete(&self, key: &str) -> Result<(), StorageError> {
        check_key(key)?;
        let path = self.root.join(key);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(path.parent().unwrap_or(&self.root))
                .map_err(|e| StorageError::from_io(&e, &self.describe("deleting", key))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::from_io(&e, &self.describe("deleting", key))),
        }
    }

    pub fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let prefix = check_list_prefix(prefix)?;
        let what = format!("listing {}", self.url());
        let start = if prefix.is_empty() {
            self.root.clone()
        } else {
            self.root.join(prefix)
        };
        let mut infos = Vec::new();
        let mut dirs = vec![start];
        while let Some(dir) = dirs.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => continue,
                Err(e) => return Err(StorageError::from_io(&e, &what)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| StorageError::from_io(&e, &what))?;
                let path = entry.path();
                let meta = match fs::symlink_metadata(&path) {
                    Ok(meta) => meta,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(StorageError::from_io(&e, &what)),
                };
                if meta.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let Some(key) = path
                    .strip_prefix(&self.root)
                    .ok()
                    .and_then(|p| p.to_str())
                    .map(str::to_string)
                else {
                    continue;
                };
                if !meta.is_file() || key.ends_with(PARTIAL) {
                    continue;
                }
                infos.push(ObjectInfo {
                    key,
                    size: meta.len(),
                    etag: None,
                    last_modified: mtime(&meta),
                });
            }
        }
        infos.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(infos)
    }
}
