//! Restore, inspect and verify: `restore_backup()`, `backup_contents()`, `verify_backup()`.
//! Everything a restore could trip over is checked here, before anything is enqueued, so a bad
//! request never touches the target database.

use std::path::Path;

use std::time::Duration;

use backup_core::{
    archive_data_owners, directory_manifest, first_blocking, hash_file, list_archive, parse_toc,
    pg_restore_list_argv, plain_data_owners, plain_dump_reader, script_is_restricted,
    split_run_options, tree_size, validate_database_name, ArchiveSource, Format, JobKind,
    RequestError, RestoreRequest, StoredObject, TocEntry,
};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::json;

use crate::catalog::{self, BackupRecord, NewJob};
use crate::enqueue::timeout_seconds;
use crate::error::{BackupError, OrReport};
use crate::privileges::{self, Caller};
use crate::{settings, wake};

/// Files up to this size are hashed at call time, so a corrupted small backup is refused before
/// a job exists; larger ones are hashed by the worker before it touches the target.
const HASH_AT_CALL_TIME_BYTES: u64 = 256 * 1024 * 1024;

/// A backup the caller may use for `what` (CONNECT on its database; globals: superuser) and
/// that succeeded.
pub(super) fn succeeded_backup(backup_id: i64, caller: &Caller, what: &str) -> BackupRecord {
    let Some(rec) = catalog::backup_record(backup_id).or_report() else {
        BackupError::NoSuchBackup(backup_id).report()
    };
    caller.require_backup_access(
        rec.kind == Ok(JobKind::Database),
        rec.database.as_deref(),
        what,
    );
    if rec.status != "succeeded" {
        BackupError::BackupNotUsable {
            backup_id,
            status: rec.status,
        }
        .report();
    }
    rec
}

/// Where a backup's archive can be read now: its file, or its object in a storage target,
/// which must exist with the recorded size (its SHA-256 is checked by the job as it reads it,
/// or at once here for a local file that is small enough). Nothing is downloaded.
fn locate(rec: &BackupRecord) -> Result<ArchiveSource, BackupError> {
    if rec.storage == catalog::LOCAL_STORAGE {
        return existing_path(rec).map(|p| ArchiveSource::File(p.to_path_buf()));
    }
    let key = rec.key.clone().unwrap_or_default();
    let store = crate::storage::open_named(&rec.storage)?
        .ok_or_else(|| BackupError::Internal("a remote backup in 'local'".into()))?;
    let expected_size = rec.size_bytes.unwrap_or_default().max(0) as u64;
    let object = |store| {
        ArchiveSource::Object(StoredObject {
            store,
            storage: rec.storage.clone(),
            key: key.clone(),
            expected_size,
            expected_sha256: rec.sha256.clone().unwrap_or_default(),
        })
    };
    if archive_format(rec) == Format::Directory {
        // Its files lie under <key>/.
        let files = store
            .list(&format!("{key}/"))
            .map_err(|e| BackupError::Request(e.into()))?;
        let size: u64 = files.iter().map(|f| f.size).sum();
        return if files.is_empty() {
            Err(BackupError::BackupFileMissing {
                backup_id: rec.backup_id,
                path: format!("{key}/ in storage \"{}\"", rec.storage),
            })
        } else if size != expected_size {
            Err(BackupError::BackupCorrupted {
                backup_id: rec.backup_id,
                detail: format!(
                    "the files under {key}/ in storage \"{}\" hold {size} bytes, {expected_size} \
                     were recorded",
                    rec.storage
                ),
            })
        } else {
            Ok(object(store))
        };
    }
    match store.head(&key) {
        Ok(None) => Err(BackupError::BackupFileMissing {
            backup_id: rec.backup_id,
            path: format!("{key} in storage \"{}\"", rec.storage),
        }),
        Ok(Some(info)) if info.size != expected_size => Err(BackupError::BackupCorrupted {
            backup_id: rec.backup_id,
            detail: format!(
                "{key} in storage \"{}\" is {} bytes, {expected_size} were recorded",
                rec.storage, info.size
            ),
        }),
        Ok(Some(info))
            if rec.etag.is_some() && info.etag.as_deref().map(normalise) != rec.etag.as_deref().map(normalise) =>
        {
            Err(BackupError::BackupCorrupted {
                backup_id: rec.backup_id,
                detail: format!(
                    "{key} in storage \"{}\" was replaced after it was written: its ETag is {}, {} was recorded",
                    rec.storage,
                    info.etag.as_deref().unwrap_or("missing"),
                    rec.etag.as_deref().unwrap_or_default()
                ),
            })
        }
        Ok(Some(_)) => Ok(object(store)),
        Err(e) => Err(BackupError::Request(e.into())),
    }
}

/// An ETag without the quotes some services put around it.
fn normalise(etag: &str) -> &str {
    etag.trim_matches('"')
}

/// The copy of a backup a call reads: the one in `storage` when named, else the primary, or,
/// when the primary cannot be read, the first copy that can (with a NOTICE). Returns the
/// record as read from there and its source.
pub(super) fn choose_copy(
    rec: &BackupRecord,
    storage: Option<&str>,
) -> (BackupRecord, ArchiveSource) {
    if let Some(storage) = storage {
        let Some(copy) = rec.at_copy(storage).or_report() else {
            let copies = catalog::copies_of(rec.backup_id).or_report();
            let names: Vec<String> = std::iter::once(rec.storage.clone())
                .chain(copies.into_iter().map(|(s, _)| s))
                .collect();
            BackupError::Request(RequestError::new(
                backup_core::ErrorKind::UndefinedObject,
                format!(
                    "backup {} has no copy in storage \"{storage}\"",
                    rec.backup_id
                ),
                format!(
                    "It can be read from: {}. See the view backup_ext.copies.",
                    names.join(", ")
                ),
            ))
            .report()
        };
        let source = locate(&copy).or_report();
        return (copy, source);
    }
    let primary_error = match locate(rec) {
        Ok(source) => return (rec.clone(), source),
        Err(e) => e,
    };
    for (storage, _) in catalog::copies_of(rec.backup_id).or_report() {
        let Some(copy) = rec.at_copy(&storage).or_report() else {
            continue;
        };
        if let Ok(source) = locate(&copy) {
            notice!(
                "backup {} cannot be read from storage \"{}\" ({}); using its copy in storage \"{storage}\"",
                rec.backup_id,
                rec.storage,
                primary_error.message()
            );
            return (copy, source);
        }
    }
    primary_error.report()
}

/// An encrypted backup read through decryption, after checking that the configured identity
/// opens its header: a missing or wrong identity is refused here, before any job touches a
/// database.
pub(super) fn decrypting(rec: &BackupRecord, stored: &ArchiveSource) -> ArchiveSource {
    let source = stored
        .clone()
        .decrypted_if(rec.encrypted, settings::identity_file());
    source
        .check_decryptable()
        .map_err(|e| BackupError::Request(RequestError::from(e)))
        .or_report();
    source
}

fn existing_path(rec: &BackupRecord) -> Result<&Path, BackupError> {
    let path = rec.path.as_deref().unwrap_or_default();
    if path.is_empty() || !Path::new(path).exists() {
        return Err(BackupError::BackupFileMissing {
            backup_id: rec.backup_id,
            path: path.to_string(),
        });
    }
    Ok(Path::new(path))
}

pub(super) fn archive_format(rec: &BackupRecord) -> Format {
    Format::parse(&rec.format).or_report()
}

/// The configured pg_restore must read the archive's format version: an archive written by a
/// newer pg_dump is refused here, naming the tools that read it, rather than failing in the
/// worker. A header that cannot be read is left to the integrity checks.
pub(super) fn check_readable(rec: &BackupRecord, source: &ArchiveSource) {
    let Ok(Some(version)) = source.archive_version(archive_format(rec)) else {
        return;
    };
    let (major, reads_up_to) = match crate::tools::restore_reads() {
        Ok(found) => found,
        Err(e) => BackupError::ToolFailed(format!("cannot probe pg_restore: {e}")).report(),
    };
    if version > reads_up_to {
        BackupError::Request(RequestError::unsupported(
            format!(
                "backup {} is an archive of version {version}, which the configured \
                 pg_restore {major} cannot read (it reads up to {reads_up_to})",
                rec.backup_id
            ),
            format!(
                "Set backup_ext.bin_dir to a directory with {}; newer tools restore into \
                 older servers too.",
                version.readers()
            ),
        ))
        .report();
    }
}

/// Size always; SHA-256 too when the backup is small enough to hash within the call. An object
/// in a storage target had its size checked when it was located; the job checks its SHA-256
/// as it reads it, before the target is touched.
pub(super) fn check_integrity(rec: &BackupRecord, source: &ArchiveSource) {
    let Some(path) = source.path() else {
        return;
    };
    let corrupted = |detail: String| BackupError::BackupCorrupted {
        backup_id: rec.backup_id,
        detail,
    };
    let expected_sha = rec.sha256.clone().unwrap_or_default();
    let expected_size = rec.size_bytes.unwrap_or(-1);
    let unreadable = |e: std::io::Error| corrupted(format!("cannot read {}: {e}", path.display()));
    let size = if path.is_dir() {
        tree_size(path)
    } else {
        std::fs::metadata(path)
            .map(|m| m.len())
            .map_err(unreadable)
            .or_report()
    };
    // Hash only what can be hashed within the call; the worker checks bigger backups before it
    // touches the target.
    let sha = (size as i64 == expected_size && size <= HASH_AT_CALL_TIME_BYTES).then(|| {
        if path.is_dir() {
            directory_manifest(path)
                .map(|m| m.sha256)
                .map_err(unreadable)
                .or_report()
        } else {
            hash_file(path)
                .map(|(_, sha)| sha)
                .map_err(unreadable)
                .or_report()
        }
    });
    if size as i64 != expected_size {
        corrupted(format!(
            "size is {size} bytes, {expected_size} were recorded"
        ))
        .report();
    }
    if let Some(sha) = sha {
        if sha != expected_sha {
            corrupted(format!("sha256 is {sha}, {expected_sha} was recorded")).report();
        }
    }
}

/// How long reading a table of contents may take at call time; `statement_timeout` and
/// `pg_cancel_backend()` end it sooner.
pub(super) const LIST_TIMEOUT: Duration = Duration::from_secs(600);

/// While a backend waits for pg_restore: stop when its query is cancelled (or times out) or
/// the backend is told to end; check_for_interrupts!() then raises the matching error.
fn interrupt_pending() -> bool {
    unsafe { pg_sys::QueryCancelPending != 0 || pg_sys::ProcDiePending != 0 }
}

/// `pg_restore --list` of an archive, parsed. Bounded, and cancellable like any query.
pub(super) fn read_contents(rec: &BackupRecord, source: &ArchiveSource) -> (String, Vec<TocEntry>) {
    if rec.kind != Ok(JobKind::Database) || archive_format(rec) == Format::Plain {
        BackupError::Request(RequestError::unsupported(
            format!(
                "backup {} is a plain SQL script and has no table of contents",
                rec.backup_id
            ),
            "Table-of-contents listings and toc_ids need a custom, directory or tar backup.",
        ))
        .report();
    }
    let bin_dir = settings::bin_dir();
    let listing = read_archive(rec, source, "pg_restore --list", &|path| {
        pg_restore_list_argv(&bin_dir, path)
    });
    let entries = parse_toc(&listing)
        .map_err(|e| BackupError::ToolFailed(format!("unexpected pg_restore --list output: {e}")))
        .or_report();
    (listing, entries)
}

/// What one fixed query prints when psql runs it in database `db` (a backend sees only its own
/// database); `what` names what is read, in errors. Bounded, and cancellable like any query.
pub(super) fn query_in_database(db: &str, sql: &str, what: &str) -> String {
    let conn = crate::tools::tool_connection()
        .map_err(BackupError::ToolFailed)
        .or_report();
    let argv = backup_core::psql_query_argv(&settings::bin_dir(), &conn, db, sql);
    let out = list_archive(&argv.into(), None, &call_work_dir(), LIST_TIMEOUT);
    pg_sys::check_for_interrupts!();
    out.map_err(|e| {
        BackupError::ToolFailed(format!("cannot read {what} of database \"{db}\": {e}"))
    })
    .or_report()
}

/// The directory the tools a call runs work in (their stderr, fetched table of contents).
pub(super) fn call_work_dir() -> std::path::PathBuf {
    backup_core::set_wait_hook(interrupt_pending);
    let work_dir = settings::directory().join(".work");
    backup_core::create_private_dir(&work_dir)
        .map_err(|e| BackupError::ToolFailed(format!("cannot create {}: {e}", work_dir.display())))
        .or_report();
    work_dir
}

/// What pg_restore prints about an archive with the arguments `argv` builds for the archive's
/// path; `what` names the command in errors. Bounded, and cancellable like any query.
pub(super) fn read_archive(
    rec: &BackupRecord,
    source: &ArchiveSource,
    what: &str,
    argv: &dyn Fn(&Path) -> (std::path::PathBuf, Vec<std::ffi::OsString>),
) -> String {
    let work_dir = call_work_dir();
    // A remote directory-format backup is read from its toc.dat alone, fetched into a work
    // directory of its own.
    let toc_only = match (source, archive_format(rec)) {
        (ArchiveSource::Object(o), Format::Directory) => {
            Some(fetch_toc(o, &work_dir, rec.backup_id).or_report())
        }
        _ => None,
    };
    let path = toc_only
        .as_ref()
        .map(|t| t.0.as_path())
        .or(source.path())
        .unwrap_or(Path::new(""));
    let stdin = (source.path().is_none() && toc_only.is_none()).then_some(source);
    let listed = list_archive(&argv(path).into(), stdin, &work_dir, LIST_TIMEOUT);
    drop(toc_only);
    // A cancel or statement_timeout that stopped the wait is reported as what it is.
    pg_sys::check_for_interrupts!();
    listed
        .map_err(|e| {
            BackupError::ToolFailed(format!(
                "{what} could not read backup {}: {e}",
                rec.backup_id
            ))
        })
        .or_report()
}

/// A directory removed when dropped.
struct WorkDir(std::path::PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = backup_core::remove_output(&self.0);
    }
}

/// The `toc.dat` of a directory-format backup in a storage target, alone in a new work
/// directory: what `pg_restore --list` reads.
fn fetch_toc(
    object: &StoredObject,
    work_dir: &Path,
    backup_id: i64,
) -> Result<WorkDir, BackupError> {
    let dir = WorkDir(work_dir.join(format!("call-{}-{backup_id}.toc", unsafe {
        pg_sys::MyProcPid
    })));
    let _ = backup_core::remove_output(&dir.0);
    let file = backup_core::create_private_dir(&dir.0)
        .and_then(|()| std::fs::File::create(dir.0.join("toc.dat")))
        .map_err(|e| BackupError::Internal(format!("cannot create {}: {e}", dir.0.display())))?;
    object
        .store
        .download(
            &format!("{}/toc.dat", object.key),
            file,
            std::sync::Arc::default(),
        )
        .map_err(|e| BackupError::Request(e.into()))?;
    Ok(dir)
}

/// A role that is not a superuser reads through a restore (or a test restore, whose scratch
/// database it owns while it lasts) only data it could already read: every role owning data
/// in the backup must be one it acts for. The backup itself was written with a superuser's
/// rights. `contents` is the archive's table of contents when the caller has read it already.
pub(super) fn check_data_owners(
    rec: &BackupRecord,
    source: &ArchiveSource,
    contents: Option<&[TocEntry]>,
    caller: &Caller,
    what: &str,
) {
    if caller.superuser || rec.kind != Ok(JobKind::Database) {
        return;
    }
    let owners = if archive_format(rec) == Format::Plain {
        let compressed = rec.gzipped();
        let unreadable = |e: std::io::Error| {
            BackupError::ToolFailed(format!("cannot read {}: {e}", source.describe()))
        };
        let open = || source.open().map(|raw| plain_dump_reader(raw, compressed));
        let restricted = open()
            .and_then(script_is_restricted)
            .map_err(unreadable)
            .or_report();
        if !restricted {
            caller.deny(
                format!(
                    "role \"{}\" may not {what} backup {}: the script does not begin with \\restrict",
                    caller.name, rec.backup_id
                ),
                "Plain scripts written by pg_dump before 15.14 (16.10, 17.6) can run psql commands when replayed; ask a superuser, or take a new backup.",
            );
        }
        open()
            .and_then(plain_data_owners)
            .map_err(unreadable)
            .or_report()
    } else if let Some(entries) = contents {
        archive_data_owners(entries)
    } else {
        archive_data_owners(&read_contents(rec, source).1)
    };
    for owner in owners {
        let allowed = owner.as_deref().is_some_and(|o| caller.acts_for(o));
        if !allowed {
            let whose = owner
                .map(|o| format!("role \"{o}\""))
                .unwrap_or_else(|| "a role the backup does not name".into());
            caller.deny(
                format!(
                    "role \"{}\" may not {what} backup {}: it holds data owned by {whose}",
                    caller.name, rec.backup_id
                ),
                "A role that is not a superuser may restore or test-restore only backups whose tables all belong to it (or to roles it is a member of); ask a superuser.",
            );
        }
    }
}

pub(super) fn check_target(name: &str, create_db: bool, caller: &Caller) {
    validate_database_name(name)
        .map_err(|e| BackupError::InvalidName(e.message))
        .or_report();
    if name == settings::database() {
        BackupError::ReservedTarget {
            name: name.into(),
            why: "the backup_ext catalog database (backup_ext.database)",
        }
        .report();
    }
    if let Some(job_id) = catalog::unfinished_restore_into(name).or_report() {
        BackupError::TargetBusy {
            name: name.into(),
            job_id,
        }
        .report();
    }
    let facts = catalog::database_facts(name).or_report();
    if facts.is_template {
        BackupError::ReservedTarget {
            name: name.into(),
            why: "a template database",
        }
        .report();
    }
    if create_db && facts.exists {
        BackupError::DatabaseExists(name.into()).report();
    }
    if !create_db && !facts.exists {
        BackupError::NoSuchDatabase(name.into()).report();
    }
    if create_db {
        caller.require_createdb(name);
    } else {
        caller.require_owner(name);
    }
}

/// A restore request checked as far as a call checks it before reading the archive's
/// contents: the backup and the caller's right to it, the options, the target, the copy read
/// (its size, and its checksum when small) and the identity of an encrypted one. Shared by
/// `restore_backup()` and `restore_plan()`, so that both accept exactly the same calls.
pub(super) struct RestoreCall {
    pub caller: Caller,
    /// The extension owner's rights, for as long as the call lasts.
    _owner: privileges::Elevated,
    pub rec: BackupRecord,
    pub request: RestoreRequest,
    /// None for a globals backup, replayed into the cluster.
    pub target: Option<String>,
    /// The archive as the tools read it (decrypted when encrypted).
    pub source: ArchiveSource,
    pub timeout_seconds: Option<i32>,
}

pub(super) fn check_restore_call(
    backup_id: i64,
    target_db: Option<String>,
    create_db: Option<bool>,
    jobs: Option<i32>,
    options: Option<JsonB>,
) -> RestoreCall {
    let (caller, owner) = privileges::enter();
    let rec = succeeded_backup(backup_id, &caller, "restore");
    let is_globals = rec.kind == Ok(JobKind::Globals);
    let create_db = create_db.unwrap_or(true) && !is_globals;
    let options = options.map(|o| o.0).unwrap_or_else(|| json!({}));
    let (options, run) = split_run_options(&options);
    if let Some(key) = run
        .keys()
        .find(|k| k.as_str() != "timeout" && k.as_str() != "storage")
    {
        BackupError::Request(RequestError::invalid(
            format!("option {key:?} does not apply to restore_backup()"),
            "restore_backup() takes the pg_restore options plus \"timeout\" and \"storage\".",
        ))
        .report();
    }
    let storage = match run.get("storage") {
        None => None,
        Some(serde_json::Value::String(s)) => Some(s.as_str()),
        Some(_) => BackupError::Request(RequestError::invalid(
            "options.storage must be a string",
            "Name the storage target to read the backup from, e.g. {\"storage\": \"offsite\"}.",
        ))
        .report(),
    };
    let timeout_seconds = timeout_seconds(&run);
    let mut request =
        RestoreRequest::validate(archive_format(&rec), is_globals, create_db, jobs, &options)
            .or_report();

    let target = match (is_globals, target_db) {
        (true, None) => None,
        (true, Some(_)) => BackupError::Request(RequestError::invalid(
            format!(
                "backup {backup_id} holds roles and tablespaces, which belong to the whole cluster"
            ),
            "Leave target_db NULL: a globals backup is replayed into the cluster.",
        ))
        .report(),
        (false, None) => BackupError::Request(RequestError::invalid(
            "target_db must be given for a database backup",
            "Name the database to restore into, e.g. target_db => 'app_restored'.",
        ))
        .report(),
        (false, Some(name)) => {
            check_target(&name, create_db, &caller);
            Some(name)
        }
    };

    let (read_from, source) = choose_copy(&rec, storage);
    if read_from.storage != rec.storage {
        request.storage = Some(read_from.storage.clone());
    }
    if rec.encrypted && jobs.unwrap_or(1) > 1 {
        BackupError::Request(RequestError::unsupported(
            format!("backup {backup_id} is encrypted and cannot be restored with jobs > 1"),
            "A parallel pg_restore needs the archive as a file, and an encrypted backup is only \
             ever decrypted in a stream; restore it with jobs => 1.",
        ))
        .report();
    }
    // The stored bytes are checked as they are; everything else reads them decrypted.
    check_integrity(&rec, &source);
    let source = decrypting(&read_from, &source);
    RestoreCall {
        caller,
        _owner: owner,
        rec,
        request,
        target,
        source,
        timeout_seconds,
    }
}

/// Enqueues a restore of a backup; returns the job id. A request whose plan (see
/// `restore_plan()`) has a blocking row is refused with that row as DETAIL.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn restore_backup(
    backup_id: i64,
    target_db: default!(Option<String>, "NULL"),
    create_db: default!(Option<bool>, "true"),
    jobs: default!(Option<i32>, "NULL"),
    options: default!(Option<JsonB>, "'{}'"),
) -> i64 {
    let call = check_restore_call(backup_id, target_db, create_db, jobs, options);
    check_readable(&call.rec, &call.source);
    let rows = super::restore_plan::plan_rows(&call);
    if let Some(row) = first_blocking(&rows) {
        BackupError::RestoreBlocked {
            backup_id,
            target: call.target.clone().unwrap_or_else(|| "the cluster".into()),
            blocker: row.blocker.unwrap_or(backup_core::Blocker::Tools),
            row: row.describe(),
        }
        .report();
    }
    let job_id = catalog::enqueue_job(&NewJob {
        kind: JobKind::Restore,
        database: call.target.as_deref(),
        run_as: &call.caller.name,
        backup_id,
        request: call.request.to_json().unwrap_or_default(),
        timeout_seconds: call.timeout_seconds,
    })
    .or_report();
    wake::wake_worker_on_commit();
    job_id
}

/// The archive's table of contents, parsed from `pg_restore --list`; pick entries with a WHERE
/// and pass their ids to `restore_backup(..., options => '{"toc_ids": [...]}')`.
// The row type must be spelled out for the SQL generator.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn backup_contents(
    backup_id: i64,
) -> TableIterator<
    'static,
    (
        name!(toc_id, i64),
        name!(kind, String),
        name!(schema, Option<String>),
        name!(name, String),
        name!(owner, Option<String>),
    ),
> {
    let (caller, _owner) = privileges::enter();
    let rec = succeeded_backup(backup_id, &caller, "inspect");
    let (read_from, source) = choose_copy(&rec, None);
    let source = decrypting(&read_from, &source);
    check_readable(&rec, &source);
    let (_, entries) = read_contents(&rec, &source);
    TableIterator::new(
        entries
            .into_iter()
            .map(|e| (e.toc_id, e.kind, e.schema, e.name, e.owner)),
    )
}

/// Enqueues a verification: checksum (or manifest), table of contents, and with
/// `test_restore` a restore into a scratch database whose row counts are compared with the
/// archive's. The result is recorded on the backup.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn verify_backup(backup_id: i64, test_restore: default!(Option<bool>, "false")) -> i64 {
    let (caller, _owner) = privileges::enter();
    let rec = succeeded_backup(backup_id, &caller, "verify");
    let test_restore = test_restore.unwrap_or(false);
    if test_restore && rec.kind == Ok(JobKind::Globals) {
        BackupError::Request(RequestError::unsupported(
            format!(
                "backup {backup_id} holds roles, which cannot be restored into a scratch database"
            ),
            "Verify globals backups with test_restore => false (checksum only).",
        ))
        .report();
    }
    // A missing file is the verification's finding, recorded on the backup; only a test
    // restore needs the file now. An encrypted backup's checksum needs no key.
    if let Some(path) = rec.path.as_deref().map(Path::new).filter(|p| p.exists()) {
        if !rec.encrypted {
            check_readable(&rec, &ArchiveSource::File(path.to_path_buf()));
        }
    }
    if test_restore {
        // An encrypted backup's test restore needs the identity: checked here.
        let source = decrypting(&rec, &locate(&rec).or_report());
        check_data_owners(&rec, &source, None, &caller, "test-restore");
    }
    let job_id = catalog::enqueue_job(&NewJob {
        kind: JobKind::Verify,
        database: rec.database.as_deref(),
        run_as: &caller.name,
        backup_id,
        request: json!({ "test_restore": test_restore }),
        timeout_seconds: None,
    })
    .or_report();
    wake::wake_worker_on_commit();
    job_id
}
