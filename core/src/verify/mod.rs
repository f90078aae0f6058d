//! Verifying a backup: reading it back, test restores and row counts.

pub mod checked_restore;
pub mod rows;
pub mod run;
