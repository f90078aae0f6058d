//! Files, hashes and names: dump files and manifests, backup paths, and
//! files the server must be able to delete.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::paths::path_str;
use crate::process::{check_output, chown, pg_user_ids};
use crate::Cluster;

/// Hex SHA-256 of a file's contents.
pub fn sha256_file(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// One file of a directory-format dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// The manifest of a directory: entries sorted by name, the manifest text
/// (`<sha256>  <size>  <name>\n` per file), and the total size.
pub fn directory_manifest(dir: &Path) -> (Vec<ManifestEntry>, String, u64) {
    let mut entries = Vec::new();
    collect_files(dir, dir, &mut entries);
    entries.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    let mut text = String::new();
    let mut total = 0;
    for e in &entries {
        text.push_str(&format!("{}  {}  {}\n", e.sha256, e.size, e.name));
        total += e.size;
    }
    (entries, text, total)
}

fn collect_files(base: &Path, dir: &Path, out: &mut Vec<ManifestEntry>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let entry = entry.expect("dir entry");
        let path = entry.path();
        let ft = entry.file_type().expect("file type");
        if ft.is_dir() {
            collect_files(base, &path, out);
        } else {
            let name = path
                .strip_prefix(base)
                .unwrap()
                .to_str()
                .expect("utf-8 file name")
                .to_string();
            out.push(ManifestEntry {
                name,
                size: entry.metadata().expect("metadata").len(),
                sha256: sha256_file(&path),
            });
        }
    }
}

/// Every path under `dir` whose name ends in `.partial`.
pub fn partials_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for entry in rd.flatten() {
            let p = entry.path();
            if p.to_string_lossy().ends_with(".partial") {
                found.push(p.clone());
            }
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                walk(&p, found);
            }
        }
    }
    walk(dir, &mut found);
    found
}

/// The folder name the extension uses for a database: bytes outside
/// `[A-Za-z0-9_.-]` become `%XX`.
pub fn folder_name(db: &str) -> String {
    let mut s = String::new();
    for b in db.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-' {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// Asserts that `path` is `<backups>/<folder>/<YYYYMMDDTHHMMSSZ>-job<12
/// digits><suffix>`.
pub fn assert_backup_path(backups: &Path, folder: &str, job_id: i64, suffix: &str, path: &Path) {
    let parent = path.parent().expect("path has a parent");
    assert_eq!(parent, backups.join(folder), "folder of {}", path.display());
    let file = path.file_name().unwrap().to_str().expect("utf-8 file name");
    let expected_tail = format!("-job{job_id:012}{suffix}");
    assert!(
        file.ends_with(&expected_tail) && file.len() == 16 + expected_tail.len(),
        "file name {file:?} does not end in {expected_tail:?} after a timestamp"
    );
    let stamp = &file.as_bytes()[..16];
    for (i, c) in stamp.iter().enumerate() {
        let ok = match i {
            8 => *c == b'T',
            15 => *c == b'Z',
            _ => c.is_ascii_digit(),
        };
        assert!(ok, "timestamp part of {file:?} is not YYYYMMDDTHHMMSSZ");
    }
}

/// `pg_restore --list` of an archive; panics if pg_restore fails.
pub fn pg_restore_list(cluster: &Cluster, archive: &Path) -> String {
    let out = cluster.run_tool("pg_restore", &["--list", path_str(archive)]);
    check_output("pg_restore --list", &out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A `pg_restore --list` entry: (description, schema, name), e.g.
/// ("TABLE DATA", "public", "t1").
pub fn toc_entries(list: &str) -> Vec<(String, String, String)> {
    const DESCS: &[&str] = &[
        "TABLE DATA",
        "SEQUENCE SET",
        "SEQUENCE OWNED BY",
        "FK CONSTRAINT",
        "DEFAULT ACL",
        "TABLE",
        "VIEW",
        "SEQUENCE",
        "INDEX",
        "CONSTRAINT",
        "DEFAULT",
        "SCHEMA",
        "COMMENT",
        "EXTENSION",
        "ACL",
    ];
    let mut out = Vec::new();
    for line in list.lines() {
        if line.starts_with(';') || line.trim().is_empty() {
            continue;
        }
        let Some((_, rest)) = line.split_once("; ") else {
            continue;
        };
        // "<tableoid> <oid> <desc...> <schema> <name> <owner>"
        let mut parts = rest.splitn(3, ' ');
        let (_, _, tail) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
        let Some(desc) = DESCS.iter().find(|d| tail.starts_with(&format!("{d} "))) else {
            continue;
        };
        let mut fields = tail[desc.len() + 1..].split(' ');
        let schema = fields.next().unwrap_or("").to_string();
        let name = fields.next().unwrap_or("").to_string();
        out.push((desc.to_string(), schema, name));
    }
    out
}

// ---------------------------------------------------------------------------
// Files the server must be able to delete

impl Cluster {
    /// Writes `contents` to `path` as if the server had written it: missing
    /// parent directories are created (mode 0700) and the directories and
    /// the file end up owned by the postgres user.
    pub fn write_server_file(&self, path: &Path, contents: &[u8]) {
        let (uid, gid) = pg_user_ids();
        let parent = path.parent().expect("path has a parent");
        let mut missing = Vec::new();
        let mut cur = parent;
        while !cur.exists() {
            missing.push(cur.to_path_buf());
            cur = cur.parent().expect("existing ancestor");
        }
        for dir in missing.iter().rev() {
            fs::create_dir(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).expect("chmod");
            chown(dir, uid, gid);
        }
        fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod");
        chown(path, uid, gid);
    }
}
