//! Opening a storage target from its catalog row: URL, options and the credentials named by
//! `backup_ext.s3_credentials_file`. Used by `add_storage()` and by the worker; the transfers
//! themselves run on threads of their own in `backup_core::storage`.

use backup_core::storage::{Credentials, StorageOptions, StorageUrl, Store};
use backup_core::{ErrorKind, RequestError};

use crate::catalog::{self, StorageTarget};
use crate::error::BackupError;
use crate::settings;

/// The credentials of an S3 target, read from the file named by the setting.
fn credentials(profile: &str) -> Result<Credentials, RequestError> {
    let Some(file) = settings::s3_credentials_file() else {
        return Err(RequestError::new(
            ErrorKind::ConfigFile,
            "backup_ext.s3_credentials_file is not set, so S3 storage targets have no credentials",
            "Point it at an AWS shared-credentials file readable by the server's OS user \
             (ALTER SYSTEM SET backup_ext.s3_credentials_file = '/etc/backup_ext/s3.ini'; SELECT pg_reload_conf();).",
        ));
    };
    Credentials::from_file(&file, profile)
}

/// The store behind a target row.
pub fn open(target: &StorageTarget) -> Result<Store, RequestError> {
    let url = StorageUrl::parse(&target.url)?;
    let options = StorageOptions::from_json(&url, &target.options, settings::s3_allow_http())?;
    let credentials = match options.s3() {
        Some(s3) => Some(credentials(&s3.profile)?),
        None => None,
    };
    Store::new(&url, &options, credentials)
}

/// The store of a target by name; `None` for `local` (backup_ext.directory).
pub fn open_named(name: &str) -> Result<Option<Store>, BackupError> {
    if name == catalog::LOCAL_STORAGE {
        return Ok(None);
    }
    let target = catalog::storage_target(name)?.ok_or_else(|| BackupError::NoSuchStorage {
        name: name.to_string(),
        known: catalog::storage_names().unwrap_or_default(),
    })?;
    Ok(Some(open(&target)?))
}

/// One authenticated request, so that a typo in a bucket, endpoint or key shows at once.
pub fn check(store: &Store) -> Result<(), RequestError> {
    store.check().map_err(Into::into)
}

/// `backup_ext.directory` as a store, for listing what lies there like any target.
pub fn local_store() -> Store {
    let url = StorageUrl::File {
        root: settings::directory(),
    };
    Store::new(&url, &StorageOptions::File, None)
        .unwrap_or_else(|e| BackupError::Request(e).report())
}
