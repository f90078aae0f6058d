//! The parts of backup_ext that do not need a PostgreSQL backend: request
//! validation, command lines, file layout and running the dump tools.
//!
//! Keeping them free of pgrx means they are tested with plain `cargo test`,
//! and that the code running next to a child process (threads, signals)
//! cannot call into the server by mistake.

pub mod argv;
pub mod checked_restore;
pub mod child;
pub mod compress;
pub mod conninfo;
pub mod error;
pub mod format;
pub mod login;
pub mod manifest;
pub mod options;
pub mod owners;
pub mod paths;
pub mod progress;
pub mod request;
pub mod restore;
pub mod restore_argv;
pub mod restore_run;
pub mod retention;
pub mod rows;
pub mod run;
pub mod schedule;
pub mod status;
pub mod steps;
pub mod stream;
pub mod target;
pub mod toc;
pub mod verify_run;
pub mod version;

#[cfg(test)]
mod test_support;

pub use argv::{pg_dump_argv, pg_dumpall_globals_argv, pg_restore_list_argv};
pub use checked_restore::CheckedRestore;
pub use child::{describe_exit, set_wait_hook, stderr_tail, ChildGuard};
pub use compress::{validate_compress, Compression, CompressionMethod};
pub use conninfo::Connection;
pub use error::{ErrorKind, RequestError};
pub use format::Format;
pub use manifest::{directory_manifest, sync_tree, tree_size, Manifest, ManifestEntry};
pub use options::DumpOptions;
pub use owners::{archive_data_owners, plain_data_owners, script_is_restricted};
pub use paths::{
    backup_file_name, check_outside_data_directory, database_folder, is_inside, job_id_of_partial,
    partial_path, resolve_nearest_existing, stale_work_files, work_file_owner, WorkFileOwner,
    GLOBALS_FOLDER,
};
pub use progress::{count_in_background, scan_new_lines, ProgressTracker};
pub use request::{split_run_options, DumpRequest, GlobalsRequest, RUN_OPTION_KEYS};
pub use restore::{
    script_creates_public_schema, use_list_for, without_public_schema, RestoreOptions,
    RestoreRequest,
};
pub use restore_argv::{
    create_database_argv, createdb_argv, dropdb_argv, pg_restore_argv, pg_restore_to_stdout_argv,
    psql_query_argv, psql_script_argv, validate_database_name,
};
pub use restore_run::{RestorePlan, RestoreRun, RestoreStep};
pub use retention::{plan_retention, RetainCandidate, RetentionDecision, RetentionPolicy};
pub use rows::{compare_counts, count_copy_rows, open_plain_dump, parse_counts, row_count_query};
pub use run::{DumpRun, OutputKind, RunResult, RunSpec};
pub use schedule::{validate_schedule_name, CronSchedule, ScheduleCommand};
pub use status::JobStatus;
pub use steps::{
    list_archive, run_tool, JobResult, JobRun, ToolCommand, VerifyReport, CLEANUP_TIMEOUT,
};
pub use stream::{hash_file, publish, remove_output, StreamOutcome, StreamWriter};
pub use target::{
    access_sql, create_database_sql, quote_ident, set_role_sql, DatabaseGrant, SourceAccess,
};
pub use toc::{parse_toc, TocEntry, TocParseError};
pub use verify_run::{ArchiveRows, TestRestorePlan, VerifyPlan, VerifyRun};
pub use version::parse_tool_version;
