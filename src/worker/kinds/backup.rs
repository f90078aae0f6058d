//! Database and globals backups: pg_dump / pg_dumpall into the backup directory.

use std::path::PathBuf;

use backup_core::{
    backup_file_name, database_folder, is_inside, object_key, partial_path, pg_dump_argv,
    pg_dumpall_globals_argv, psql_query_argv, DumpRequest, ExpectedOutput, GlobalsRequest,
    OutputKind, ProgressTracker, RunSpec, ToolCommand, GLOBALS_FOLDER,
};

use backup_core::crypt::{directory_refused, ENCRYPTED_SUFFIX};

use super::*;
use crate::catalog::ClaimedJob;

/// The query that counts the tables whose data a whole-database dump will contain (pg_dump's
/// verbose output never says); `None` when filters make the number uncertain.
pub(super) fn table_count_command(
    ctx: &Context,
    dbname: &str,
    request: &DumpRequest,
) -> Option<ToolCommand> {
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

pub(super) fn prepare_backup(
    claimed: &ClaimedJob,
    ctx: &Context,
    work_dir: PathBuf,
) -> Result<Plan, String> {
    // The policy when the job starts: a changed policy applies to the next backups.
    let database = claimed
        .database
        .as_deref()
        .filter(|_| claimed.kind == Ok(JobKind::Database));
    let encrypt_to = crate::catalog::encryption_recipients(database).map_err(|e| e.to_string())?;
    let mut plan = plan_output(claimed, ctx, work_dir, !encrypt_to.is_empty())?;
    if let Start::Dump(spec) = &mut plan.start {
        spec.encrypt_to = encrypt_to;
    }
    Ok(plan)
}

/// The plan of a backup, its output named with [`ENCRYPTED_SUFFIX`] when `encrypted`.
fn plan_output(
    claimed: &ClaimedJob,
    ctx: &Context,
    work_dir: PathBuf,
    encrypted: bool,
) -> Result<Plan, String> {
    let stderr_path = work_dir.join(format!("job-{}.stderr", claimed.job_id));
    let unreadable = |e: serde_json::Error| format!("stored request cannot be read: {e}");
    let (folder, suffix, tool, request) = match claimed.database.as_deref() {
        Some(dbname) if claimed.kind == Ok(JobKind::Database) => {
            let request = DumpRequest::from_stored(&claimed.request).map_err(unreadable)?;
            let suffix = request.file_name_suffix();
            (database_folder(dbname), suffix, "pg_dump", Some(request))
        }
        _ => (GLOBALS_FOLDER.to_string(), ".sql", "pg_dumpall", None),
    };
    if encrypted
        && request
            .as_ref()
            .is_some_and(|r| !r.format.writes_to_stdout())
    {
        let refused = directory_refused();
        return Err(format!("{} ({})", refused.message, refused.hint));
    }
    let suffix = format!("{suffix}{}", if encrypted { ENCRYPTED_SUFFIX } else { "" });
    let suffix = suffix.as_str();
    let remote = match crate::storage::open_named(&claimed.storage) {
        Ok(store) => store,
        Err(crate::error::BackupError::NoSuchStorage { name, .. }) => {
            return Err(format!(
            "storage target \"{name}\" no longer exists (it was dropped after the job was queued)"
        ))
        }
        Err(e) => {
            return Err(format!(
                "cannot open storage target \"{}\": {}",
                claimed.storage,
                e.message()
            ))
        }
    };
    if let Some(store) = remote {
        let key = object_key(
            &crate::catalog::system_identifier().map_err(|e| e.to_string())?,
            claimed.database.as_deref(),
            started_at(claimed),
            claimed.job_id,
            suffix,
        );
        if request
            .as_ref()
            .is_some_and(|r| !r.format.writes_to_stdout())
        {
            // pg_dump writes the directory locally; its files are uploaded when it is done.
            let staged = work_dir.join(format!("job-{}.staged", claimed.job_id));
            return dump_plan(
                claimed,
                ctx,
                request,
                stderr_path,
                tool,
                OutputKind::Directory {
                    partial: partial_path(&staged),
                },
                staged.clone(),
                Destination::Remote {
                    storage: claimed.storage.clone(),
                    key,
                    store,
                    started: None,
                    staged: Some(Staged {
                        dir: staged,
                        open: Default::default(),
                    }),
                },
            );
        }
        let started = backup_core::storage::UploadStarted::default();
        return dump_plan(
            claimed,
            ctx,
            request,
            stderr_path,
            tool,
            OutputKind::Upload {
                store: store.clone(),
                key: key.clone(),
                started: started.clone(),
            },
            PathBuf::from(&key),
            Destination::Remote {
                storage: claimed.storage.clone(),
                key,
                store,
                started: Some(started),
                staged: None,
            },
        );
    }
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
    let output = match &request {
        Some(r) if !r.format.writes_to_stdout() => OutputKind::Directory {
            partial: partial.clone(),
        },
        _ => OutputKind::Stdout { partial },
    };
    dump_plan(
        claimed,
        ctx,
        request,
        stderr_path,
        tool,
        output,
        final_path.clone(),
        Destination::Local(final_path),
    )
}

/// The plan of a dump whose output (a local file or directory, or an upload) is decided.
#[allow(clippy::too_many_arguments)]
fn dump_plan(
    claimed: &ClaimedJob,
    ctx: &Context,
    request: Option<DumpRequest>,
    stderr_path: PathBuf,
    tool: &'static str,
    output: OutputKind,
    final_path: PathBuf,
    destination: Destination,
) -> Result<Plan, String> {
    let unreadable = |e: serde_json::Error| format!("stored request cannot be read: {e}");
    let mut progress = ProgressTracker::default();
    let mut table_count = None;
    let expect = request
        .as_ref()
        .map(|r| ExpectedOutput::of_format(r.format))
        .unwrap_or_default();
    let (program, args) = match request {
        Some(request) => {
            progress = progress.with_jobs(request.jobs);
            table_count = claimed
                .database
                .as_deref()
                .and_then(|db| table_count_command(ctx, db, &request));
            let dbname = claimed.database.as_deref().unwrap_or_default();
            let dir_output = match &output {
                OutputKind::Directory { partial } => Some(partial.as_path()),
                _ => None,
            };
            pg_dump_argv(&ctx.bin_dir, &ctx.connection, dbname, &request, dir_output)
        }
        None => {
            let request = GlobalsRequest::from_stored(&claimed.request).map_err(unreadable)?;
            pg_dumpall_globals_argv(
                &ctx.bin_dir,
                &ctx.connection,
                &ctx.catalog_database,
                &request,
            )
        }
    };
    Ok(Plan {
        start: Start::Dump(RunSpec {
            program,
            args,
            output,
            final_path,
            stderr_path: stderr_path.clone(),
            expect,
            encrypt_to: Vec::new(),
        }),
        kind: Kind::Backup {
            database: claimed.database.clone(),
        },
        login_role: None,
        makes_database: false,
        output: Some(destination),
        tool,
        stderr_path: (claimed.kind == Ok(JobKind::Database)).then_some(stderr_path),
        progress,
        table_count,
    })
}
