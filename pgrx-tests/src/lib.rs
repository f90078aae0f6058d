//! Harness for the end-to-end tests in tests/.
//!
//! Every test talks to a real PostgreSQL cluster with `backup_ext` preloaded,
//! started from the binaries in `BACKUP_EXT_PG_BIN` (default: the Debian
//! PostgreSQL 15 in `/usr/lib/postgresql/15/bin`; `scripts/test.sh` runs the
//! suite once per major with the trees `scripts/setup.sh` installs). Clusters live in
//! `/tmp/backup_ext-e2e/<name>-<pid>` and are owned by the `postgres` user,
//! because initdb and postgres refuse to run as root.
//!
//! Tests that need S3 start their own [`Seaweed`] (`weed mini` on free loopback ports, in
//! `/tmp/backup_ext-e2e/s3-<name>-<n>-<pid>`) from the Python environment that
//! `scripts/setup.sh` makes in `/opt/backup_ext-py` (`BACKUP_EXT_PY`), and inspect its bucket
//! with boto3 from there.
//!
//! Set `BACKUP_EXT_KEEP=1` to keep the scratch directory (and its server
//! log) after the tests; the servers are stopped either way.

mod age_keys;
mod cluster;
mod files;
mod jobs;
mod ops;
mod paths;
mod process;
mod receivers;
mod restore;
mod retention;
mod seaweed;
mod sql;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

pub use age_keys::*;
pub use cluster::*;
pub use files::*;
pub use jobs::*;
pub use ops::*;
pub use paths::*;
pub use postgres;
pub use process::*;
pub use receivers::*;
pub use restore::*;
pub use retention::*;
pub use seaweed::*;
pub use sql::*;

/// The PostgreSQL used when `BACKUP_EXT_PG_BIN` is not set.
pub const DEFAULT_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// Where the server and client programs of the PostgreSQL under test live.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        std::env::var_os("BACKUP_EXT_PG_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_BIN_DIR))
    })
}

/// `pg_config --<what>` of the PostgreSQL under test.
pub fn pg_config(what: &str) -> String {
    pg_config_of(bin_dir(), what)
}

/// `pg_config --<what>` of the PostgreSQL in `bin`.
pub fn pg_config_of(bin: &Path, what: &str) -> String {
    let program = bin.join("pg_config");
    let out = std::process::Command::new(&program)
        .arg(format!("--{what}"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} --{what} failed",
        program.display()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The major version of the PostgreSQL under test (15, 16, 17, 18).
pub fn pg_major() -> u32 {
    static MAJOR: OnceLock<u32> = OnceLock::new();
    *MAJOR.get_or_init(|| {
        let version = pg_config("version");
        version
            .strip_prefix("PostgreSQL ")
            .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|m| m.parse().ok())
            .unwrap_or_else(|| panic!("cannot read a major version from {version:?}"))
    })
}

/// How `pg_restore --list` of the major under test describes an uncompressed archive (16 and
/// later name the method).
pub fn uncompressed_listing() -> &'static str {
    if pg_major() >= 16 {
        "Compression: none"
    } else {
        "Compression: 0"
    }
}

/// The installed extension library of the PostgreSQL under test; clusters preload it.
pub fn extension_so() -> PathBuf {
    PathBuf::from(pg_config("pkglibdir")).join("backup_ext.so")
}

/// The directory holding the PostgreSQL trees `scripts/setup.sh` installs (16, 17, 18).
pub fn pg_trees() -> PathBuf {
    std::env::var_os("BACKUP_EXT_PG_TREES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/backup_ext-pg"))
}

/// The bin directory of another major: the Debian 15 or a tree under [`pg_trees`].
pub fn bin_dir_of(major: u32) -> PathBuf {
    if major == 15 {
        PathBuf::from(DEFAULT_BIN_DIR)
    } else {
        pg_trees().join(major.to_string()).join("bin")
    }
}
/// Parent of every scratch directory.
pub const SCRATCH_ROOT: &str = "/tmp/backup_ext-e2e";
/// The OS user that owns clusters and runs server-side tools.
pub const PG_USER: &str = "postgres";

/// Final job statuses.
pub const FINAL: &[&str] = &["succeeded", "failed", "cancelled"];

/// Generous upper bound for jobs on the small sample database.
pub const SMALL_JOB: Duration = Duration::from_secs(60);
