//! The SQL surface: small functions that validate, write the catalog and return.

mod alerts;
pub mod backup;
mod encryption;
mod import;
mod jobs;
mod restore;
mod restore_plan;
mod restore_table;
mod retention;
pub mod schedules;
mod status;
mod storage;
