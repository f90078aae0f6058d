//! Manifest of a directory-format dump.
//!
//! A directory dump has no single file to hash, so its identity is the hash
//! of a canonical listing of its files (`sha256  size  name` per line, like
//! sha256sum with a size column), which can be checked with standard tools.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Relative to the dump directory, `/`-separated.
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Sorted by name, so the canonical text does not depend on readdir order.
    pub files: Vec<ManifestEntry>,
    pub total_size: u64,
    /// SHA-256 of [`Manifest::to_text`].
    pub sha256: String,
}

impl Manifest {
    pub fn to_text(&self) -> String {
        self.files
            .iter()
            .map(|f| format!("{}  {}  {}\n", f.sha256, f.size, f.name))
            .collect()
    }

    pub(crate) fn from_entries(mut files: Vec<ManifestEntry>) -> Manifest {
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let total_size = files.iter().map(|f| f.size).sum();
        let mut m = Manifest {
            files,
            total_size,
            sha256: String::new(),
        };
        m.sha256 = hex::encode(Sha256::digest(m.to_text().as_bytes()));
        m
    }
}

/// Every regular file below `dir`, depth first, with its relative name.
/// Anything else (symlinks, sockets) is an error: pg_dump creates none, so
/// one would mean the directory is not what it should be.
pub(crate) fn walk(dir: &Path) -> io::Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, prefix)) = pending.pop() {
        for entry in fs::read_dir(&path)? {
            let entry = entry?;
            let file_name = entry.file_name();
            let name = file_name.to_str().ok_or_else(|| {
                io::Error::new(
                    ErrorKind::InvalidData,
                    format!(
                        "file name {:?} in {} is not UTF-8",
                        file_name,
                        path.display()
                    ),
                )
            })?;
            let rel = format!("{prefix}{name}");
            let file_type = entry.file_type()?;
            if file_type.is_dir() {
                pending.push((entry.path(), format!("{rel}/")));
            } else if file_type.is_file() {
                out.push((entry.path(), rel));
            } else {
                return Err(io::Error::new(
                    ErrorKind::InvalidData,
                    format!("{} is not a regular file", entry.path().display()),
                ));
            }
        }
    }
    Ok(out)
}

/// Counts hashed bytes and lets another thread stop a long hash early.
#[derive(Debug, Default)]
pub(crate) struct HashMeter {
    pub bytes: AtomicU64,
    pub stop: AtomicBool,
}

/// Size and SHA-256 of one file, adding to `meter.bytes` as it reads; ends
/// with an `Interrupted` error once `meter.stop` is set.
pub(crate) fn hash_file(path: &Path, meter: &HashMeter) -> io::Result<(u64, String)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        if meter.stop.load(Ordering::Relaxed) {
            return Err(io::Error::new(ErrorKind::Interrupted, "hashing stopped"));
        }
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
        meter.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
    Ok((size, hex::encode(hasher.finalize())))
}

pub fn directory_manifest(dir: &Path) -> io::Result<Manifest> {
    directory_manifest_metered(dir, &HashMeter::default())
}

pub(crate) fn directory_manifest_metered(dir: &Path, meter: &HashMeter) -> io::Result<Manifest> {
    let mut entries = Vec::new();
    for (path, name) in walk(dir)? {
        let (size, sha256) = hash_file(&path, meter)?;
        entries.push(ManifestEntry { name, size, sha256 });
    }
    Ok(Manifest::from_entries(entries))
}

/// pg_dump does not fsync a directory dump; this makes every file and
/// directory entry durable before the dump is reported as done.
pub fn sync_tree(dir: &Path) -> io::Result<()> {
    for (path, _) in walk(dir)? {
        File::open(&path)?.sync_all()?;
    }
    sync_dirs(dir)
}

/// fsyncs `dir` and every directory below it.
pub(crate) fn sync_dirs(dir: &Path) -> io::Result<()> {
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in fs::read_dir(&d)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                dirs.push(entry.path());
            }
        }
        File::open(&d)?.sync_all()?;
    }
    Ok(())
}

/// Bytes written so far below `dir`, for progress reports while pg_dump
/// is still writing. Files may appear or vanish meanwhile, so errors are
/// skipped instead of reported.
pub fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for entry in rd.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => dirs.push(entry.path()),
                Ok(m) if m.is_file() => total += m.len(),
                _ => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;

    const SHA_X: &str = "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881";
    const SHA_ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    const SHA_EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn flat_directory() {
        let dir = TempDir::new("manifest");
        fs::write(dir.path().join("toc.dat"), b"x").unwrap();
        fs::write(dir.path().join("3001.dat.gz"), b"abc").unwrap();
        let m = directory_manifest(dir.path()).unwrap();
        let expected_text = format!("{SHA_ABC}  3  3001.dat.gz\n{SHA_X}  1  toc.dat\n");
        assert_eq!(m.to_text(), expected_text);
        assert_eq!(m.total_size, 4);
        assert_eq!(
            m.sha256,
            hex::encode(Sha256::digest(expected_text.as_bytes()))
        );
        assert_eq!(m.files[0].name, "3001.dat.gz");
        assert_eq!(m.files[1].sha256, SHA_X);
        assert_eq!(tree_size(dir.path()), 4);
        sync_tree(dir.path()).unwrap();
    }

    #[test]
    fn nested_and_empty() {
        let dir = TempDir::new("manifest");
        fs::create_dir_all(dir.path().join("sub/deeper")).unwrap();
        fs::write(dir.path().join("sub/deeper/e"), b"").unwrap();
        fs::write(dir.path().join("sub/a"), b"abc").unwrap();
        fs::write(dir.path().join("z"), b"x").unwrap();
        let m = directory_manifest(dir.path()).unwrap();
        let names: Vec<&str> = m.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, vec!["sub/a", "sub/deeper/e", "z"]);
        assert_eq!(m.files[1].sha256, SHA_EMPTY);
        assert_eq!(m.total_size, 4);
        assert_eq!(tree_size(dir.path()), 4);
        sync_tree(dir.path()).unwrap();

        let empty = TempDir::new("manifest");
        let m = directory_manifest(empty.path()).unwrap();
        assert!(m.files.is_empty());
        assert_eq!(m.sha256, SHA_EMPTY);
    }

    #[test]
    fn symlinks_are_rejected() {
        let dir = TempDir::new("manifest");
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("l")).unwrap();
        let err = directory_manifest(dir.path()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData);
    }

    #[test]
    fn missing_directory() {
        let dir = TempDir::new("manifest");
        let gone = dir.path().join("nope");
        assert!(directory_manifest(&gone).is_err());
        assert_eq!(tree_size(&gone), 0);
    }

    #[test]
    fn serde_round_trip() {
        let dir = TempDir::new("manifest");
        fs::write(dir.path().join("toc.dat"), b"x").unwrap();
        let m = directory_manifest(dir.path()).unwrap();
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["files"][0]["name"], "toc.dat");
        assert_eq!(v["total_size"], 1);
        let back: Manifest = serde_json::from_value(v).unwrap();
        assert_eq!(back, m);
    }
}
