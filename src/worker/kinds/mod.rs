//! One job in the worker: from a claimed catalog row to a running child, and from the child's
//! result to the catalog outcome. One file per kind of job prepares its commands
//! (`backup.rs`, `restore.rs`, `verify.rs`); the tool handling itself lives in `backup_core`.

use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use backup_core::{
    dropdb_argv, partial_path, remove_output, run_tool, CheckedRestore, Connection, DumpRun,
    Format, JobKind, JobResult, JobRun, ProgressTracker, RestorePlan, RestoreRun, RunResult,
    RunSpec, ToolCommand, VerifyPlan, VerifyRun, CLEANUP_TIMEOUT,
};

use backup_core::storage::copy::{CopyRun, CopySpec};
use backup_core::storage::fetch::{FetchRun, FetchSpec};
use backup_core::storage::tree::OpenUpload;
use backup_core::storage::{Store, UploadStarted};
use backup_core::{sidecar_key, ArchiveSource, RestoreRequest, Sidecar, StoredObject};

use crate::catalog::{ArtifactFacts, BackupRecord, ClaimedJob, Outcome};

mod backup;
mod copy;
mod restore;
mod table;
mod verify;

/// Restores of files up to this size were hashed when they were requested; bigger ones are
/// hashed by the worker before the target is touched.
pub(super) const HASHED_AT_CALL_TIME_BYTES: i64 = 256 * 1024 * 1024;

/// Everything a job needs from the server's configuration, read once per claim.
pub struct Context {
    pub bin_dir: PathBuf,
    pub directory: PathBuf,
    pub connection: Connection,
    pub catalog_database: String,
    pub job_timeout: Option<Duration>,
    /// The major version of this server (15 for 15.x).
    pub server_major: u32,
}

/// What kind of job runs, as far as recording its outcome is concerned.
pub enum Kind {
    Backup {
        database: Option<String>,
    },
    Restore,
    Verify {
        backup_id: i64,
    },
    /// A backup copied to a further storage target; the upload's id once the store has one.
    Copy {
        started: UploadStarted,
    },
    /// Copying a remote backup to `dest`, or only reading it through to check it (no `dest`);
    /// then the restore or verification `claimed` asked for is planned against that copy, or
    /// against the object, which is then streamed into the restoring tool.
    Fetch {
        claimed: Box<ClaimedJob>,
        backup: Box<BackupRecord>,
        dest: Option<PathBuf>,
    },
}

/// Where a backup job writes.
#[derive(Clone)]
pub enum Destination {
    /// Under backup_ext.directory.
    Local(PathBuf),
    /// In a storage target, under `key`.
    Remote {
        storage: String,
        key: String,
        store: Store,
        /// The upload's id once the store has one; recorded for recovery.
        started: Option<backup_core::storage::UploadStarted>,
        /// A directory-format backup: written into this local directory first, then uploaded
        /// file by file under `<key>/`.
        staged: Option<Staged>,
    },
}

/// The local directory a directory-format backup to a storage target is written into, and the
/// upload of its files in progress.
#[derive(Clone)]
pub struct Staged {
    pub dir: PathBuf,
    pub open: OpenUpload,
}

impl Destination {
    /// The `path` and `key` columns recorded before the child starts.
    pub fn columns(&self) -> (Option<String>, Option<String>) {
        match self {
            Destination::Local(p) => (Some(p.to_string_lossy().into_owned()), None),
            Destination::Remote { key, .. } => (None, Some(key.clone())),
        }
    }

    /// The upload in progress, once the store has an id for it: the id, and the key when it is
    /// not the backup's own (a file of a directory-format backup).
    pub fn upload(&self) -> Option<(String, Option<String>)> {
        match self {
            Destination::Remote {
                started: Some(s), ..
            } => Some((s.get()?.clone(), None)),
            Destination::Remote {
                staged: Some(staged),
                ..
            } => {
                let open = staged.open.lock().ok()?;
                let (key, started) = open.as_ref()?;
                Some((started.get()?.clone(), Some(key.clone())))
            }
            _ => None,
        }
    }

    /// The local directory a directory-format backup to a storage target is staged in.
    pub fn staged_dir(&self) -> Option<PathBuf> {
        match self {
            Destination::Remote {
                staged: Some(staged),
                ..
            } => Some(staged.dir.clone()),
            _ => None,
        }
    }

    /// Writes the backup's sidecar (`<file>.json`) next to it.
    pub fn write_sidecar(&self, sidecar: &Sidecar) -> Result<(), String> {
        match self {
            Destination::Local(path) => {
                let target = PathBuf::from(sidecar_key(&path.to_string_lossy()));
                backup_core::write_file_atomically(&target, &sidecar.to_bytes())
                    .map_err(|e| format!("cannot write {}: {e}", target.display()))
            }
            Destination::Remote {
                storage,
                key,
                store,
                ..
            } => store
                .put_bytes(&sidecar_key(key), sidecar.to_bytes())
                .map_err(|e| format!("cannot write the sidecar to storage \"{storage}\": {e}")),
        }
    }

    /// The ETag the store reports for a remote backup (None for a file target or when the
    /// store does not answer): recorded, so that a restore can tell an object replaced behind
    /// our back before it reads it.
    pub fn etag(&self) -> Option<String> {
        match self {
            Destination::Local(_) => None,
            Destination::Remote { key, store, .. } => store.head(key).ok().flatten()?.etag,
        }
    }

    /// Removes the backup and its sidecar, whatever state they are in.
    pub fn remove(&self) {
        match self {
            Destination::Local(path) => {
                remove_leftovers(path);
                let _ = std::fs::remove_file(sidecar_key(&path.to_string_lossy()));
            }
            Destination::Remote {
                storage,
                key,
                store,
                ..
            } => {
                if let Err(e) = store.delete_backup(key) {
                    pgrx::warning!(
                        "backup_ext: could not delete {key} from storage \"{storage}\": {e}"
                    );
                }
            }
        }
    }
}

/// A job whose child is running.
pub struct RunningJob {
    pub job_id: i64,
    pub kind: Kind,
    /// The job's own login role, dropped when the job ends.
    pub login_role: Option<String>,
    /// It creates a database (a restore target, a verification's scratch database) that only
    /// it or recovery may drop.
    pub makes_database: bool,
    pub run: Box<dyn JobRun>,
    pub started: Instant,
    pub timeout: Option<Duration>,
    /// pg_dump's stderr, read for `--verbose` progress lines.
    pub stderr_path: Option<PathBuf>,
    pub stderr_offset: u64,
    pub progress: ProgressTracker,
    /// Counted only for jobs still running after a second: short dumps need no progress, and
    /// the extra connection would cost them time.
    pub table_count: Option<ToolCommand>,
    pub tables_total: Option<Receiver<Option<u64>>>,
    /// Where a backup writes: its sidecar goes there too, and a failure removes both.
    pub destination: Option<Destination>,
    /// The local copy of the remote backup the job reads, removed when it ends.
    pub staged: Option<PathBuf>,
    /// The upload id last written to the catalog.
    pub recorded_upload: Option<String>,
    /// A directory-format backup's dump result, kept while its files are uploaded.
    pub pending: Option<JobResult>,
    /// `backup_ext.stall_timeout`, for a restore.
    pub stall: Option<backup_core::StallWatch>,
}

/// How to start a claimed job.
pub enum Start {
    Dump(RunSpec),
    Restore(RestorePlan),
    CheckedRestore(Box<VerifyPlan>, RestorePlan),
    Verify(Box<VerifyPlan>),
    Fetch(Box<FetchSpec>),
    Copy(Box<CopySpec>),
}

/// What `prepare` decided for a claimed job.
pub struct Plan {
    pub start: Start,
    pub kind: Kind,
    pub login_role: Option<String>,
    pub makes_database: bool,
    /// For backups: where the output goes, recorded before the child starts.
    pub output: Option<Destination>,
    pub tool: &'static str,
    pub stderr_path: Option<PathBuf>,
    pub progress: ProgressTracker,
    /// How to count the tables the dump will contain.
    pub table_count: Option<ToolCommand>,
}

pub(super) fn started_at(claimed: &ClaimedJob) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(&claimed.started_at)
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(|_| chrono::Utc::now())
}

pub(super) fn make_private_dir(dir: &Path) -> Result<(), String> {
    backup_core::create_private_dir(dir)
        .map_err(|e| format!("cannot create directory {}: {e}", dir.display()))
}

pub fn work_dir(ctx: &Context) -> Result<PathBuf, String> {
    if !ctx.directory.is_absolute() {
        return Err(format!(
            "backup_ext.directory must be an absolute path, not {:?}",
            ctx.directory
        ));
    }
    backup_core::check_outside_data_directory(&ctx.directory, &crate::settings::data_directory())?;
    let dir = ctx.directory.join(".work");
    make_private_dir(&dir)?;
    Ok(dir)
}

/// Works out the commands and paths for a claimed job; `backup` is the backup a restore or
/// verify job reads.
pub fn prepare(
    claimed: &ClaimedJob,
    backup: Option<&BackupRecord>,
    ctx: &Context,
) -> Result<Plan, String> {
    let work_dir = work_dir(ctx)?;
    if claimed.kind == Ok(JobKind::Copy) {
        return copy::prepare_copy(claimed, backup.ok_or("the backup is gone")?);
    }
    if let Some(backup) = backup.filter(|b| b.storage != crate::catalog::LOCAL_STORAGE) {
        return fetch_plan(claimed, backup, &work_dir);
    }
    prepare_checked(claimed, backup, ctx, work_dir)
}

/// [`prepare`] for a job whose backup is local, or remote and checked by the job's first step
/// (a restore that then streams the object).
pub fn prepare_checked(
    claimed: &ClaimedJob,
    backup: Option<&BackupRecord>,
    ctx: &Context,
    work_dir: PathBuf,
) -> Result<Plan, String> {
    match claimed.kind.clone()? {
        JobKind::Database | JobKind::Globals => backup::prepare_backup(claimed, ctx, work_dir),
        JobKind::Restore => {
            restore::prepare_restore(claimed, backup.ok_or("the backup is gone")?, ctx, work_dir)
        }
        JobKind::Verify => {
            verify::prepare_verify(claimed, backup.ok_or("the backup is gone")?, ctx, work_dir)
        }
        JobKind::Copy => unreachable!("copies are prepared above"),
    }
}

/// Where a restore reads the backup: its file, or its object in a storage target.
/// An encrypted backup is read through age decryption, with the identity file read when the
/// archive is opened.
pub(super) fn source(backup: &BackupRecord) -> Result<(ArchiveSource, Format), String> {
    let (stored, format) = stored_source(backup)?;
    let identity = crate::settings::identity_file();
    Ok((stored.decrypted_if(backup.encrypted, identity), format))
}

/// Where the backup's stored bytes lie.
fn stored_source(backup: &BackupRecord) -> Result<(ArchiveSource, Format), String> {
    if backup.storage == crate::catalog::LOCAL_STORAGE {
        let (path, format) = archive(backup)?;
        return Ok((ArchiveSource::File(path), format));
    }
    let format = Format::parse(&backup.format).map_err(|e| e.message)?;
    let object = StoredObject {
        store: backup_store(backup)?,
        storage: backup.storage.clone(),
        key: backup
            .key
            .clone()
            .ok_or_else(|| format!("backup {} has no key in its storage", backup.backup_id))?,
        expected_size: backup.size_bytes.unwrap_or_default().max(0) as u64,
        expected_sha256: backup.sha256.clone().unwrap_or_default(),
    };
    Ok((ArchiveSource::Object(object), format))
}

pub(super) fn archive(backup: &BackupRecord) -> Result<(PathBuf, Format), String> {
    let path = backup
        .path
        .as_deref()
        .map(PathBuf::from)
        .ok_or_else(|| format!("backup {} has no file", backup.backup_id))?;
    let format = Format::parse(&backup.format).map_err(|e| e.message)?;
    Ok((path, format))
}

pub(super) fn checksum_plan(
    backup: &BackupRecord,
    work_dir: PathBuf,
) -> Result<VerifyPlan, String> {
    let (path, format) = archive(backup)?;
    Ok(VerifyPlan {
        decrypted: None,
        path,
        format,
        expected_sha256: backup.sha256.clone().unwrap_or_default(),
        expected_size: backup.size_bytes.unwrap_or_default().max(0) as u64,
        list: None,
        test_restore: None,
        work_dir,
    })
}

/// The storage target holding a remote backup.
pub(super) fn backup_store(backup: &BackupRecord) -> Result<Store, String> {
    match crate::storage::open_named(&backup.storage) {
        Ok(Some(store)) => Ok(store),
        Ok(None) => Err(format!("backup {} is local", backup.backup_id)),
        Err(e) => Err(format!(
            "cannot open storage target \"{}\" that holds backup {}: {}",
            backup.storage,
            backup.backup_id,
            e.message()
        )),
    }
}

/// Whether a restore reads a remote backup straight from its storage target: a custom, tar or
/// plain archive restored by one process. A parallel restore needs a file it can seek in, and
/// verifications list and test-restore a local copy.
fn streams_from_store(claimed: &ClaimedJob, backup: &BackupRecord) -> bool {
    let one_process = RestoreRequest::from_stored(&claimed.request)
        .map(|r| r.jobs.unwrap_or(1) <= 1)
        .unwrap_or(false);
    claimed.kind == Ok(JobKind::Restore)
        && one_process
        && Format::parse(&backup.format).is_ok_and(|f| f != Format::Directory)
}

/// The first step of a restore or verification of a backup in a storage target: the object
/// read through and checked against the recorded size and SHA-256 before anything reads it,
/// into a local copy in the work directory unless the restore streams from the store.
fn fetch_plan(
    claimed: &ClaimedJob,
    backup: &BackupRecord,
    work_dir: &Path,
) -> Result<Plan, String> {
    let key = backup
        .key
        .clone()
        .ok_or_else(|| format!("backup {} has no key in its storage", backup.backup_id))?;
    let store = backup_store(backup)?;
    let dest = (!streams_from_store(claimed, backup))
        .then(|| work_dir.join(format!("job-{}.fetch", claimed.job_id)));
    let tool = if dest.is_some() {
        "the download"
    } else {
        "the check"
    };
    Ok(Plan {
        start: Start::Fetch(Box::new(FetchSpec {
            store,
            storage: backup.storage.clone(),
            key,
            dest: dest.clone(),
            tree: Format::parse(&backup.format) == Ok(Format::Directory),
            expected_size: backup.size_bytes.unwrap_or_default().max(0) as u64,
            expected_sha256: backup.sha256.clone().unwrap_or_default(),
        })),
        kind: Kind::Fetch {
            claimed: Box::new(claimed.clone()),
            backup: Box::new(backup.clone()),
            dest,
        },
        login_role: None,
        makes_database: false,
        output: None,
        tool,
        stderr_path: None,
        progress: ProgressTracker::default(),
        table_count: None,
    })
}

/// The scratch database of a verification, by job id.
pub fn scratch_database(job_id: i64) -> String {
    format!("backup_ext_verify_{job_id}")
}

/// A database an interrupted job may have half made: the target of a restore that was to
/// create it, or a verification's scratch database.
pub fn database_left_behind(job: &crate::catalog::Interrupted) -> Option<String> {
    let flag = |k: &str| {
        job.request
            .get(k)
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    };
    match job.kind {
        Ok(JobKind::Restore) if flag("create_db") => job.database.clone(),
        Ok(JobKind::Verify) if flag("test_restore") => Some(scratch_database(job.job_id)),
        _ => None,
    }
}

/// Drops a database with `dropdb --if-exists --force`, waiting for it.
pub fn drop_database(ctx: &Context, name: &str) -> Result<(), String> {
    let cmd = dropdb_argv(&ctx.bin_dir, &ctx.connection, &ctx.catalog_database, name).into();
    run_tool(&cmd, &ctx.directory.join(".work"), CLEANUP_TIMEOUT)
}

/// Starts the child (or first step) of a prepared job.
pub fn start(start: Start) -> std::io::Result<Box<dyn JobRun>> {
    Ok(match start {
        Start::Dump(spec) => Box::new(DumpRun::start(spec)?),
        Start::Restore(plan) => Box::new(RestoreRun::start(plan)?),
        Start::CheckedRestore(check, plan) => Box::new(CheckedRestore::start(*check, plan)?),
        Start::Verify(plan) => Box::new(VerifyRun::start(*plan)?),
        Start::Fetch(spec) => Box::new(FetchRun::start(*spec)?),
        Start::Copy(spec) => Box::new(CopyRun::start(*spec)?),
    })
}

/// Turns a finished job's result into the catalog's outcome.
pub fn outcome_of(result: JobResult) -> Outcome {
    match result {
        JobResult::Dump(RunResult::Succeeded {
            size,
            sha256,
            manifest,
        }) => Outcome::Succeeded {
            artifact: Some(ArtifactFacts {
                size: size as i64,
                sha256,
                manifest: manifest.and_then(|m| serde_json::to_value(m).ok()),
                etag: None,
            }),
            message: None,
        },
        JobResult::Dump(RunResult::Failed { message }) => Outcome::Failed(message),
        JobResult::Restore { ok: true, message } => Outcome::Succeeded {
            artifact: None,
            message: Some(message).filter(|m| !m.is_empty()),
        },
        JobResult::Restore { ok: false, message } => Outcome::Failed(message),
        JobResult::Verify(report) if report.passed => Outcome::Succeeded {
            artifact: None,
            message: Some(report.message),
        },
        JobResult::Verify(report) => Outcome::Failed(report.message),
        JobResult::Fetched { ok: false, message } => Outcome::Failed(message),
        JobResult::Copied { ok: true, .. } => Outcome::Succeeded {
            artifact: None,
            message: None,
        },
        JobResult::Copied { ok: false, message } => Outcome::Failed(message),
        JobResult::Uploaded { ok: false, message } => Outcome::Failed(message),
        // The worker records the dump's result instead (`finish_upload`).
        JobResult::Uploaded { ok: true, .. } => {
            Outcome::Failed("the backup was uploaded but its result was lost".into())
        }
        // The worker starts the job's next step instead (`launch_fetched`).
        JobResult::Fetched { ok: true, .. } => {
            Outcome::Failed("the backup was fetched but nothing read it".into())
        }
    }
}

/// Removes whatever a job that did not succeed may have left: its partial output and, if the
/// rename happened before the outcome could be recorded, the final file too.
pub fn remove_leftovers(final_path: &Path) {
    for p in [partial_path(final_path), final_path.to_path_buf()] {
        if let Err(e) = remove_output(&p) {
            pgrx::warning!("backup_ext: could not remove {}: {e}", p.display());
        }
    }
}
