//! Restores: requests, command lines, runs, and what they need to know
//! about the archive and the target database.

pub mod argv;
pub mod check;
pub mod login;
pub mod owners;
pub mod preflight;
pub mod request;
pub mod run;
pub mod script_entries;
pub mod source;
pub mod table;
pub mod target;
pub mod toc;
