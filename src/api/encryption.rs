//! `set_encryption()`: the age recipients new backups are encrypted to, and
//! `check_encryption()`: whether the identity file reads them. Superusers only: the policy
//! decides who can read every future backup.

use backup_core::crypt::check::IdentityCheck;
use backup_core::crypt::{fingerprint, validate_recipients, DecryptFailure};
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

/// Whether `backup_ext.identity_file` can read what is encrypted: for every recipient of every
/// policy, a test message encrypted to it alone is decrypted (`source` 'policy'); for every
/// recipient fingerprint of live encrypted backups, whether the file holds that key
/// (`source` 'backups', with the backups' count in `detail`). A backup opens when any one of
/// its recipients is ok. A missing, unreadable or non-age identity file is an error (F0000).
// The row type must be spelled out for the SQL generator.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn check_encryption() -> TableIterator<
    'static,
    (
        name!(source, String),
        name!(database, Option<String>),
        name!(recipient, Option<String>),
        name!(fingerprint, String),
        name!(ok, bool),
        name!(detail, String),
    ),
> {
    let (caller, _owner) = privileges::enter();
    caller.require_superuser_for(
        "check the encryption keys",
        "The check reads the identity file named by backup_ext.identity_file; ask a superuser.",
    );
    let identity = crate::settings::identity_file();
    let check = IdentityCheck::load(identity.as_deref())
        .map_err(|e| match e {
            DecryptFailure::NoIdentity => backup_core::RequestError::new(
                backup_core::ErrorKind::ConfigFile,
                "backup_ext.identity_file is not set, so no encrypted backup can be read",
                e.hint(),
            ),
            other => other.into(),
        })
        .or_report();
    let mut rows = Vec::new();
    for (database, recipients) in catalog::encryption_policies().or_report() {
        for recipient in recipients {
            let (ok, detail) = match check.opens(&recipient) {
                Ok(()) => (
                    true,
                    "the identity file opens a message encrypted to it".into(),
                ),
                Err(why) => (false, why),
            };
            rows.push((
                "policy".to_string(),
                database.clone(),
                Some(recipient.clone()),
                fingerprint(&recipient),
                ok,
                detail,
            ));
        }
    }
    for (print, backups, newest) in catalog::backup_fingerprints().or_report() {
        let recipient = check.recipient_of(&print).map(str::to_string);
        let detail = format!(
            "{backups} live backup{} encrypted to it, the newest {newest}{}",
            if backups == 1 { "" } else { "s" },
            if recipient.is_some() {
                ""
            } else {
                "; the identity file holds no key with this fingerprint"
            }
        );
        rows.push((
            "backups".to_string(),
            None,
            recipient.clone(),
            print,
            recipient.is_some(),
            detail,
        ));
    }
    TableIterator::new(rows)
}
