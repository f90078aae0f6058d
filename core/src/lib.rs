//! The parts of backup_ext that do not need a PostgreSQL backend: request
//! validation, command lines, file layout and running the dump tools.
//!
//! Keeping them free of pgrx means they are tested with plain `cargo test`,
//! and that the code running next to a child process (threads, signals)
//! cannot call into the server by mistake.

pub mod argv;
pub mod child;
pub mod compress;
pub mod conninfo;
pub mod error;
pub mod format;
pub mod manifest;
pub mod options;
pub mod paths;
pub mod request;
pub mod run;
pub mod status;
pub mod stream;
pub mod toc;
pub mod version;

#[cfg(test)]
mod test_support;

pub use argv::{pg_dump_argv, pg_dumpall_globals_argv, pg_restore_list_argv};
pub use child::{describe_exit, stderr_tail, ChildGuard};
pub use compress::{validate_compress, Compression, CompressionMethod};
pub use conninfo::Connection;
pub use error::{ErrorKind, RequestError};
pub use format::Format;
pub use manifest::{directory_manifest, sync_tree, Manifest, ManifestEntry};
pub use options::DumpOptions;
pub use paths::{backup_file_name, database_folder, is_inside, partial_path, GLOBALS_FOLDER};
pub use request::{DumpRequest, GlobalsRequest};
pub use run::{DumpRun, OutputKind, RunResult, RunSpec};
pub use status::JobStatus;
pub use stream::{publish, remove_output, StreamOutcome, StreamWriter};
pub use toc::{parse_toc, TocEntry, TocParseError};
pub use version::parse_tool_version;
