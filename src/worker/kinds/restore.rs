//! Restores: the target database, the login a non-superuser's restore uses, and the tool that
//! reads the archive into it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use backup_core::{
    access_sql, create_database_argv, create_database_sql, dropdb_argv, header_settings,
    list_archive, login, pg_restore_argv, pg_restore_data_argv, pg_restore_list_argv,
    pg_restore_schema_argv, pg_restore_script_argv, plain_dump_reader, psql_query_argv,
    psql_script_argv, quote_ident, row_count_query, script_creates_public_schema,
    script_is_restricted, set_role_sql, use_list_to_write, without_server_attribute_option,
    ArchiveRowsFrom, ArchiveSource, ArchiveVersion, Connection, Format, ProgressTracker,
    RestorePlan, RestoreRequest, RestoreStep, RestoredRows, RowCheck, SourceAccess, ToolCommand,
    SERVER_ATTRIBUTE_OPTION,
};

use super::*;
use crate::catalog::{self, BackupRecord, ClaimedJob};

/// How long reading an archive's table of contents may take before the job fails.
pub(super) const LIST_TIMEOUT: Duration = Duration::from_secs(60);

/// The login a restore or test restore uses instead of the worker's superuser role (see
/// `backup_core::login`): a role made for the one job.
pub struct Sandbox {
    pub login: String,
    password: String,
    verifier: String,
    grant: SandboxGrant,
}

/// What the job's login role may do.
pub(super) enum SandboxGrant {
    /// Act for a requester that is not a superuser: a member of it; the tools `SET ROLE` to it.
    ActsFor(String),
    /// Only read: counting a test restore's rows for a superuser's verification. Nothing that
    /// runs while the rows are counted (planning evaluates a restored index's predicate, say)
    /// may run as a superuser.
    ReadsAll,
}

impl Sandbox {
    pub(super) fn new(job_id: i64, grant: SandboxGrant) -> Result<Sandbox, String> {
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
    pub(super) fn for_requester(claimed: &ClaimedJob) -> Result<Option<Sandbox>, String> {
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
    pub(super) fn run_as(&self) -> Option<&str> {
        match &self.grant {
            SandboxGrant::ActsFor(role) => Some(role),
            SandboxGrant::ReadsAll => None,
        }
    }

    /// Creates the login role; the last step of preparing a job, so that a job that fails to
    /// prepare leaves no role behind.
    pub(super) fn create(&self) -> Result<(), String> {
        let created = match &self.grant {
            SandboxGrant::ActsFor(role) => {
                catalog::create_job_role(&self.login, Some(role), &self.verifier)
            }
            SandboxGrant::ReadsAll => catalog::create_job_role(&self.login, None, &self.verifier),
        };
        created.map_err(|e| format!("cannot create the job's login role: {e}"))
    }

    pub(super) fn connection(&self, ctx: &Context) -> Connection {
        Connection {
            user: self.login.clone(),
            ..ctx.connection.clone()
        }
    }

    pub(super) fn env(&self) -> Vec<(String, String)> {
        vec![("PGPASSWORD".into(), self.password.clone())]
    }
}

/// Who a restore step connects as, and into which database.
pub(super) struct RestoreTarget<'a> {
    pub(super) name: &'a str,
    /// The database was just created from template0 (so it has a `public` schema already).
    pub(super) fresh: bool,
    pub(super) sandbox: Option<&'a Sandbox>,
}

/// The restore step for an archive; writes a `-L` list next to the job's other files when
/// `toc_ids` asks for exact entries, or when a fresh database already has the `public`
/// schema the archive creates.
pub(super) fn restore_step(
    backup: &BackupRecord,
    target: &RestoreTarget,
    request: &RestoreRequest,
    ctx: &Context,
    list_file: &Path,
) -> Result<RestoreStep, String> {
    let (source, format) = source(backup)?;
    // An encrypted backup: the identity must open it before anything reads it or the target
    // is touched.
    source
        .check_decryptable()
        .map_err(|e| format!("{e} ({})", e.hint()))?;
    // The path the tools read; empty for an object, which they read on stdin.
    let path = source.path().unwrap_or(Path::new("")).to_path_buf();
    let stdin = source.path().is_none().then_some(&source);
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
    // psql running a script from stdin with ON_ERROR_STOP, after the `before` statements.
    let psql_reading_stdin = |single: bool, before: &[String]| {
        command(psql_script_argv(
            &ctx.bin_dir,
            &conn,
            target.name,
            None,
            true,
            single,
            before,
        ))
    };
    if backup.kind == Ok(JobKind::Globals) {
        if sandbox.is_some() {
            return Err("a globals backup can only be restored by a superuser".into());
        }
        let argv = psql_script_argv(
            &ctx.bin_dir,
            &conn,
            target.name,
            source.path(),
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
        let compressed = backup.gzipped();
        let mut before = Vec::new();
        if let Some(role) = sandbox.and_then(Sandbox::run_as) {
            before.push(set_role_sql(role));
        }
        let open = || source.open().map(|raw| plain_dump_reader(raw, compressed));
        if target.fresh {
            let creates_public = open()
                .and_then(script_creates_public_schema)
                .map_err(|e| format!("cannot read {}: {e}", source.describe()))?;
            if creates_public {
                before.push("DROP SCHEMA public".into());
            }
        }
        // A newer pg_dump sets parameters an older server does not know (pg_dump 17:
        // transaction_timeout); with ON_ERROR_STOP those header lines are left out.
        let header = open()
            .and_then(header_settings)
            .map_err(|e| format!("cannot read {}: {e}", source.describe()))?;
        let skip_settings = catalog::unknown_settings(&header).map_err(|e| e.to_string())?;
        // Streamed through the worker, which also leaves out the column option only the
        // server that wrote it accepts (backup_core::SERVER_ATTRIBUTE_OPTION).
        return Ok(RestoreStep::PsqlStdin {
            command: psql_reading_stdin(single, &before),
            input: source,
            compressed,
            skip_settings,
            rows_of: None,
        });
    }
    let use_list = if request.options.toc_ids.is_empty() && !target.fresh {
        None
    } else {
        let listing = list_archive(
            &pg_restore_list_argv(&ctx.bin_dir, &path).into(),
            stdin,
            &work_dir(ctx)?,
            LIST_TIMEOUT,
        )?;
        match use_list_to_write(&listing, &request.options.toc_ids, target.fresh)
            .map_err(|e| e.message)?
        {
            Some(list) => {
                std::fs::write(list_file, list)
                    .map_err(|e| format!("cannot write {}: {e}", list_file.display()))?;
                Some(list_file)
            }
            None => None,
        }
    };
    let role = sandbox.and_then(Sandbox::run_as);
    // An archive whose definitions carry the column option only the server that wrote it
    // accepts is restored as a script, through the filter that takes the option out.
    if let Some(schema) = definitions_to_filter(ctx, &source, format)? {
        // psql runs what pg_restore prints; names and comments in it come from the backed-up
        // database, so psql's backslash commands must be off (`\restrict`).
        if !script_is_restricted(schema.as_bytes()).unwrap_or(false) {
            return Err(format!(
                "this archive must be restored as a script, and the pg_restore in {} does not \
                 write \\restrict; use pg_restore 16.10, 17.6, 18.0 or later",
                ctx.bin_dir.display()
            ));
        }
        let skip_settings = header_settings(schema.as_bytes())
            .map_err(|e| e.to_string())
            .and_then(|h| catalog::unknown_settings(&h).map_err(|e| e.to_string()))?;
        let before: Vec<String> = role.map(set_role_sql).into_iter().collect();
        return Ok(RestoreStep::PsqlFromTool {
            command: psql_reading_stdin(request.options.single_transaction, &before),
            source: pg_restore_script_argv(&ctx.bin_dir, &path, request, use_list).into(),
            skip_settings,
            copy_into: None,
        });
    }
    // Newer tools set parameters an older server does not know; pg_restore must then go on
    // past those (and only those, which the step's outcome checks).
    let into_older_server = crate::tools::tool_version(&ctx.bin_dir, "pg_restore")
        .is_ok_and(|(major, _)| major > ctx.server_major);
    let argv = pg_restore_argv(
        &ctx.bin_dir,
        &conn,
        target.name,
        &path,
        request,
        use_list,
        role,
        !into_older_server,
    );
    Ok(if into_older_server {
        RestoreStep::PgRestoreIntoOlderServer(command(argv))
    } else {
        RestoreStep::PgRestore(command(argv))
    })
}

/// The archive's definitions as SQL when they hold [`SERVER_ATTRIBUTE_OPTION`] items, which only
/// pg_dump 16 and later write (archive version 1.15 and later); None otherwise.
fn definitions_to_filter(
    ctx: &Context,
    source: &ArchiveSource,
    format: Format,
) -> Result<Option<String>, String> {
    let newer_writer = source
        .archive_version(format)
        .ok()
        .flatten()
        .is_some_and(|v| v >= ArchiveVersion(1, 15));
    if !newer_writer {
        return Ok(None);
    }
    let path = source.path().unwrap_or(Path::new(""));
    let schema = list_archive(
        &pg_restore_schema_argv(&ctx.bin_dir, path).into(),
        source.path().is_none().then_some(source),
        &work_dir(ctx)?,
        LIST_TIMEOUT,
    )?;
    let marker = format!("{SERVER_ATTRIBUTE_OPTION}=");
    let holds = schema
        .lines()
        .any(|l| l.contains(&marker) && without_server_attribute_option(l).is_some());
    Ok(holds.then_some(schema))
}

/// Creates a restore's new database (owned by the requester when it is not a superuser) and
/// gives it `access`, as the worker's own role in the catalog database. A read-only login
/// gets CONNECT on it.
pub(super) fn create_database(
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

pub(super) fn prepare_restore(
    claimed: &ClaimedJob,
    backup: &BackupRecord,
    ctx: &Context,
    work_dir: PathBuf,
) -> Result<Plan, String> {
    let request = RestoreRequest::from_stored(&claimed.request)
        .map_err(|e| format!("stored request cannot be read: {e}"))?;
    // Globals are replayed through the catalog database; they belong to the cluster.
    let target = claimed
        .database
        .clone()
        .unwrap_or_else(|| ctx.catalog_database.clone());
    let compared = compare_rows(backup, &request);
    // The restored rows are counted by the job's own login, never by a superuser: the one
    // acting for the requester, or a read-only one for a superuser's restore.
    let sandbox = match Sandbox::for_requester(claimed)? {
        Some(acting) => Some(acting),
        None if compared.is_ok() => Some(Sandbox::new(claimed.job_id, SandboxGrant::ReadsAll)?),
        None => None,
    };
    let list_file = work_dir.join(format!("job-{}.list", claimed.job_id));
    let step = if let Some(table) = &request.table {
        super::table::table_step(
            backup,
            &RestoreTarget {
                name: &target,
                fresh: false,
                sandbox: sandbox.as_ref(),
            },
            table,
            ctx,
            &work_dir.join(format!("job-{}", claimed.job_id)),
        )?
    } else {
        restore_step(
            backup,
            &RestoreTarget {
                name: &target,
                fresh: request.create_db,
                sandbox: sandbox.as_ref(),
            },
            &request,
            ctx,
            &list_file,
        )?
    };
    let create = if request.create_db {
        let access = catalog::source_access(backup.database.as_deref())
            .map_err(|e| format!("cannot read the source database's access list: {e}"))?;
        Some(create_database(ctx, &target, sandbox.as_ref(), &access))
    } else {
        None
    };
    // A remote backup was checked by the job's first step, as it was read through.
    let remote = backup.storage != catalog::LOCAL_STORAGE;
    // An encrypted backup is always fed decrypted on stdin.
    let stdin = if remote || backup.encrypted {
        Some(source(backup)?.0)
    } else {
        None
    };
    // restore_step wrote the list when the restore uses one; a table restore counts the
    // archive's rows of its one table (table_step's data list).
    let table_list = work_dir.join(format!("job-{}.data.list", claimed.job_id));
    let use_list = if request.table.is_some() {
        table_list.exists().then_some(table_list.as_path())
    } else {
        list_file.exists().then_some(list_file.as_path())
    };
    let rows = row_check(
        backup,
        &request,
        ctx,
        compared.map(|()| (sandbox.as_ref(), target.as_str())),
        use_list,
        stdin.clone(),
    )?;
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
        stdin,
        rows,
    };
    let start = if !remote && backup.size_bytes.unwrap_or(i64::MAX) > HASHED_AT_CALL_TIME_BYTES {
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
        makes_database: request.create_db,
        output: None,
        tool: "pg_restore",
        stderr_path: None,
        progress: ProgressTracker::default(),
        table_count: None,
    })
}

/// Whether the restored rows can be held against the archive's: only when the restored tables
/// hold nothing but what the restore wrote, i.e. it created the database or cleaned the
/// tables first. Else, why not.
fn compare_rows(backup: &BackupRecord, request: &RestoreRequest) -> Result<(), String> {
    if backup.kind == Ok(JobKind::Globals) {
        return Err("a globals backup holds no table data".into());
    }
    if request.table.is_some() {
        return Err(
            "restore_table() loads one table into a database whose other tables hold rows of \
             their own"
                .into(),
        );
    }
    if request.options.schema_only {
        return Err("only the schema was restored".into());
    }
    if !request.create_db && !request.options.clean {
        return Err(
            "the restore went into an existing database without clean, whose tables may have \
             had rows before"
                .into(),
        );
    }
    Ok(())
}

/// How the job checks its rows: the archive's `COPY` rows of the tables it restores (also
/// the restore's tables_total), and, when `compared` gives the login and database to count
/// in, the restored rows of those tables.
fn row_check(
    backup: &BackupRecord,
    request: &RestoreRequest,
    ctx: &Context,
    compared: Result<(Option<&Sandbox>, &str), String>,
    use_list: Option<&Path>,
    stdin: Option<ArchiveSource>,
) -> Result<RowCheck, String> {
    if backup.kind == Ok(JobKind::Globals) || request.options.schema_only {
        return Ok(RowCheck::not_compared(compared.err().unwrap_or_default()));
    }
    let (source, format) = source(backup)?;
    if format == Format::Plain && request.table.is_some() {
        // A script's rows are counted for all its tables; one table's are not told apart.
        return Ok(RowCheck::not_compared(compared.err().unwrap_or_default()));
    }
    let archive = if format == Format::Plain {
        ArchiveRowsFrom::Script {
            source,
            compressed: backup.gzipped(),
        }
    } else {
        let path = source.path().unwrap_or(Path::new("")).to_path_buf();
        ArchiveRowsFrom::Tool {
            command: pg_restore_data_argv(&ctx.bin_dir, &path, request, use_list).into(),
            stdin,
        }
    };
    let restored = match compared {
        Ok((Some(login), target)) => RestoredRows::Count(
            ToolCommand::from(psql_query_argv(
                &ctx.bin_dir,
                &login.connection(ctx),
                target,
                row_count_query(),
            ))
            .with_env(login.env()),
        ),
        Ok((None, _)) => return Err("no login to count the restored rows with".into()),
        Err(why) => RestoredRows::NotCompared(why),
    };
    Ok(RowCheck {
        archive: Some(archive),
        restored,
    })
}
