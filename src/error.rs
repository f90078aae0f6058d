//! The one error type of the SQL surface. Each variant maps to exactly one SQLSTATE, and every
//! report carries a hint: these messages are read by a DBA in the middle of the night.

use backup_core::{Blocker, ErrorKind, RequestError};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

#[derive(Debug)]
pub enum BackupError {
    /// A request argument was rejected by validation (22023 / 0A000).
    Request(RequestError),
    /// The database named does not exist (3D000).
    NoSuchDatabase(String),
    /// The database exists but does not accept connections (55000).
    DatabaseNotConnectable(String),
    /// No job with this id (42704).
    NoSuchJob(i64),
    /// The job cannot be cancelled in its current state (55000).
    NotCancellable { job_id: i64, status: String },
    /// The job was enqueued by this very transaction, so the worker cannot see it yet (55000).
    JobNotCommitted(i64),
    /// `wait_for` inside a transaction whose snapshot never moves (25000).
    WrongIsolation(String),
    /// `wait_for` ran out of time (57014).
    WaitTimedOut { job_id: i64, status: String },
    /// No backup with this id (42704).
    NoSuchBackup(i64),
    /// The backup cannot be read in its current state (55000).
    BackupNotUsable { backup_id: i64, status: String },
    /// The backup's job has not finished yet (55000).
    BackupUnfinished { backup_id: i64, status: String },
    /// The backup's file or directory is gone (58P01).
    BackupFileMissing { backup_id: i64, path: String },
    /// The file no longer matches what was recorded when it was written (XX001).
    BackupCorrupted { backup_id: i64, detail: String },
    /// A restore target that must never be overwritten (42939).
    ReservedTarget { name: String, why: &'static str },
    /// Another restore into the same database is queued or running (55006).
    TargetBusy { name: String, job_id: i64 },
    /// `create_db => true` but the target exists (42P04).
    DatabaseExists(String),
    /// Not usable as a database name (42602).
    InvalidName(String),
    /// No schedule of this name (42704).
    NoSuchSchedule(String),
    /// A restore drill found no succeeded backup to verify (55000); None: of any database.
    NothingToVerify(Option<String>),
    /// A tool we only read with failed (58030).
    ToolFailed(String),
    /// The calling role may not do this (42501).
    PermissionDenied { message: String, hint: String },
    /// No storage target of this name (42704).
    NoSuchStorage { name: String, known: Vec<String> },
    /// A storage target of this name exists already (42710).
    StorageExists(String),
    /// Live backups are stored in the target (2BP01).
    StorageInUse { name: String, backups: i64 },
    /// No alert of this name (42704).
    NoSuchAlert { name: String, known: Vec<String> },
    /// An alert of this name exists already (42710).
    AlertExists(String),
    /// The restore's plan has a blocking row: the restore would certainly fail. The SQLSTATE
    /// is the blocker's (42P07, 42710, 42704, 0A000, 53100); the DETAIL is the row.
    RestoreBlocked {
        backup_id: i64,
        target: String,
        blocker: Blocker,
        row: String,
    },
    /// A catalog query failed; carries the underlying message (XX000).
    Internal(String),
}

impl BackupError {
    /// The primary message, as the report would carry it.
    pub fn message(&self) -> String {
        self.parts().1
    }

    fn parts(&self) -> (PgSqlErrorCode, String, String) {
        use PgSqlErrorCode::*;
        match self {
            BackupError::Request(e) => {
                let code = match e.kind {
                    ErrorKind::InvalidParameter => ERRCODE_INVALID_PARAMETER_VALUE,
                    ErrorKind::FeatureNotSupported => ERRCODE_FEATURE_NOT_SUPPORTED,
                    ErrorKind::UndefinedObject => ERRCODE_UNDEFINED_OBJECT,
                    ErrorKind::ConfigFile => ERRCODE_CONFIG_FILE_ERROR,
                    ErrorKind::InvalidAuthorization => ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
                    ErrorKind::ConnectionFailure => {
                        ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION
                    }
                    ErrorKind::ExternalFailure => ERRCODE_SYSTEM_ERROR,
                    ErrorKind::FileMissing => ERRCODE_UNDEFINED_FILE,
                    ErrorKind::DataCorrupted => ERRCODE_DATA_CORRUPTED,
                    ErrorKind::UndefinedTable => ERRCODE_UNDEFINED_TABLE,
                    ErrorKind::DuplicateTable => ERRCODE_DUPLICATE_TABLE,
                    ErrorKind::InvalidSchemaName => ERRCODE_INVALID_SCHEMA_NAME,
                    ErrorKind::NameTooLong => ERRCODE_NAME_TOO_LONG,
                    ErrorKind::NotInPrerequisiteState => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                };
                (code, e.message.clone(), e.hint.clone())
            }
            BackupError::RestoreBlocked {
                backup_id,
                target,
                blocker,
                row,
            } => {
                let (code, why) = match blocker {
                    Blocker::DuplicateRelation => (
                        ERRCODE_DUPLICATE_TABLE,
                        "a table, view, sequence or index it creates exists there already",
                    ),
                    Blocker::DuplicateObject => (
                        ERRCODE_DUPLICATE_OBJECT,
                        "an object it creates exists there already",
                    ),
                    Blocker::MissingRole => (
                        ERRCODE_UNDEFINED_OBJECT,
                        "it names a role that does not exist on this server",
                    ),
                    Blocker::MissingExtension => (
                        ERRCODE_FEATURE_NOT_SUPPORTED,
                        "it creates an extension that is not available on this server",
                    ),
                    Blocker::Space => (
                        ERRCODE_DISK_FULL,
                        "it would not fit on the data directory's filesystem",
                    ),
                    Blocker::Tools => (
                        ERRCODE_FEATURE_NOT_SUPPORTED,
                        "the configured pg_restore cannot read it",
                    ),
                };
                (
                    code,
                    format!(
                        "backup {backup_id} cannot be restored into \"{target}\": {why}\n{row}"
                    ),
                    blocker.hint().into(),
                )
            }
            BackupError::NoSuchDatabase(name) => (
                ERRCODE_INVALID_CATALOG_NAME,
                format!("database \"{name}\" does not exist"),
                "Check the name with: SELECT datname FROM pg_database;".into(),
            ),
            BackupError::DatabaseNotConnectable(name) => (
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("database \"{name}\" does not accept connections, so pg_dump cannot read it"),
                "Templates such as template0 cannot be dumped; ALTER DATABASE ... ALLOW_CONNECTIONS true if this one should be.".into(),
            ),
            BackupError::NoSuchJob(id) => (
                ERRCODE_UNDEFINED_OBJECT,
                format!("backup_ext job {id} does not exist"),
                "List jobs with: SELECT job_id, kind, status FROM backup_ext.jobs;".into(),
            ),
            BackupError::NotCancellable { job_id, status } => (
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("job {job_id} is already {status} and cannot be cancelled"),
                "Only queued or running jobs can be cancelled.".into(),
            ),
            BackupError::JobNotCommitted(id) => (
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("job {id} was enqueued in this transaction and is not committed yet"),
                "The worker only sees committed jobs: COMMIT, then call backup_ext.wait_for() in a new transaction.".into(),
            ),
            BackupError::WrongIsolation(level) => (
                ERRCODE_INVALID_TRANSACTION_STATE,
                format!("backup_ext.wait_for() cannot see progress under {level} isolation"),
                "Call it outside an explicit transaction or under READ COMMITTED.".into(),
            ),
            BackupError::WaitTimedOut { job_id, status } => (
                ERRCODE_QUERY_CANCELED,
                format!("job {job_id} is still {status} after the wait timeout"),
                "The job keeps going: call backup_ext.wait_for() again, or backup_ext.cancel() it.".into(),
            ),
            BackupError::NoSuchBackup(id) => (
                ERRCODE_UNDEFINED_OBJECT,
                format!("backup {id} does not exist"),
                "List backups with: SELECT backup_id, database, status FROM backup_ext.list_backups();".into(),
            ),
            BackupError::BackupNotUsable { backup_id, status } => (
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("backup {backup_id} is {status}, not succeeded"),
                "Only succeeded backups can be restored, inspected or verified; pick another with backup_ext.list_backups(status => 'succeeded').".into(),
            ),
            BackupError::BackupUnfinished { backup_id, status } => (
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("backup {backup_id} is still {status}"),
                format!("Pin it once it has finished: SELECT backup_ext.wait_for({backup_id});"),
            ),
            BackupError::BackupFileMissing { backup_id, path } => (
                ERRCODE_UNDEFINED_FILE,
                format!("the file of backup {backup_id} is missing: {path}"),
                "It was moved or deleted outside backup_ext; restore it to that path or pick another backup.".into(),
            ),
            BackupError::BackupCorrupted { backup_id, detail } => (
                ERRCODE_DATA_CORRUPTED,
                format!("backup {backup_id} no longer matches its recorded checksum\n{detail}"),
                "The file changed after it was written. Do not restore it; pick another backup, and run backup_ext.verify_backup() on the others.".into(),
            ),
            BackupError::NoSuchStorage { name, known } => (
                ERRCODE_UNDEFINED_OBJECT,
                format!("storage target \"{name}\" does not exist"),
                format!(
                    "Storage targets: {}. Add one with backup_ext.add_storage(name, url, options).",
                    known.join(", ")
                ),
            ),
            BackupError::NoSuchAlert { name, known } => (
                ERRCODE_UNDEFINED_OBJECT,
                format!("alert \"{name}\" does not exist"),
                if known.is_empty() {
                    "No alerts exist. Add one with backup_ext.add_alert(name, kind, target).".into()
                } else {
                    format!("Alerts: {}. See SELECT * FROM backup_ext.alerts;", known.join(", "))
                },
            ),
            BackupError::AlertExists(name) => (
                ERRCODE_DUPLICATE_OBJECT,
                format!("alert \"{name}\" already exists"),
                "Pick another name, or drop it first with backup_ext.drop_alert(name).".into(),
            ),
            BackupError::StorageExists(name) => (
                ERRCODE_DUPLICATE_OBJECT,
                format!("storage target \"{name}\" already exists"),
                "Pick another name, or drop it first with backup_ext.drop_storage(name).".into(),
            ),
            BackupError::StorageInUse { name, backups } => (
                ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
                format!("storage target \"{name}\" still holds {backups} live backup(s), copies or copy policies"),
                "Expire or purge them first (backup_ext.purge()) and remove it from backup_ext.set_copies(), or keep the target.".into(),
            ),
            BackupError::ReservedTarget { name, why } => (
                ERRCODE_RESERVED_NAME,
                format!("cannot restore into \"{name}\": it is {why}"),
                "Restore into a new database (create_db => true) with another name.".into(),
            ),
            BackupError::TargetBusy { name, job_id } => (
                ERRCODE_OBJECT_IN_USE,
                format!("restore job {job_id} into \"{name}\" is already queued or running"),
                format!("Wait for it with SELECT backup_ext.wait_for({job_id}); or cancel it first."),
            ),
            BackupError::DatabaseExists(name) => (
                ERRCODE_DUPLICATE_DATABASE,
                format!("database \"{name}\" already exists"),
                "Pick a new name, or restore into it with create_db => false (add options => '{\"clean\": true}' to replace its objects).".into(),
            ),
            BackupError::InvalidName(detail) => (
                ERRCODE_INVALID_NAME,
                detail.clone(),
                "Database names are 1 to 63 bytes without control characters.".into(),
            ),
            BackupError::NoSuchSchedule(name) => (
                ERRCODE_UNDEFINED_OBJECT,
                format!("schedule \"{name}\" does not exist"),
                "List schedules with: SELECT name, cron FROM backup_ext.schedules;".into(),
            ),
            BackupError::NothingToVerify(name) => (
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                match name {
                    Some(name) => format!("database \"{name}\" has no succeeded backup to verify"),
                    None => "no database has a succeeded backup to verify".into(),
                },
                "A restore drill verifies the newest backup: schedule backups of the database first, e.g. {\"backup\": \"database\", \"dbname\": \"app\"}.".into(),
            ),
            BackupError::ToolFailed(detail) => (
                ERRCODE_IO_ERROR,
                detail.clone(),
                "Check backup_ext.bin_dir and that the file is readable by the server's OS user.".into(),
            ),
            BackupError::PermissionDenied { message, hint } => {
                (ERRCODE_INSUFFICIENT_PRIVILEGE, message.clone(), hint.clone())
            }
            BackupError::Internal(msg) => (
                ERRCODE_INTERNAL_ERROR,
                format!("backup_ext catalog error: {msg}"),
                "Check that the extension is installed in backup_ext.database and the server log for details.".into(),
            ),
        }
    }

    /// Raises the error as a Postgres ERROR; never returns.
    /// The tool's own words and checksum values go to DETAIL: the message stays one short
    /// line. A part after a line break (or, for a tool's failure, after the first ": ") is the
    /// detail.
    pub fn report(self) -> ! {
        let split_at_colon = matches!(self, BackupError::ToolFailed(_));
        let (code, message, hint) = self.parts();
        let (message, detail) = match message.split_once('\n') {
            Some((m, d)) => (m.to_string(), Some(d.to_string())),
            None if split_at_colon => match message.split_once(": ") {
                Some((m, d)) => (m.to_string(), Some(d.to_string())),
                None => (message, None),
            },
            None => (message, None),
        };
        let mut report = ErrorReport::new(code, message, "backup_ext").set_hint(hint);
        if let Some(detail) = detail {
            report = report.set_detail(detail);
        }
        report.report(PgLogLevel::ERROR);
        unreachable!("ERROR reports do not return")
    }
}

impl From<RequestError> for BackupError {
    fn from(e: RequestError) -> Self {
        BackupError::Request(e)
    }
}

impl From<pgrx::spi::Error> for BackupError {
    fn from(e: pgrx::spi::Error) -> Self {
        BackupError::Internal(e.to_string())
    }
}

/// Unwraps a result or raises its error.
pub trait OrReport<T> {
    fn or_report(self) -> T;
}

impl<T, E: Into<BackupError>> OrReport<T> for Result<T, E> {
    fn or_report(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => e.into().report(),
        }
    }
}
