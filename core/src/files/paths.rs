//! Layout of the backup directory: one folder per database, plus
//! `globals` for pg_dumpall output.
//!
//! Database names are arbitrary text, so folder names are derived by an
//! injective encoding that can never produce `/`, `.`, `..`, an empty name
//! or the globals folder.

use chrono::{DateTime, Utc};
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

pub const GLOBALS_FOLDER: &str = "globals";

/// Folder for a database whose name is empty. PostgreSQL does not allow
/// such names, but this keeps the function total; NUL cannot occur in a
/// database name, so no real name encodes to this.
const EMPTY_NAME_FOLDER: &str = "%00";

const PARTIAL_SUFFIX: &str = ".partial";

fn is_plain_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

/// Encodes a database name as a folder name: `[A-Za-z0-9_.-]` is kept, every
/// other byte becomes `%XX`. A leading `.` is encoded as well (no hidden
/// folders, never `.` or `..`), and a database named `globals` gets its
/// first letter encoded so it cannot share the globals folder. The result is
/// at most three times the name's length: 189 bytes for a 63-byte name.
pub fn database_folder(dbname: &str) -> String {
    if dbname.is_empty() {
        return EMPTY_NAME_FOLDER.to_string();
    }
    let mut out = String::with_capacity(dbname.len());
    for (i, b) in dbname.bytes().enumerate() {
        let force = i == 0 && (b == b'.' || dbname == GLOBALS_FOLDER);
        if is_plain_byte(b) && !force {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `20261124T031500Z-job000000000042` followed by `suffix`. The fixed-width
/// timestamp and zero-padded id make a plain name sort equal to
/// start time, then job id.
pub fn backup_file_name(started: DateTime<Utc>, job_id: i64, suffix: &str) -> String {
    format!(
        "{}-job{job_id:012}{suffix}",
        started.format("%Y%m%dT%H%M%SZ")
    )
}

/// Where output is written until it is complete; only a finished, fsynced
/// backup is renamed to `final_path`.
pub fn partial_path(final_path: &Path) -> PathBuf {
    let mut s: OsString = final_path.as_os_str().to_owned();
    s.push(PARTIAL_SUFFIX);
    PathBuf::from(s)
}

/// The job id in the name of a partial output the worker made
/// (`20261124T031500Z-job000000000042.dump.partial` → 42); `None` for any other name.
pub fn job_id_of_partial(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".partial")?;
    let digits = stem.split_once("-job")?.1.get(..12)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Lexical check that `p` lies strictly below `root`: no `..` components
/// anywhere and `root` as a component-wise prefix. The root itself is not
/// "inside", so a caller deleting what passes this check can never delete
/// the whole backup directory. Symlinks are not resolved.
pub fn is_inside(root: &Path, p: &Path) -> bool {
    let has_parent = |q: &Path| q.components().any(|c| matches!(c, Component::ParentDir));
    if has_parent(p) || has_parent(root) || root.as_os_str().is_empty() {
        return false;
    }
    match p.strip_prefix(root) {
        Ok(rest) => rest.components().any(|c| matches!(c, Component::Normal(_))),
        Err(_) => false,
    }
}

/// Whose a file in the job work directory (`<directory>/.work`) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkFileOwner {
    /// `job-<id>.stderr` (pg_dump's stderr) or `job-<id>.list` (a `pg_restore -L` list).
    Job(i64),
    /// `<tool>-<pid>-<n>.stderr`: the stderr of a step run by process `pid` (the worker).
    Process(u32),
}

/// The owner of a work file by its name; `None` for names the worker does not give.
pub fn work_file_owner(name: &str) -> Option<WorkFileOwner> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some((id, ext)) = name
        .strip_prefix("job-")
        .and_then(|rest| rest.split_once('.'))
    {
        // restore_table() writes `job-<id>.{definition,data}.list` and
        // `job-<id>.{definition,indexes}.sql`.
        let table_file = matches!(
            ext,
            "definition.list" | "data.list" | "definition.sql" | "indexes.sql"
        );
        if digits(id) && (matches!(ext, "stderr" | "list" | "fetch") || table_file) {
            return id.parse().ok().map(WorkFileOwner::Job);
        }
    }
    let stem = name
        .strip_suffix(".stderr")
        .or_else(|| name.strip_suffix(".fetch"))?;
    let mut parts = stem.rsplitn(3, '-');
    let (n, pid, tool) = (parts.next()?, parts.next()?, parts.next()?);
    if tool.is_empty() || !digits(n) || !digits(pid) {
        return None;
    }
    pid.parse().ok().map(WorkFileOwner::Process)
}

/// Files in `work_dir` that nothing will use again: those of jobs not in `unfinished` (queued
/// or running jobs), and step files of processes other than `worker_pid`, the worker now
/// running. What a crash left behind; a missing `work_dir` has none.
pub fn stale_work_files(
    work_dir: &Path,
    unfinished: &[i64],
    worker_pid: Option<u32>,
) -> io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(work_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut stale = Vec::new();
    for entry in entries {
        let entry = entry?;
        let owner = entry.file_name().to_str().and_then(work_file_owner);
        let in_use = match owner {
            None => true,
            Some(WorkFileOwner::Job(id)) => unfinished.contains(&id),
            Some(WorkFileOwner::Process(pid)) => worker_pid == Some(pid),
        };
        if !in_use {
            stale.push(entry.path());
        }
    }
    stale.sort();
    Ok(stale)
}

/// `p` as the filesystem sees it, also when it does not exist yet: its nearest existing
/// ancestor canonicalized (symlinks, `.` and `..` resolved), then the components that do not
/// exist yet applied lexically. Trailing and repeated slashes do not matter.
pub fn resolve_nearest_existing(p: &Path) -> io::Result<PathBuf> {
    let components: Vec<Component> = p.components().collect();
    for split in (0..=components.len()).rev() {
        let prefix: PathBuf = components[..split].iter().collect();
        let prefix = if prefix.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            prefix
        };
        match std::fs::canonicalize(&prefix) {
            Ok(mut resolved) => {
                for c in &components[split..] {
                    match c {
                        Component::ParentDir => {
                            resolved.pop();
                        }
                        Component::Normal(name) => resolved.push(name),
                        _ => {}
                    }
                }
                return Ok(resolved);
            }
            Err(e)
                if split > 0
                    && matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                    ) => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::from(io::ErrorKind::NotFound))
}

/// Refuses a backup directory that is the data directory or lies inside it: a base backup of
/// the cluster would carry every dump with it (and the dumps would share the data
/// directory's filesystem). Both paths are compared as resolved by
/// [`resolve_nearest_existing`], so `..`, symlinks and trailing slashes cannot hide it.
pub fn check_outside_data_directory(directory: &Path, data_directory: &Path) -> Result<(), String> {
    let resolve = |p: &Path| {
        resolve_nearest_existing(p).map_err(|e| format!("cannot resolve {}: {e}", p.display()))
    };
    let dir = resolve(directory)?;
    let data = resolve(data_directory)?;
    if !dir.starts_with(&data) {
        return Ok(());
    }
    let resolved = if dir.as_path() == directory {
        String::new()
    } else {
        format!(" (resolved: {})", dir.display())
    };
    Err(format!(
        "backup_ext.directory {}{resolved} is inside the data directory {}: a base backup of \
         the cluster would carry every dump with it; set backup_ext.directory to a directory \
         outside the data directory",
        directory.display(),
        data_directory.display()
    ))
}

/// Creates `dir` (and its parents) readable by the server's OS user only: backup folders and
/// the work directory hold dumps, stderr captures and restore lists.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    #[test]
    fn partial_names_give_their_job_id() {
        use super::job_id_of_partial;
        assert_eq!(
            job_id_of_partial("20261124T031500Z-job000000000042.dump.partial"),
            Some(42)
        );
        assert_eq!(
            job_id_of_partial("20261124T031500Z-job000000000042.dir.partial"),
            Some(42)
        );
        assert_eq!(
            job_id_of_partial("20261124T031500Z-job000000000042.dump"),
            None
        );
        assert_eq!(job_id_of_partial("notes-job12.partial"), None);
        assert_eq!(job_id_of_partial("x-job+00000000042.partial"), None);
    }

    use super::*;
    use chrono::TimeZone;

    fn safe(folder: &str) {
        assert!(!folder.is_empty());
        assert!(!folder.contains('/'));
        assert!(!folder.contains('\0'));
        assert!(!folder.starts_with('.'));
        assert_ne!(folder, GLOBALS_FOLDER);
        assert!(folder.len() <= 255);
        assert!(folder.bytes().all(|b| is_plain_byte(b) || b == b'%'));
    }

    #[test]
    fn plain_names_unchanged() {
        assert_eq!(database_folder("app"), "app");
        assert_eq!(database_folder("App_2.prod-1"), "App_2.prod-1");
        assert_eq!(database_folder("a.."), "a..");
    }

    #[test]
    fn hostile_names() {
        let cases = [
            ("a b", "a%20b"),
            ("it's", "it%27s"),
            ("\"q\"", "%22q%22"),
            ("a/b", "a%2Fb"),
            ("..", "%2E."),
            (".", "%2E"),
            (".hidden", "%2Ehidden"),
            ("../../etc", "%2E.%2F..%2Fetc"),
            ("ünï", "%C3%BCn%C3%AF"),
            ("100%", "100%25"),
            ("globals", "%67lobals"),
            ("Globals", "Globals"),
            ("globals2", "globals2"),
            ("", "%00"),
        ];
        for (name, expected) in cases {
            let f = database_folder(name);
            assert_eq!(f, expected, "{name:?}");
            safe(&f);
        }
    }

    #[test]
    fn encoding_is_injective_on_tricky_pairs() {
        let names = [
            "globals",
            "%67lobals",
            "a b",
            "a%20b",
            ".x",
            "%2Ex",
            "",
            "%00",
        ];
        let folders: Vec<String> = names.iter().map(|n| database_folder(n)).collect();
        for i in 0..folders.len() {
            for j in i + 1..folders.len() {
                assert_ne!(folders[i], folders[j], "{:?} vs {:?}", names[i], names[j]);
            }
        }
    }

    #[test]
    fn longest_names_fit() {
        let ascii = "x".repeat(63);
        assert_eq!(database_folder(&ascii), ascii);
        let worst = "/".repeat(63);
        let f = database_folder(&worst);
        assert_eq!(f.len(), 189);
        safe(&f);
        // 21 three-byte characters = 63 bytes.
        let f = database_folder(&"€".repeat(21));
        assert_eq!(f.len(), 189);
        safe(&f);
    }

    #[test]
    fn file_names_sort_by_time_then_id() {
        let t = Utc.with_ymd_and_hms(2026, 11, 24, 3, 15, 0).unwrap();
        assert_eq!(
            backup_file_name(t, 42, ".dump"),
            "20261124T031500Z-job000000000042.dump"
        );
        let later = Utc.with_ymd_and_hms(2026, 11, 24, 3, 15, 1).unwrap();
        let mut names = vec![
            backup_file_name(later, 1, ".sql"),
            backup_file_name(t, 1000, ".sql"),
            backup_file_name(t, 99, ".sql"),
        ];
        names.sort();
        assert_eq!(
            names,
            vec![
                "20261124T031500Z-job000000000099.sql",
                "20261124T031500Z-job000000001000.sql",
                "20261124T031501Z-job000000000001.sql",
            ]
        );
    }

    #[test]
    fn partial() {
        assert_eq!(
            partial_path(Path::new("/b/app/x.dump")),
            PathBuf::from("/b/app/x.dump.partial")
        );
        assert_eq!(
            partial_path(Path::new("/b/app/x.dir")),
            PathBuf::from("/b/app/x.dir.partial")
        );
    }

    #[test]
    fn inside_checks() {
        let root = Path::new("/var/backups");
        assert!(is_inside(root, Path::new("/var/backups/app/x.dump")));
        assert!(is_inside(root, Path::new("/var/backups/globals")));
        assert!(is_inside(
            Path::new("/var/backups/"),
            Path::new("/var/backups/a")
        ));
        assert!(!is_inside(root, Path::new("/var/backups")));
        assert!(!is_inside(root, Path::new("/var/backups/")));
        assert!(!is_inside(root, Path::new("/var/backups/.")));
        assert!(!is_inside(root, Path::new("/var/backups/../etc/passwd")));
        assert!(!is_inside(root, Path::new("/var/backups/app/../../etc")));
        assert!(!is_inside(root, Path::new("/var/backupsX/a")));
        assert!(!is_inside(root, Path::new("/etc/passwd")));
        assert!(!is_inside(root, Path::new("app/x.dump")));
        assert!(!is_inside(Path::new(""), Path::new("app/x.dump")));
        assert!(!is_inside(
            Path::new("/var/../var/backups"),
            Path::new("/var/../var/backups/a")
        ));
        let folder = database_folder("../../etc");
        assert!(is_inside(root, &root.join(folder).join("x")));
    }

    #[test]
    fn directories_in_the_data_directory_are_refused_however_spelt() {
        let tmp = crate::test_support::TempDir::new("datadir");
        let t = tmp.path().to_str().unwrap().to_string();
        let data = tmp.path().join("data");
        std::fs::create_dir_all(data.join("base")).unwrap();
        std::os::unix::fs::symlink(&data, tmp.path().join("link")).unwrap();
        std::os::unix::fs::symlink("data/base", tmp.path().join("relative")).unwrap();
        let refused = [
            format!("{t}/data"),
            format!("{t}/data/"),
            format!("{t}//data//x//"),
            format!("{t}/data/x"),
            format!("{t}/data/./x"),
            format!("{t}/data/base"),
            format!("{t}/data/new/deeper"),
            format!("{t}/data/../data/x"),
            format!("{t}/missing/../data/x"),
            format!("{t}/data/missing/../x"),
            format!("{t}/link"),
            format!("{t}/link/x"),
            format!("{t}/link/../link/x"),
            format!("{t}/relative/x"),
            format!("{t}/data/base/../../data"),
        ];
        for dir in &refused {
            let err = check_outside_data_directory(Path::new(dir), &data)
                .expect_err(&format!("{dir} was accepted"));
            assert!(err.contains(dir.as_str()), "{err}");
            assert!(
                err.contains(&format!("data directory {}", data.display())),
                "{err}"
            );
            assert!(err.contains("base backup"), "{err}");
        }
        // The data directory reached through a symlink, or spelt with a trailing slash.
        for data_spelt in [tmp.path().join("link"), PathBuf::from(format!("{t}/data/"))] {
            assert!(check_outside_data_directory(&data.join("x"), &data_spelt).is_err());
        }
        let accepted = [
            format!("{t}/data-backups"),
            format!("{t}/database"),
            format!("{t}/data/.."),
            format!("{t}/data/../backups"),
            format!("{t}/relative/../../x"),
            format!("{t}/missing/x"),
            format!("{t}/link/../backups"),
        ];
        for dir in &accepted {
            assert_eq!(
                check_outside_data_directory(Path::new(dir), &data),
                Ok(()),
                "{dir}"
            );
        }
    }

    #[test]
    fn resolving_keeps_what_does_not_exist_yet() {
        let tmp = crate::test_support::TempDir::new("resolve");
        let real = std::fs::canonicalize(tmp.path()).unwrap();
        std::fs::create_dir(tmp.path().join("a")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("a"), tmp.path().join("l")).unwrap();
        let r = |s: &str| resolve_nearest_existing(&tmp.path().join(s)).unwrap();
        assert_eq!(r("a"), real.join("a"));
        assert_eq!(r("l/b/c/"), real.join("a/b/c"));
        assert_eq!(r("x/../a/./b"), real.join("a/b"));
        assert_eq!(r("a/x/.."), real.join("a"));
        assert_eq!(r("a/../.."), real.parent().unwrap());
    }

    #[test]
    fn work_files_by_owner() {
        use WorkFileOwner::{Job, Process};
        assert_eq!(work_file_owner("job-42.stderr"), Some(Job(42)));
        assert_eq!(work_file_owner("job-7.list"), Some(Job(7)));
        assert_eq!(work_file_owner("job-7.indexes.sql"), Some(Job(7)));
        assert_eq!(work_file_owner("job-7.data.list"), Some(Job(7)));
        assert_eq!(work_file_owner("job-7.other.sql"), None);
        assert_eq!(
            work_file_owner("pg_restore-1234-0.stderr"),
            Some(Process(1234))
        );
        assert_eq!(work_file_owner("psql-99-17.stderr"), Some(Process(99)));
        assert_eq!(work_file_owner("job-1-2.stderr"), Some(Process(1)));
        for other in [
            "job-.stderr",
            "job-42.dump",
            "job-42.stderr.bak",
            "job-x.list",
            "job-+4.list",
            "-1-2.stderr",
            "psql-1-2.log",
            "psql-x-2.stderr",
            "psql-1-.stderr",
            "notes.txt",
            "",
        ] {
            assert_eq!(work_file_owner(other), None, "{other:?}");
        }
    }

    #[test]
    fn stale_work_files_spare_unfinished_jobs_and_the_live_worker() {
        let tmp = crate::test_support::TempDir::new("work");
        for name in [
            "job-1.stderr",
            "job-1.list",
            "job-2.stderr",
            "job-3.list",
            "pg_restore-100-0.stderr",
            "dropdb-100-1.stderr",
            "psql-200-2.stderr",
            "keep.txt",
        ] {
            std::fs::write(tmp.path().join(name), b"x").unwrap();
        }
        let names = |v: Vec<PathBuf>| -> Vec<String> {
            v.iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        let stale = stale_work_files(tmp.path(), &[2], Some(200)).unwrap();
        assert_eq!(
            names(stale),
            [
                "dropdb-100-1.stderr",
                "job-1.list",
                "job-1.stderr",
                "job-3.list",
                "pg_restore-100-0.stderr"
            ]
        );
        let stale = stale_work_files(tmp.path(), &[1, 2, 3], None).unwrap();
        assert_eq!(
            names(stale),
            [
                "dropdb-100-1.stderr",
                "pg_restore-100-0.stderr",
                "psql-200-2.stderr"
            ]
        );
        let missing = tmp.path().join("missing");
        assert!(stale_work_files(&missing, &[], None).unwrap().is_empty());
    }

    #[test]
    fn private_dirs_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = crate::test_support::TempDir::new("private");
        let dir = tmp.path().join("a/b");
        create_private_dir(&dir).unwrap();
        create_private_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
