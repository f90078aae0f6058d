//! `set_encryption()`: the age recipients new backups are encrypted to. Superusers only: the
//! policy decides who can read every future backup.

use backup_core::crypt::validate_recipients;
use pgrx::prelude::*;

use crate::catalog;
use crate::error::{BackupError, OrReport};
use crate::privileges;

/// Sets the recipients of new backups of `dbname` (NULL: the default for every database,
/// 'globals': globals backups); NULL or an empty array turns that policy off. Backups already
/// written keep the recipients they were encrypted to.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn set_encryption(
    recipients: Option<Vec<Option<String>>>,
    dbname: default!(Option<String>, "NULL"),
) {
    let (caller, _owner) = privileges::enter();
    caller.require_superuser_for(
        "set the encryption of backups",
        "The recipients decide who can read every future backup; ask a superuser.",
    );
    let list: Vec<String> = match recipients {
        None => Vec::new(),
        Some(items) => items
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    BackupError::Request(backup_core::RequestError::invalid(
                        "a recipient must not be NULL",
                        "List age1… public keys, or pass NULL to turn encryption off.",
                    ))
                    .report()
                })
            })
            .collect(),
    };
    let list = validate_recipients(&list).or_report();
    catalog::set_encryption_policy(dbname.as_deref(), &list).or_report();
}
