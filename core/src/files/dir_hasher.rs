//! Hashes and syncs the files of a directory-format dump while pg_dump is still writing it.
//!
//! pg_dump writes one file per table (with `--jobs`, several at once) and closes each when it is
//! done. A thread of its own watches the directory (inotify `IN_CLOSE_WRITE`) and reads, hashes
//! and fsyncs each file as soon as it is closed, so that when pg_dump exits only what was not
//! seen closed yet (`toc.dat`, written last) is left to read. What it computed is trusted at the
//! end only for a file whose inode, size, modification and change times are still those it saw
//! after reading it; anything else is read again, so the manifest is the same as one made
//! after the fact.

use crate::files::manifest::{hash_file, sync_dirs, walk, HashMeter, Manifest, ManifestEntry};
use crate::process::stream::spawn_signal_free;
use inotify::{Inotify, WatchMask};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, ErrorKind};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the watching thread sleeps when no file was closed.
const IDLE: Duration = Duration::from_millis(20);

/// What identifies one version of a file's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(path: &Path) -> io::Result<Stamp> {
        let m = fs::symlink_metadata(path)?;
        Ok(Stamp {
            ino: m.ino(),
            size: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

/// Size and SHA-256 of a file read and fsynced while it had `stamp`.
#[derive(Debug, Clone)]
struct Seen {
    stamp: Stamp,
    size: u64,
    sha256: String,
}

/// Reads, hashes and syncs one file; `None` when it changed meanwhile (or vanished).
fn read_closed(path: &Path, meter: &HashMeter) -> io::Result<Option<Seen>> {
    let before = match Stamp::of(path) {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let (size, sha256) = hash_file(path, meter)?;
    File::open(path)?.sync_all()?;
    let after = Stamp::of(path)?;
    Ok((before == after && after.size == size).then_some(Seen {
        stamp: after,
        size,
        sha256,
    }))
}

/// The watcher of one dump directory; see the module documentation.
pub struct DirHasher {
    dir: PathBuf,
    meter: Arc<HashMeter>,
    thread: Option<JoinHandle<io::Result<HashMap<String, Seen>>>>,
}

impl DirHasher {
    /// Creates `dir` (mode 0700; it must not exist: pg_dump writes into an empty directory) and
    /// starts watching it.
    pub fn start(dir: &Path) -> io::Result<DirHasher> {
        fs::DirBuilder::new().mode(0o700).create(dir)?;
        let started = Inotify::init().and_then(|inotify| {
            inotify.watches().add(dir, WatchMask::CLOSE_WRITE)?;
            Ok(inotify)
        });
        let inotify = match started {
            Ok(i) => i,
            Err(e) => {
                let _ = fs::remove_dir(dir);
                return Err(e);
            }
        };
        let meter = Arc::new(HashMeter::default());
        let (watched, m) = (dir.to_path_buf(), meter.clone());
        let thread = spawn_signal_free("backup_ext-hash", move || watch(inotify, &watched, &m))
            .inspect_err(|_| {
                let _ = fs::remove_dir(dir);
            })?;
        Ok(DirHasher {
            dir: dir.to_path_buf(),
            meter,
            thread: Some(thread),
        })
    }

    /// Once pg_dump has exited: the manifest of the directory, every file and directory entry
    /// durable. Files seen closed and unchanged since are not read again.
    pub fn finish(mut self) -> io::Result<Manifest> {
        let seen = self.stop_watching()?;
        let meter = HashMeter::default();
        let mut entries = Vec::new();
        for (path, name) in walk(&self.dir)? {
            let known = seen
                .get(&name)
                .filter(|s| Stamp::of(&path).is_ok_and(|now| now == s.stamp));
            let (size, sha256) = match known {
                Some(s) => (s.size, s.sha256.clone()),
                None => {
                    let hashed = hash_file(&path, &meter)?;
                    File::open(&path)?.sync_all()?;
                    hashed
                }
            };
            entries.push(ManifestEntry { name, size, sha256 });
        }
        sync_dirs(&self.dir)?;
        Ok(Manifest::from_entries(entries))
    }

    /// Stops the watching thread and returns what it saw.
    fn stop_watching(&mut self) -> io::Result<HashMap<String, Seen>> {
        self.meter.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| io::Error::other("the hashing thread panicked"))?,
            None => Ok(HashMap::new()),
        }
    }
}

impl Drop for DirHasher {
    fn drop(&mut self) {
        let _ = self.stop_watching();
    }
}

/// The watching thread: hashes each file of `dir` as it is closed after writing, until told to
/// stop. A file that cannot be read now is left for the end.
fn watch(mut inotify: Inotify, dir: &Path, meter: &HashMeter) -> io::Result<HashMap<String, Seen>> {
    let mut seen = HashMap::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let names: Vec<String> = match inotify.read_events(&mut buffer) {
            Ok(events) => events
                .filter_map(|e| e.name.and_then(|n| n.to_str()).map(str::to_string))
                .collect(),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Vec::new(),
            Err(e) => return Err(e),
        };
        if names.is_empty() {
            if meter.stop.load(Ordering::Relaxed) {
                return Ok(seen);
            }
            std::thread::sleep(IDLE);
            continue;
        }
        for name in names {
            match read_closed(&dir.join(&name), meter) {
                Ok(Some(s)) => {
                    seen.insert(name, s);
                }
                Ok(None) => {
                    seen.remove(&name);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(seen),
                Err(_) => {
                    seen.remove(&name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::manifest::directory_manifest;
    use crate::test_support::TempDir;
    use std::io::Write;
    use std::time::Instant;

    fn write(path: &Path, data: &[u8]) {
        let mut f = File::create(path).unwrap();
        f.write_all(data).unwrap();
    }

    /// Waits until the watching thread has read `bytes` bytes in all.
    fn wait_for_bytes(h: &DirHasher, bytes: u64) {
        let started = Instant::now();
        while h.meter.bytes.load(Ordering::Relaxed) < bytes {
            assert!(started.elapsed() < Duration::from_secs(10), "never hashed");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn files_closed_while_watching_are_read_then_and_not_again() {
        let tmp = TempDir::new("dirhash");
        let dir = tmp.path().join("dump");
        let h = DirHasher::start(&dir).unwrap();
        write(&dir.join("3001.dat.gz"), &[7u8; 300_000]);
        write(&dir.join("3002.dat.gz"), b"");
        wait_for_bytes(&h, 300_000);
        // Written after the watch saw the other two: read at the end only.
        write(&dir.join("toc.dat"), b"toc");
        std::thread::sleep(Duration::from_millis(100));
        let read_while_watching = h.meter.bytes.load(Ordering::Relaxed);
        let m = h.finish().unwrap();
        assert_eq!(m, directory_manifest(&dir).unwrap());
        assert_eq!(m.files.len(), 3);
        assert_eq!(m.total_size, 300_003);
        assert!(
            (300_000..=300_003).contains(&read_while_watching),
            "{read_while_watching}"
        );
    }

    #[test]
    fn a_file_changed_after_it_was_read_is_read_again() {
        let tmp = TempDir::new("dirhash");
        let dir = tmp.path().join("dump");
        let h = DirHasher::start(&dir).unwrap();
        write(&dir.join("a.dat"), b"first version");
        wait_for_bytes(&h, 13);
        // Rewritten in place with the same size, then closed again; and appended to without
        // a close the watch could see (the file is still open when finish() runs).
        write(&dir.join("a.dat"), b"other version");
        let mut open = fs::OpenOptions::new()
            .append(true)
            .open(dir.join("a.dat"))
            .unwrap();
        open.write_all(b"+").unwrap();
        let m = h.finish().unwrap();
        drop(open);
        assert_eq!(m.files.len(), 1);
        assert_eq!(m.files[0].size, 14);
        assert_eq!(m, directory_manifest(&dir).unwrap());
    }

    #[test]
    fn a_nested_directory_and_a_removed_file_end_in_the_same_manifest() {
        let tmp = TempDir::new("dirhash");
        let dir = tmp.path().join("dump");
        let h = DirHasher::start(&dir).unwrap();
        write(&dir.join("gone.dat"), b"soon removed");
        wait_for_bytes(&h, 12);
        fs::remove_file(dir.join("gone.dat")).unwrap();
        fs::create_dir(dir.join("sub")).unwrap();
        write(&dir.join("sub").join("x"), b"x");
        let m = h.finish().unwrap();
        assert_eq!(m, directory_manifest(&dir).unwrap());
        assert_eq!(
            m.files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            vec!["sub/x"]
        );
    }

    #[test]
    fn an_existing_directory_is_refused_and_kept() {
        let tmp = TempDir::new("dirhash");
        let dir = tmp.path().join("dump");
        fs::create_dir(&dir).unwrap();
        write(&dir.join("mine"), b"keep");
        let e = DirHasher::start(&dir).err().expect("refused");
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        assert_eq!(fs::read(dir.join("mine")).unwrap(), b"keep");
    }
}
