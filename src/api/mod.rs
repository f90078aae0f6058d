//! The SQL surface: small functions that validate, write the catalog and return.

pub mod backup;
mod jobs;
mod restore;
mod retention;
mod status;
