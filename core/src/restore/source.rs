//! Where a restore reads its archive: a local file, or an object in a storage target that is
//! streamed from the store into the tool without a local copy.

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::crypt::{decrypting_reader, DecryptFailure};
use crate::format::Format;
use crate::process::capabilities::{archive_version_in, ArchiveVersion};
use crate::process::stream::spawn_signal_free;
use crate::storage::{Downloaded, StorageError, Store};

/// A backup's bytes, from wherever they lie.
#[derive(Debug, Clone)]
pub enum ArchiveSource {
    File(PathBuf),
    Object(StoredObject),
    /// An age-encrypted backup lying in `stored`, decrypted while read with the identities in
    /// `identity_file` (read when opened). Tools read it on their stdin, never as a path.
    Encrypted {
        stored: Box<ArchiveSource>,
        identity_file: Option<PathBuf>,
    },
}

/// A backup in a storage target, with what it must turn out to be.
#[derive(Debug, Clone)]
pub struct StoredObject {
    pub store: Store,
    /// For messages: the target's name.
    pub storage: String,
    pub key: String,
    pub expected_size: u64,
    pub expected_sha256: String,
}

/// The same archive: the same file, or the same key in the same target with the same
/// recorded size and checksum.
impl PartialEq for ArchiveSource {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (ArchiveSource::File(a), ArchiveSource::File(b)) => a == b,
            (ArchiveSource::Object(a), ArchiveSource::Object(b)) => {
                (&a.storage, &a.key, a.expected_size, &a.expected_sha256)
                    == (&b.storage, &b.key, b.expected_size, &b.expected_sha256)
            }
            (
                ArchiveSource::Encrypted { stored: a, .. },
                ArchiveSource::Encrypted { stored: b, .. },
            ) => a == b,
            _ => false,
        }
    }
}

impl Eq for ArchiveSource {}

impl From<PathBuf> for ArchiveSource {
    fn from(path: PathBuf) -> Self {
        ArchiveSource::File(path)
    }
}

impl ArchiveSource {
    /// The bytes from the start. An object is downloaded on its own thread into a pipe; a
    /// download that fails, or that ends with other bytes than the ones recorded, is an error
    /// at the end of the stream, never an end of file that looks like a whole archive.
    pub fn open(&self) -> io::Result<Box<dyn Read + Send>> {
        match self {
            ArchiveSource::File(path) => Ok(Box::new(File::open(path)?)),
            ArchiveSource::Object(object) => Ok(Box::new(ObjectReader::start(object.clone())?)),
            ArchiveSource::Encrypted {
                stored,
                identity_file,
            } => decrypting_reader(stored.open()?, identity_file.as_deref(), &stored.describe())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        }
    }

    /// The source read through age decryption when `encrypted`.
    pub fn decrypted_if(self, encrypted: bool, identity_file: Option<PathBuf>) -> ArchiveSource {
        if encrypted {
            ArchiveSource::Encrypted {
                stored: Box::new(self),
                identity_file,
            }
        } else {
            self
        }
    }

    /// For an encrypted source: whether the identity opens its header (reading no further).
    pub fn check_decryptable(&self) -> Result<(), DecryptFailure> {
        let ArchiveSource::Encrypted {
            stored,
            identity_file,
        } = self
        else {
            return Ok(());
        };
        let what = stored.describe();
        let raw = stored
            .open()
            .map_err(|e| DecryptFailure::Damaged(what.clone(), e.to_string()))?;
        decrypting_reader(raw, identity_file.as_deref(), &what).map(|_| ())
    }

    /// The archive version in the header of a custom or tar archive; None for plain scripts.
    /// An object's header is read from the start of a download that stops there.
    pub fn archive_version(&self, format: Format) -> io::Result<Option<ArchiveVersion>> {
        match self {
            ArchiveSource::File(path) => {
                crate::process::capabilities::archive_version(path, format)
            }
            ArchiveSource::Object(_) | ArchiveSource::Encrypted { .. } => {
                let mut head = vec![0u8; 520];
                let mut r = self.open()?;
                let mut got = 0;
                while got < head.len() {
                    let n = r.read(&mut head[got..])?;
                    if n == 0 {
                        break;
                    }
                    got += n;
                }
                head.truncate(got);
                archive_version_in(&head, format, &self.describe())
            }
        }
    }

    /// The file, or the key and target, for messages.
    pub fn describe(&self) -> String {
        match self {
            ArchiveSource::File(path) => path.display().to_string(),
            ArchiveSource::Object(o) => format!("{} in storage \"{}\"", o.key, o.storage),
            ArchiveSource::Encrypted { stored, .. } => stored.describe(),
        }
    }

    /// The local file; None for an object, which tools read from their stdin.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            ArchiveSource::File(path) => Some(path),
            ArchiveSource::Object(_) | ArchiveSource::Encrypted { .. } => None,
        }
    }
}

/// The read end of a pipe a download thread writes the object into.
struct ObjectReader {
    pipe: io::PipeReader,
    download: Option<JoinHandle<Result<Downloaded, StorageError>>>,
    object: StoredObject,
}

impl ObjectReader {
    fn start(object: StoredObject) -> io::Result<ObjectReader> {
        let (pipe, writer) = io::pipe()?;
        let (store, key) = (object.store.clone(), object.key.clone());
        let download = spawn_signal_free("backup_ext get", move || {
            store.download(&key, writer, Arc::new(AtomicU64::new(0)))
        })?;
        Ok(ObjectReader {
            pipe,
            download: Some(download),
            object,
        })
    }

    /// At the end of the pipe: how the download ended, and whether it was the recorded bytes.
    fn check_end(&mut self) -> io::Result<()> {
        let Some(handle) = self.download.take() else {
            return Ok(());
        };
        let o = &self.object;
        let got = handle
            .join()
            .map_err(|_| io::Error::other("the download thread panicked"))?
            .map_err(|e| {
                io::Error::other(format!(
                    "cannot read {} from storage \"{}\": {e}",
                    o.key, o.storage
                ))
            })?;
        if got.size != o.expected_size || got.sha256 != o.expected_sha256 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} in storage \"{}\" no longer matches its recorded checksum: expected {} \
                     bytes with sha256 {}, read {} bytes with sha256 {}",
                    o.key, o.storage, o.expected_size, o.expected_sha256, got.size, got.sha256
                ),
            ));
        }
        Ok(())
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.pipe.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.check_end()?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::FileStore;
    use crate::test_support::TempDir;
    use sha2::{Digest, Sha256};
    use std::fs;

    fn object(dir: &TempDir, stored: &[u8], recorded: &[u8]) -> ArchiveSource {
        let root = dir.path().join("store");
        fs::create_dir_all(root.join("db")).unwrap();
        fs::write(root.join("db/b.dump"), stored).unwrap();
        ArchiveSource::Object(StoredObject {
            store: Store::File(FileStore::new(root)),
            storage: "nfs".into(),
            key: "db/b.dump".into(),
            expected_size: recorded.len() as u64,
            expected_sha256: hex::encode(Sha256::digest(recorded)),
        })
    }

    #[test]
    fn an_object_streams_whole_and_a_changed_one_fails_at_its_end() {
        let dir = TempDir::new("source");
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut read = Vec::new();
        object(&dir, &bytes, &bytes)
            .open()
            .unwrap()
            .read_to_end(&mut read)
            .unwrap();
        assert_eq!(read, bytes);

        let mut changed = bytes.clone();
        changed[10] ^= 1;
        let e = object(&dir, &changed, &bytes)
            .open()
            .unwrap()
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(
            e.to_string().starts_with(
                "db/b.dump in storage \"nfs\" no longer matches its recorded checksum: expected \
                 3000000 bytes"
            ),
            "{e}"
        );
    }

    #[test]
    fn a_missing_object_is_an_error_not_an_empty_archive() {
        let dir = TempDir::new("source-missing");
        let ArchiveSource::Object(mut o) = object(&dir, b"x", b"x") else {
            unreachable!()
        };
        o.key = "db/none.dump".into();
        let e = ArchiveSource::Object(o)
            .open()
            .unwrap()
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot read db/none.dump from storage \"nfs\": "),
            "{e}"
        );
    }

    #[test]
    fn the_header_of_an_object_is_read_without_the_rest() {
        let dir = TempDir::new("source-head");
        let mut archive = b"PGDMP\x01\x0e\x00".to_vec();
        archive.extend(std::iter::repeat_n(7u8, 5_000_000));
        let v = object(&dir, &archive, &archive)
            .archive_version(Format::Custom)
            .unwrap();
        assert_eq!(v, Some(ArchiveVersion(1, 14)));
        let e = object(&dir, b"not an archive", b"not an archive")
            .archive_version(Format::Custom)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "db/b.dump in storage \"nfs\" does not begin with an archive header"
        );
    }
}
