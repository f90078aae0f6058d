//! The SQL surface: small functions that validate, write the catalog and return.

mod backup;
mod jobs;
