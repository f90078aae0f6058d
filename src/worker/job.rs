//! One job in the worker: from a claimed catalog row to a running child, and from the child's
//! result to the catalog outcome. The tool handling itself lives in `backup_core`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use backup_core::{
    backup_file_name, database_folder, partial_path, pg_dump_argv, pg_dumpall_globals_argv,
    remove_output, Connection, DumpRequest, DumpRun, GlobalsRequest, OutputKind, RunResult,
    RunSpec, GLOBALS_FOLDER,
};

use crate::catalog::{ArtifactFacts, ClaimedJob, Outcome};

/// Everything a job needs from the server's configuration, read once per loop.
pub struct Context {
    pub bin_dir: PathBuf,
    pub directory: PathBuf,
    pub connection: Connection,
    pub catalog_database: String,
    pub job_timeout: Option<Duration>,
}

/// A job whose child is running.
pub struct RunningJob {
    pub job_id: i64,
    pub run: DumpRun,
    pub started: Instant,
    pub timeout: Option<Duration>,
}

/// What `prepare` decided: the command and where its output goes.
pub struct Plan {
    pub spec: RunSpec,
    pub final_path: PathBuf,
    pub tool: &'static str,
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

/// Works out the command line and paths for a claimed job, creating its folder.
pub fn prepare(claimed: &ClaimedJob, ctx: &Context) -> Result<Plan, String> {
    if !ctx.directory.is_absolute() {
        return Err(format!(
            "backup_ext.directory must be an absolute path, not {:?}",
            ctx.directory
        ));
    }
    let work_dir = ctx.directory.join(".work");
    make_private_dir(&work_dir)?;
    let stderr_path = work_dir.join(format!("job-{}.stderr", claimed.job_id));
    let started = started_at(claimed);

    let (folder, suffix, tool, request) = match claimed.kind.as_str() {
        "database" => {
            let dbname = claimed
                .database
                .as_deref()
                .ok_or("database job without a database")?;
            let request = DumpRequest::from_stored(&claimed.request)
                .map_err(|e| format!("stored request cannot be read: {e}"))?;
            let suffix = request.file_name_suffix();
            (database_folder(dbname), suffix, "pg_dump", Some(request))
        }
        "globals" => (GLOBALS_FOLDER.to_string(), ".sql", "pg_dumpall", None),
        other => return Err(format!("unknown job kind {other:?}")),
    };
    let folder = ctx.directory.join(folder);
    make_private_dir(&folder)?;
    let final_path = folder.join(backup_file_name(started, claimed.job_id, suffix));
    let partial = partial_path(&final_path);

    let (program, args, output) = match request {
        Some(request) => {
            let dbname = claimed.database.as_deref().unwrap_or_default();
            if request.format.writes_to_stdout() {
                let (program, args) =
                    pg_dump_argv(&ctx.bin_dir, &ctx.connection, dbname, &request, None);
                (program, args, OutputKind::Stdout { partial })
            } else {
                let (program, args) = pg_dump_argv(
                    &ctx.bin_dir,
                    &ctx.connection,
                    dbname,
                    &request,
                    Some(&partial),
                );
                (program, args, OutputKind::Directory { partial })
            }
        }
        None => {
            let request = GlobalsRequest::from_stored(&claimed.request)
                .map_err(|e| format!("stored request cannot be read: {e}"))?;
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
        spec: RunSpec {
            program,
            args,
            output,
            final_path: final_path.clone(),
            stderr_path,
        },
        final_path,
        tool,
    })
}

/// Turns the child's result into the catalog's outcome.
pub fn outcome_of(result: RunResult) -> Outcome {
    match result {
        RunResult::Succeeded {
            size,
            sha256,
            manifest,
        } => Outcome::Succeeded {
            artifact: Some(ArtifactFacts {
                size: size as i64,
                sha256,
                manifest: manifest.and_then(|m| serde_json::to_value(m).ok()),
            }),
            message: None,
        },
        RunResult::Failed { message } => Outcome::Failed(message),
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
