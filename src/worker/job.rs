//! One job in the worker: from a claimed catalog row to a running child, and from the child's
//! result to the catalog outcome. The tool handling itself lives in `backup_core`.

use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use backup_core::{
    access_sql, backup_file_name, create_database_argv, create_database_sql, database_folder,
    dropdb_argv, is_inside, list_archive, login, open_plain_dump, partial_path, pg_dump_argv,
    pg_dumpall_globals_argv, pg_restore_argv, pg_restore_list_argv, pg_restore_to_stdout_argv,
    psql_query_argv, psql_script_argv, quote_ident, remove_output, row_count_query, run_tool,
    script_creates_public_schema, set_role_sql, use_list_for, without_public_schema, ArchiveRows,
    CheckedRestore, Connection, DumpRequest, DumpRun, Format, GlobalsRequest, JobResult, JobRun,
    OutputKind, ProgressTracker, RestorePlan, RestoreRequest, RestoreRun, RestoreStep, RunResult,
    RunSpec, SourceAccess, TestRestorePlan, ToolCommand, VerifyPlan, VerifyRun, CLEANUP_TIMEOUT,
    GLOBALS_FOLDER,
};

use crate::catalog::{self, ArtifactFacts, BackupRecord, ClaimedJob, Outcome};

/// Restores of files up to this size were hashed when they were requested; bigger ones are
/// hashed by the worker before the target is touched.
const HASHED_AT_CALL_TIME_BYTES: i64 = 256 * 1024 * 1024;

/// How long reading an archive's table of contents may take before the job fails.
const LIST_TIMEOUT: Duration = Duration::from_secs(60);

/// The login a restore or test restore uses instead of the worker's superuser role (see
/// `backup_core::login`): a role made for the one job.
pub struct Sandbox {
    pub login: String,
    password: String,
    verifier: String,
    grant: SandboxGrant,
}

/// What the job's login role may do.
enum SandboxGrant {
    /// Act for a requester that is not a superuser: a member of it; the tools `SET ROLE` to it.
    ActsFor(String),
    /// Only read: counting a test restore's rows for a superuser's verification. Nothing that
    /// runs while the rows are counted (planning evaluates a restored index's predicate, say)
    /// may run as a superuser.
    ReadsAll,
}

impl Sandbox {
    fn new(job_id: i64, grant: SandboxGrant) -> Result<Sandbox, String> {
        let (password, verifier) = login::new_credentials()
            .map_err(|e| format!("cannot make a password for the job's login: {e}"))?;
        Ok(Sandbox {
            login: login::job_role(job_id),
            password,
            verifier,
            grant,
        })
    }

    /// The login acting for the job's requester; None when that is a superuser, whose jobs
    /// run as the worker's own role.
    fn for_requester(claimed: &ClaimedJob) -> Result<Option<Sandbox>, String> {
        match catalog::role_is_superuser(&claimed.run_as).map_err(|e| e.to_string())? {
            Some(true) => Ok(None),
            Some(false) => Sandbox::new(
                claimed.job_id,
                SandboxGrant::ActsFor(claimed.run_as.clone()),
            )
            .map(Some),
            None => Err(format!(
                "role \"{}\" that requested the job no longer exists",
                claimed.run_as
            )),
        }
    }

    /// The role the tools `SET ROLE` to, when acting for a requester.
    fn run_as(&self) -> Option<&str> {
        match &self.grant {
            SandboxGrant::ActsFor(role) => Some(role),
            SandboxGrant::ReadsAll => None,
        }
    }

    /// Creates the login role; the last step of preparing a job, so that a job that fails to
    /// prepare leaves no role behind.
    fn create(&self) -> Result<(), String> {
        let created = match &self.grant {
            SandboxGrant::ActsFor(role) => {
                catalog::create_job_role(&self.login, Some(role), &self.verifier)
            }
            SandboxGrant::ReadsAll => catalog::create_job_role(&self.login, None, &self.verifier),
        };
        created.map_err(|e| format!("cannot create the job's login role: {e}"))
    }

    fn connection(&self, ctx: &Context) -> Connection {
        Connection {
            user: self.login.clone(),
            ..ctx.connection.clone()
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![("PGPASSWORD".into(), self.password.clone())]
    }
}

/// Everything a job needs from the server's configuration, read once per claim.
pub struct Context {
    pub bin_dir: PathBuf,
    pub directory: PathBuf,
    pub connection: Connection,
    pub catalog_database: String,
    pub job_timeout: Option<Duration>,
}

/// What kind of job runs, as far as recording its outcome is concerned.
pub enum Kind {
    Backup { database: Option<String> },
    Restore,
    Verify { backup_id: i64 },
}

/// A job whose child is running.
pub struct RunningJob {
    pub job_id: i64,
    pub kind: Kind,
    /// The job's own login role, dropped when the job ends.
    pub login_role: Option<String>,
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
}

/// How to start a claimed job.
pub enum Start {
    Dump(RunSpec),
    Restore(RestorePlan),
    CheckedRestore(Box<VerifyPlan>, RestorePlan),
    Verify(Box<VerifyPlan>),
}

/// What `prepare` decided for a claimed job.
pub struct Plan {
    pub start: Start,
    pub kind: Kind,
    pub login_role: Option<String>,
    /// For backups: the final path, recorded before the child starts.
    pub output: Option<PathBuf>,
    pub tool: &'static str,
    pub stderr_path: Option<PathBuf>,
    pub progress: ProgressTracker,
    /// How to count the tables the dump will contain.
    pub table_count: Option<ToolCommand>,
}

/// The query that counts the tables whose data a whole-database dump will contain (pg_dump's
/// verbose output never says); `None` when filters make the number uncertain.
fn table_count_command(ctx: &Context, dbname: &str, request: &DumpRequest) -> Option<ToolCommand> {
    let o = &request.options;
    let filtered = !(o.schemas.is_empty()
        && o.exclude_schemas.is_empty()
        && o.tables.is_empty()
        && o.exclude_tables.is_empty()
        && o.exclude_table_data.is_empty());
    if filtered || o.schema_only {
        return None;
    }
    let sql = "SELECT count(*) FROM pg_catalog.pg_class c
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                WHERE c.relkind = 'r'
                  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                  AND n.nspname NOT LIKE 'pg\\_toast%'
                  AND n.nspname NOT LIKE 'pg\\_temp%'";
    Some(psql_query_argv(&ctx.bin_dir, &ctx.connection, dbname, sql).into())
}

fn started_at(claimed: &ClaimedJob) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(&claimed.started_at)
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(|_| chrono::Utc::now())
}

fn make_private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create directory {}: {e}", dir.display()))
}

fn work_dir(ctx: &Context) -> Result<PathBuf, String> {
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
    match claimed.kind.as_str() {
        "database" | "globals" => prepare_backup(claimed, ctx, work_dir),
        "restore" => prepare_restore(claimed, backup.ok_or("the backup is gone")?, ctx, work_dir),
        "verify" => prepare_verify(claimed, backup.ok_or("the backup is gone")?, ctx, work_dir),
        other => Err(format!("unknown job kind {other:?}")),
    }
}

fn prepare_backup(claimed: &ClaimedJob, ctx: &Context, work_dir: PathBuf) -> Result<Plan, String> {
    let stderr_path = work_dir.join(format!("job-{}.stderr", claimed.job_id));
    let unreadable = |e: serde_json::Error| format!("stored request cannot be read: {e}");
    let (folder, suffix, tool, request) = match claimed.database.as_deref() {
        Some(dbname) if claimed.kind == "database" => {
            let request = DumpRequest::from_stored(&claimed.request).map_err(unreadable)?;
            let suffix = request.file_name_suffix();
            (database_folder(dbname), suffix, "pg_dump", Some(request))
        }
        _ => (GLOBALS_FOLDER.to_string(), ".sql", "pg_dumpall", None),
    };
    let folder = ctx.directory.join(folder);
    make_private_dir(&folder)?;
    let final_path = folder.join(backup_file_name(
        started_at(claimed),
        claimed.job_id,
        suffix,
    ));
    // Folder names are percent-encoded, so this holds for every database name; checked anyway
    // because a path that left the directory would be written and later purged.
    if !is_inside(&ctx.directory, &final_path) {
        return Err(format!(
            "refusing to write {} outside backup_ext.directory",
            final_path.display()
        ));
    }
    let partial = partial_path(&final_path);

    let mut progress = ProgressTracker::default();
    let mut table_count = None;
    let (program, args, output) = match request {
        Some(request) => {
            progress = progress.with_jobs(request.jobs);
            table_count = claimed
                .database
                .as_deref()
                .and_then(|db| table_count_command(ctx, db, &request));
            let dbname = claimed.database.as_deref().unwrap_or_default();
            let dir_output = (!request.format.writes_to_stdout()).then_some(partial.as_path());
            let (program, args) =
                pg_dump_argv(&ctx.bin_dir, &ctx.connection, dbname, &request, dir_output);
            let output = if dir_output.is_some() {
                OutputKind::Directory { partial }
            } else {
                OutputKind::Stdout { partial }
            };
            (program, args, output)
        }
        None => {
            let request = GlobalsRequest::from_stored(&claimed.request).map_err(unreadable)?;
            let (program, args) = pg_dumpall_globals_argv(
                &ctx.bin_dir,
                &ctx.connection,
                &ctx.catalog_database,
                &request,
            );
            (program, args, OutputKind::Stdout { partial })
        }
    };
    Ok(Plan {
        start: Start::Dump(RunSpec {
            program,
            args,
            output,
            final_path: final_path.clone(),
            stderr_path: stderr_path.clone(),
        }),
        kind: Kind::Backup {
            database: claimed.database.clone(),
        },
        login_role: None,
        output: Some(final_path),
        tool,
        stderr_path: (claimed.kind == "database").then_some(stderr_path),
        progress,
        table_count,
    })
}

fn archive(backup: &BackupRecord) -> Result<(PathBuf, Format), String> {
    let path = backup
        .path
        .as_deref()
        .map(PathBuf::from)
        .ok_or_else(|| format!("backup {} has no file", backup.backup_id))?;
    let format = Format::parse(&backup.format).map_err(|e| e.message)?;
    Ok((path, format))
}

/// Who a restore step connects as, and into which database.
struct RestoreTarget<'a> {
    name: &'a str,
    /// The database was just created from template0 (so it has a `public` schema already).
    fresh: bool,
    sandbox: Option<&'a Sandbox>,
}

/// The restore step for an archive; writes a `-L` list next to the job's other files when
/// `toc_ids` asks for exact entries, or when a fresh database already has the `public`
/// schema the archive creates.
fn restore_step(
    backup: &BackupRecord,
    target: &RestoreTarget,
    request: &RestoreRequest,
    ctx: &Context,
    list_file: &Path,
) -> Result<RestoreStep, String> {
    let (path, format) = archive(backup)?;
    // A read-only login (ReadsAll) never restores: only a sandbox acting for someone does.
    let sandbox = target.sandbox.filter(|s| s.run_as().is_some());
    let conn = match sandbox {
        Some(sandbox) => sandbox.connection(ctx),
        None => ctx.connection.clone(),
    };
    let env = sandbox.map(Sandbox::env).unwrap_or_default();
    let command = |argv: (PathBuf, Vec<std::ffi::OsString>)| -> ToolCommand {
        ToolCommand::from(argv).with_env(env.clone())
    };
    if backup.kind == "globals" {
        if sandbox.is_some() {
            return Err("a globals backup can only be restored by a superuser".into());
        }
        let argv = psql_script_argv(
            &ctx.bin_dir,
            &conn,
            target.name,
            Some(&path),
            false,
            false,
            &[],
        );
        return Ok(RestoreStep::Globals {
            command: command(argv),
        });
    }
    if format == Format::Plain {
        let single = request.options.single_transaction;
        let compressed = backup
            .compress
            .as_deref()
            .is_some_and(|c| c != "0" && c != "none");
        let mut before = Vec::new();
        if let Some(role) = sandbox.and_then(Sandbox::run_as) {
            before.push(set_role_sql(role));
        }
        if target.fresh {
            let creates_public = open_plain_dump(&path, compressed)
                .and_then(script_creates_public_schema)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if creates_public {
                before.push("DROP SCHEMA public".into());
            }
        }
        return Ok(if compressed {
            RestoreStep::PsqlStdin {
                command: command(psql_script_argv(
                    &ctx.bin_dir,
                    &conn,
                    target.name,
                    None,
                    true,
                    single,
                    &before,
                )),
                input: path,
                compressed: true,
            }
        } else {
            RestoreStep::PsqlFile(command(psql_script_argv(
                &ctx.bin_dir,
                &conn,
                target.name,
                Some(&path),
                true,
                single,
                &before,
            )))
        });
    }
    let use_list = if request.options.toc_ids.is_empty() && !target.fresh {
        None
    } else {
        let listing = list_archive(
            &pg_restore_list_argv(&ctx.bin_dir, &path).into(),
            &work_dir(ctx)?,
            LIST_TIMEOUT,
        )?;
        let selected = if request.options.toc_ids.is_empty() {
            None
        } else {
            Some(use_list_for(&listing, &request.options.toc_ids).map_err(|e| e.message)?)
        };
        let base = selected.as_deref().unwrap_or(&listing);
        match (
            target.fresh.then(|| without_public_schema(base)).flatten(),
            selected,
        ) {
            (Some(list), _) | (None, Some(list)) => {
                std::fs::write(list_file, list)
                    .map_err(|e| format!("cannot write {}: {e}", list_file.display()))?;
                Some(list_file)
            }
            (None, None) => None,
        }
    };
    let role = sandbox.and_then(Sandbox::run_as);
    Ok(RestoreStep::PgRestore(command(pg_restore_argv(
        &ctx.bin_dir,
        &conn,
        target.name,
        &path,
        request,
        use_list,
        role,
    ))))
}

/// Creates a restore's new database (owned by the requester when it is not a superuser) and
/// gives it `access`, as the worker's own role in the catalog database. A read-only login
/// gets CONNECT on it.
fn create_database(
    ctx: &Context,
    name: &str,
    sandbox: Option<&Sandbox>,
    access: &SourceAccess,
) -> ToolCommand {
    let mut statements = vec![create_database_sql(name, sandbox.and_then(Sandbox::run_as))];
    statements.extend(access_sql(name, access));
    if let Some(reader) = sandbox.filter(|s| s.run_as().is_none()) {
        statements.push(format!(
            "GRANT CONNECT ON DATABASE {} TO {}",
            quote_ident(name),
            quote_ident(&reader.login)
        ));
    }
    create_database_argv(
        &ctx.bin_dir,
        &ctx.connection,
        &ctx.catalog_database,
        &statements,
    )
    .into()
}

fn checksum_plan(backup: &BackupRecord, work_dir: PathBuf) -> Result<VerifyPlan, String> {
    let (path, format) = archive(backup)?;
    Ok(VerifyPlan {
        path,
        format,
        expected_sha256: backup.sha256.clone().unwrap_or_default(),
        expected_size: backup.size_bytes.unwrap_or_default().max(0) as u64,
        list: None,
        test_restore: None,
        work_dir,
    })
}

fn prepare_restore(
    claimed: &ClaimedJob,
    backup: &BackupRecord,
    ctx: &Context,
    work_dir: PathBuf,
) -> Result<Plan, String> {
    let request = RestoreRequest::from_stored(&claimed.request)
        .map_err(|e| format!("stored request cannot be read: {e}"))?;
    let sandbox = Sandbox::for_requester(claimed)?;
    // Globals are replayed through the catalog database; they belong to the cluster.
    let target = claimed
        .database
        .clone()
        .unwrap_or_else(|| ctx.catalog_database.clone());
    let list_file = work_dir.join(format!("job-{}.list", claimed.job_id));
    let step = restore_step(
        backup,
        &RestoreTarget {
            name: &target,
            fresh: request.create_db,
            sandbox: sandbox.as_ref(),
        },
        &request,
        ctx,
        &list_file,
    )?;
    let create = if request.create_db {
        let access = catalog::source_access(backup.database.as_deref())
            .map_err(|e| format!("cannot read the source database's access list: {e}"))?;
        Some(create_database(ctx, &target, sandbox.as_ref(), &access))
    } else {
        None
    };
    let plan = RestorePlan {
        create,
        restore: step,
        drop_on_failure: request.create_db.then(|| {
            dropdb_argv(
                &ctx.bin_dir,
                &ctx.connection,
                &ctx.catalog_database,
                &target,
            )
            .into()
        }),
        work_dir: work_dir.clone(),
    };
    let start = if backup.size_bytes.unwrap_or(i64::MAX) > HASHED_AT_CALL_TIME_BYTES {
        Start::CheckedRestore(Box::new(checksum_plan(backup, work_dir)?), plan)
    } else {
        Start::Restore(plan)
    };
    if let Some(sandbox) = &sandbox {
        sandbox.create()?;
    }
    Ok(Plan {
        start,
        kind: Kind::Restore,
        login_role: sandbox.map(|s| s.login),
        output: None,
        tool: "pg_restore",
        stderr_path: None,
        progress: ProgressTracker::default(),
        table_count: None,
    })
}

fn prepare_verify(
    claimed: &ClaimedJob,
    backup: &BackupRecord,
    ctx: &Context,
    work_dir: PathBuf,
) -> Result<Plan, String> {
    let mut plan = checksum_plan(backup, work_dir.clone())?;
    let conn = &ctx.connection;
    let is_archive = backup.kind == "database" && plan.format != Format::Plain;
    if is_archive {
        plan.list = Some(pg_restore_list_argv(&ctx.bin_dir, &plan.path).into());
    }
    let test_restore = claimed
        .request
        .get("test_restore")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let mut sandbox = None;
    if test_restore {
        // The rows are always counted by the job's own login, never by a superuser.
        let login = match Sandbox::for_requester(claimed)? {
            Some(acting) => acting,
            None => Sandbox::new(claimed.job_id, SandboxGrant::ReadsAll)?,
        };
        let acting = login.run_as().is_some();
        let scratch = scratch_database(claimed.job_id);
        // Acting for a non-superuser, the scratch copy belongs to that role: objects owned
        // by other roles could not be given to them, and need not be to count rows.
        let options = if acting && is_archive {
            serde_json::json!({"no_owner": true, "no_privileges": true})
        } else {
            serde_json::json!({})
        };
        let request = RestoreRequest::validate(plan.format, false, true, None, &options)
            .map_err(|e| e.message)?;
        let list_file = work_dir.join(format!("job-{}.list", claimed.job_id));
        let restore = restore_step(
            backup,
            &RestoreTarget {
                name: &scratch,
                fresh: true,
                sandbox: Some(&login),
            },
            &request,
            ctx,
            &list_file,
        )?;
        let maintenance = &ctx.catalog_database;
        let compressed = backup
            .compress
            .as_deref()
            .is_some_and(|c| c != "0" && c != "none");
        let count = ToolCommand::from(psql_query_argv(
            &ctx.bin_dir,
            &login.connection(ctx),
            &scratch,
            row_count_query(),
        ))
        .with_env(login.env());
        plan.test_restore = Some(TestRestorePlan {
            create: create_database(ctx, &scratch, Some(&login), &SourceAccess::Unknown),
            restore,
            archive_rows: if is_archive {
                ArchiveRows::FromPgRestore(
                    pg_restore_to_stdout_argv(&ctx.bin_dir, &plan.path).into(),
                )
            } else {
                ArchiveRows::FromPlainFile { compressed }
            },
            count,
            drop: dropdb_argv(&ctx.bin_dir, conn, maintenance, &scratch).into(),
        });
        sandbox = Some(login);
    }
    if let Some(sandbox) = &sandbox {
        sandbox.create()?;
    }
    Ok(Plan {
        start: Start::Verify(Box::new(plan)),
        kind: Kind::Verify {
            backup_id: backup.backup_id,
        },
        login_role: sandbox.map(|s| s.login),
        output: None,
        tool: "pg_restore",
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
    match job.kind.as_str() {
        "restore" if flag("create_db") => job.database.clone(),
        "verify" if flag("test_restore") => Some(scratch_database(job.job_id)),
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
