//! Finished backups on disk: making one visible under its final name,
//! hashing it again, removing it.

use std::fs::{self, File};
use std::io::{self, ErrorKind};
use std::path::Path;

fn sync_parent(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

/// Size and SHA-256 of a file read from disk (verification must read the bytes again).
pub fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    crate::files::manifest::hash_file(path, &crate::files::manifest::HashMeter::default())
}

/// Makes a finished backup visible under its final name. The rename is
/// only durable once the directory holding it is fsynced. An existing
/// `final_path` is never replaced.
pub fn publish(partial: &Path, final_path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(final_path) {
        Ok(_) => {
            return Err(io::Error::new(
                ErrorKind::AlreadyExists,
                format!("{} already exists", final_path.display()),
            ))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    fs::rename(partial, final_path)?;
    sync_parent(final_path)
}

/// Writes a small file (a sidecar) under `path`: to `<path>.partial` with mode 0600, fsynced,
/// then renamed into place, so a reader never sees half of it.
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let partial = crate::files::paths::partial_path(path);
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&partial, path)?;
        sync_parent(path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&partial);
    }
    written
}

/// Removes a backup file or directory tree; a missing path is not an
/// error, so cleanup can run more than once. Symlinks are removed, never
/// followed.
pub fn remove_output(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let result = if meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    match result {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;

    #[test]
    fn publish_renames_and_refuses_to_overwrite() {
        let dir = TempDir::new("stream");
        let partial = dir.path().join("a.partial");
        let final_path = dir.path().join("a");
        fs::write(&partial, b"1").unwrap();
        publish(&partial, &final_path).unwrap();
        assert!(!partial.exists());
        assert_eq!(fs::read(&final_path).unwrap(), b"1");

        fs::write(&partial, b"2").unwrap();
        let err = publish(&partial, &final_path).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&final_path).unwrap(), b"1");

        let d_partial = dir.path().join("d.partial");
        fs::create_dir(&d_partial).unwrap();
        fs::write(d_partial.join("toc.dat"), b"x").unwrap();
        publish(&d_partial, &dir.path().join("d")).unwrap();
        assert!(dir.path().join("d/toc.dat").exists());
    }

    #[test]
    fn remove_output_handles_files_dirs_and_missing() {
        let dir = TempDir::new("stream");
        let f = dir.path().join("f");
        fs::write(&f, b"x").unwrap();
        remove_output(&f).unwrap();
        assert!(!f.exists());
        remove_output(&f).unwrap();

        let d = dir.path().join("d");
        fs::create_dir_all(d.join("sub")).unwrap();
        fs::write(d.join("sub/x"), b"x").unwrap();
        remove_output(&d).unwrap();
        assert!(!d.exists());

        // A symlink to a directory is removed without touching the target.
        let target = dir.path().join("target");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("keep"), b"x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        remove_output(&link).unwrap();
        assert!(!link.exists());
        assert!(target.join("keep").exists());
    }
}
