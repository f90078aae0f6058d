//! A directory-format backup in a storage target: pg_dump writes it into a local staging
//! directory, and once pg_dump has finished each file is uploaded, one at a time, as
//! `<key>/<file>`. Reading it back downloads every object under `<key>/` into a local
//! directory, which is then checked against the backup's manifest hash.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::background::Background;
use super::copy::Cancellable;
use super::{Downloaded, StorageError, Store, UploadStarted};
use crate::files::manifest::directory_manifest;
use crate::job::{JobResult, JobRun};

/// The key of the object under `key` for the file `name` (relative, `/`-separated).
pub fn tree_object_key(key: &str, name: &str) -> String {
    format!("{key}/{name}")
}

/// The file being uploaded and its upload's id once the store has one, for recording (a crash
/// leaves at most this one upload open).
pub type OpenUpload = Arc<Mutex<Option<(String, UploadStarted)>>>;

/// What to upload: the files of `root` (a finished directory dump), under `key`.
#[derive(Debug, Clone)]
pub struct TreeUploadSpec {
    pub store: Store,
    /// For messages: the target's name.
    pub storage: String,
    pub key: String,
    pub root: PathBuf,
    pub open: OpenUpload,
}

fn upload_all(
    spec: &TreeUploadSpec,
    progress: &Arc<AtomicU64>,
    cancelled: Arc<AtomicBool>,
) -> Result<(), String> {
    let manifest = directory_manifest(&spec.root)
        .map_err(|e| format!("cannot read {}: {e}", spec.root.display()))?;
    let mut done = 0u64;
    for entry in &manifest.files {
        let key = tree_object_key(&spec.key, &entry.name);
        let path = spec.root.join(&entry.name);
        let file = File::open(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let started = UploadStarted::default();
        if let Ok(mut open) = spec.open.lock() {
            *open = Some((key.clone(), started.clone()));
        }
        let file_progress = Arc::new(AtomicU64::new(0));
        let reader = Cancellable {
            inner: file,
            cancelled: cancelled.clone(),
        };
        let failed = |e: StorageError| format!("upload to storage \"{}\": {e}", spec.storage);
        let pending = spec
            .store
            .upload(&key, reader, file_progress.clone(), started)
            .map_err(failed)?;
        if let Err(e) = pending.complete(&spec.store) {
            let _ = pending.abort(&spec.store);
            return Err(failed(e));
        }
        done += file_progress.load(Ordering::Relaxed);
        progress.store(done, Ordering::Relaxed);
        if let Ok(mut open) = spec.open.lock() {
            *open = None;
        }
    }
    Ok(())
}

/// The upload of a staged directory dump, running on its own thread.
pub struct TreeUpload {
    work: Background<()>,
    progress: Arc<AtomicU64>,
}

impl TreeUpload {
    pub fn start(spec: TreeUploadSpec) -> io::Result<TreeUpload> {
        let progress = Arc::new(AtomicU64::new(0));
        let p = progress.clone();
        let work = Background::spawn("backup_ext-tree-upload", move |cancelled| {
            upload_all(&spec, &p, cancelled)
        })?;
        Ok(TreeUpload { work, progress })
    }
}

impl JobRun for TreeUpload {
    fn poll(&mut self) -> Option<JobResult> {
        let done = self.work.poll()?;
        Some(JobResult::Uploaded {
            ok: done.is_ok(),
            message: done.err().unwrap_or_default(),
        })
    }

    fn cancel(&mut self) {
        self.work.cancel();
    }

    fn progress(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }
}

/// Downloads every object under `<key>/` into `dest` (created new, mode 0700), counting bytes
/// into `progress`; returns the size and manifest hash of what arrived. Stops at the next
/// object once `cancelled` is set.
pub fn download_tree(
    store: &Store,
    key: &str,
    dest: &Path,
    progress: Arc<AtomicU64>,
    cancelled: &AtomicBool,
) -> Result<Downloaded, StorageError> {
    let local = |e: io::Error, what: &Path| {
        StorageError::new(
            super::Failure::SinkFailed,
            format!("cannot write {}: {e}", what.display()),
            "Check the free space and permissions of backup_ext.directory.",
        )
    };
    let prefix = format!("{key}/");
    let objects = store.list(&prefix)?;
    if objects.is_empty() {
        return Err(StorageError::new(
            super::Failure::NotFound,
            format!("no object under {prefix}"),
            super::error::hint(super::Failure::NotFound),
        ));
    }
    fs::DirBuilder::new()
        .mode(0o700)
        .create(dest)
        .map_err(|e| local(e, dest))?;
    let mut done = 0u64;
    for object in objects {
        if cancelled.load(Ordering::Relaxed) {
            return Err(StorageError::new(
                super::Failure::SinkFailed,
                "the download was cancelled".to_string(),
                "",
            ));
        }
        let name = object.key.strip_prefix(&prefix).unwrap_or(&object.key);
        // Names come from the store: nothing may lead outside `dest`.
        if name.is_empty()
            || name
                .split('/')
                .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return Err(StorageError::new(
                super::Failure::External,
                format!("unexpected object name {:?} under {prefix}", object.key),
                "Only backup_ext writes under a backup's key; remove what does not belong there.",
            ));
        }
        let path = dest.join(name);
        if let Some(parent) = path.parent() {
            fs::DirBuilder::new()
                .mode(0o700)
                .recursive(true)
                .create(parent)
                .map_err(|e| local(e, parent))?;
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| local(e, &path))?;
        let got = store.download(&object.key, file, Arc::new(AtomicU64::new(0)))?;
        done += got.size;
        progress.store(done, Ordering::Relaxed);
    }
    let manifest = directory_manifest(dest).map_err(|e| local(e, dest))?;
    Ok(Downloaded {
        size: manifest.total_size,
        sha256: manifest.sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::FileStore;
    use crate::test_support::TempDir;

    #[test]
    fn a_directory_goes_up_file_by_file_and_comes_back_the_same() {
        let dir = TempDir::new("tree");
        let root = dir.path().join("dump");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("toc.dat"), b"PGDMP toc").unwrap();
        fs::write(root.join("3001.dat.gz"), vec![7u8; 100_000]).unwrap();
        fs::write(root.join("sub/x"), b"x").unwrap();
        let before = directory_manifest(&root).unwrap();
        let store_root = dir.path().join("store");
        fs::create_dir_all(&store_root).unwrap();
        let store = Store::File(FileStore::new(store_root.clone()));
        let spec = TreeUploadSpec {
            store: store.clone(),
            storage: "nfs".into(),
            key: "1/app/b.dir".into(),
            root: root.clone(),
            open: OpenUpload::default(),
        };
        let mut run = TreeUpload::start(spec.clone()).unwrap();
        let result = crate::storage::fetch::tests::poll_until_done(&mut run);
        assert_eq!(
            result,
            JobResult::Uploaded {
                ok: true,
                message: String::new()
            }
        );
        assert_eq!(run.progress(), before.total_size);
        assert!(spec.open.lock().unwrap().is_none());
        assert_eq!(
            fs::read(store_root.join("1/app/b.dir/sub/x")).unwrap(),
            b"x"
        );

        let back = dir.path().join("back");
        let got = download_tree(
            &store,
            "1/app/b.dir",
            &back,
            Arc::default(),
            &AtomicBool::new(false),
        )
        .unwrap();
        assert_eq!(got.size, before.total_size);
        assert_eq!(got.sha256, before.sha256);

        let e = download_tree(
            &store,
            "1/app/none.dir",
            &dir.path().join("none"),
            Arc::default(),
            &AtomicBool::new(false),
        )
        .unwrap_err();
        assert_eq!(e.failure, crate::storage::Failure::NotFound);
    }
}
