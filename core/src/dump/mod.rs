//! Backups: requests for pg_dump and pg_dumpall, their command lines and runs.

pub mod argv;
pub mod compress;
pub mod options;
pub mod progress;
pub mod request;
pub mod run;
