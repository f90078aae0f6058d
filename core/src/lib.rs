//! The parts of backup_ext that do not need a PostgreSQL backend: request
//! validation, command lines, file layout and running the dump tools.
//!
//! Keeping them free of pgrx means they are tested with plain `cargo test`,
//! and that the code running next to a child process (threads, signals)
//! cannot call into the server by mistake.

pub mod alerts;
pub mod conninfo;
pub mod crypt;
pub mod dump;
pub mod error;
pub mod files;
pub mod format;
pub mod job;
pub mod process;
pub mod restore;
pub mod retention;
pub mod schedule;
pub mod storage;
pub mod verify;

/// The per-job login, also reachable under its former path.
pub use restore::login;

#[cfg(test)]
mod test_support;

pub use conninfo::Connection;
pub use dump::argv::{pg_dump_argv, pg_dumpall_globals_argv, pg_restore_list_argv};
pub use dump::compress::{validate_compress, Compression, CompressionMethod, DumpTool};
pub use dump::options::DumpOptions;
pub use dump::progress::{count_in_background, scan_new_lines, ProgressTracker};
pub use dump::request::{split_run_options, DumpRequest, GlobalsRequest, RUN_OPTION_KEYS};
pub use dump::run::{DumpRun, ExpectedOutput, OutputKind, RunResult, RunSpec};
pub use error::{ErrorKind, RequestError};
pub use files::free_space::{free_space, FreeSpaceRule, DEFAULT_MIN_FREE_SPACE};
pub use files::manifest::{directory_manifest, sync_tree, tree_size, Manifest, ManifestEntry};
pub use files::paths::{
    backup_file_name, check_outside_data_directory, create_private_dir, database_folder, is_inside,
    job_id_of_partial, partial_path, resolve_nearest_existing, stale_work_files, work_file_owner,
    WorkFileOwner, GLOBALS_FOLDER,
};
pub use files::plain::{
    header_settings, open_plain_dump, plain_dump_reader, without_server_attribute_option,
    ScriptFilter, SERVER_ATTRIBUTE_OPTION,
};
pub use files::publish::{hash_file, publish, remove_output, write_file_atomically};
pub use files::sidecar::{object_key, sidecar_key, Sidecar, SIDECAR_VERSION};
pub use format::Format;
pub use job::{JobKind, JobResult, JobRun, JobStatus, VerifyReport};
pub use process::capabilities::{
    archive_version, probe, version_of, ArchiveVersion, ToolCapabilities,
};
pub use process::child::{describe_exit, set_wait_hook, stderr_tail, ChildGuard};
pub use process::command::ToolCommand;
pub use process::stall::StallWatch;
pub use process::step::{list_archive, run_tool, CLEANUP_TIMEOUT};
pub use process::stream::{StreamOutcome, StreamWriter};
pub use process::version::parse_tool_version;
pub use restore::argv::{
    create_database_argv, createdb_argv, dropdb_argv, pg_restore_argv, pg_restore_data_argv,
    pg_restore_entries_argv, pg_restore_schema_argv, pg_restore_script_argv,
    pg_restore_selected_list_argv, pg_restore_selected_schema_argv, pg_restore_to_stdout_argv,
    psql_query_argv, psql_script_argv, psql_table_argv, validate_database_name,
};
pub use restore::check::{ArchiveRowsFrom, RestoredRows, RowCheck};
pub use restore::owners::{archive_data_owners, plain_data_owners, script_is_restricted};
pub use restore::preflight::{
    build_plan, estimate_restored_size, first_blocking, script_grantees, Blocker, Contents,
    PlanFacts, PlanRow, ServerFacts, SpaceFacts, TargetFacts, ToolFacts, BLOCKING_PREFIX,
};
pub use restore::request::{
    script_creates_public_schema, use_list_for, use_list_to_write, without_public_schema,
    RestoreOptions, RestoreRequest,
};
pub use restore::run::{RestorePlan, RestoreRun, RestoreStep};
pub use restore::script_entries::{read_script_entries, ScriptEntries};
pub use restore::source::{ArchiveSource, StoredObject};
pub use restore::table::{
    act_as_owner_sql, data_only_check_sql, default_into_name, qualified, relation_facts_query,
    restored_suffix, table_definition, table_entries, validate_relation_name, CopyInto,
    TableDefinition, TableEntries, TableTarget,
};
pub use restore::target::{
    access_sql, create_database_sql, quote_ident, set_role_sql, DatabaseGrant, SourceAccess,
};
pub use restore::toc::{parse_toc, TocEntry, TocParseError};
pub use retention::{plan_retention, RetainCandidate, RetentionDecision, RetentionPolicy};
pub use schedule::{validate_schedule_name, CronSchedule, ScheduleCommand};
pub use verify::checked_restore::CheckedRestore;
pub use verify::rows::{compare_counts, count_copy_rows, parse_counts, row_count_query};
pub use verify::run::{ArchiveRows, TestRestorePlan, VerifyPlan, VerifyRun};
