//! Harness for the end-to-end tests in tests/.
//!
//! Every test talks to a real PostgreSQL 15 cluster started from the system
//! binaries with `backup_ext` preloaded. Clusters live in
//! `/tmp/backup_ext-e2e/<name>-<pid>` and are owned by the `postgres` user,
//! because initdb and postgres refuse to run as root.
//!
//! Set `BACKUP_EXT_KEEP=1` to keep the scratch directory (and its server
//! log) after the tests; the server is stopped either way.

mod cluster;
mod files;
mod jobs;
mod ops;
mod paths;
mod process;
mod restore;
mod retention;
mod sql;

use std::time::Duration;

pub use cluster::*;
pub use files::*;
pub use jobs::*;
pub use ops::*;
pub use paths::*;
pub use postgres;
pub use process::*;
pub use restore::*;
pub use retention::*;
pub use sql::*;

/// Where the PostgreSQL 15 server and client programs live.
pub const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// The installed extension library; clusters preload it.
pub const EXTENSION_SO: &str = "/usr/lib/postgresql/15/lib/backup_ext.so";
/// Parent of every scratch directory.
pub const SCRATCH_ROOT: &str = "/tmp/backup_ext-e2e";
/// The OS user that owns clusters and runs server-side tools.
pub const PG_USER: &str = "postgres";

/// Final job statuses.
pub const FINAL: &[&str] = &["succeeded", "failed", "cancelled"];

/// Generous upper bound for jobs on the small sample database.
pub const SMALL_JOB: Duration = Duration::from_secs(60);
