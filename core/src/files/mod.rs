//! Backup files on disk: where they go, what they hold.

pub mod dir_hasher;
pub mod free_space;
pub mod import;
pub mod manifest;
pub mod paths;
pub mod plain;
pub mod publish;
pub mod sidecar;
