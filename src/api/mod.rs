//! The SQL surface: small functions that validate, write the catalog and return.

pub mod backup;
mod encryption;
mod jobs;
mod restore;
mod retention;
pub mod schedules;
mod status;
mod storage;
