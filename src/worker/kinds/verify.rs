//! Verifications: checksum, table of contents, and the test restore into a scratch database
//! whose rows are counted by a login that is not a superuser.

use std::path::PathBuf;

use backup_core::{
    dropdb_argv, pg_restore_list_argv, pg_restore_to_stdout_argv, psql_query_argv, row_count_query,
    ArchiveRows, Format, ProgressTracker, RestoreRequest, SourceAccess, TestRestorePlan,
    ToolCommand,
};

use super::restore::{create_database, restore_step, RestoreTarget, Sandbox, SandboxGrant};
use super::*;
use crate::catalog::{BackupRecord, ClaimedJob};

pub(super) fn prepare_verify(
    claimed: &ClaimedJob,
    backup: &BackupRecord,
    ctx: &Context,
    work_dir: PathBuf,
) -> Result<Plan, String> {
    let mut plan = checksum_plan(backup, work_dir.clone())?;
    let conn = &ctx.connection;
    let is_archive = backup.kind == Ok(JobKind::Database) && plan.format != Format::Plain;
    // An encrypted archive's checksum is of its stored bytes; everything else reads it
    // decrypted on stdin (the tools then name no file).
    // Without an identity configured, an encrypted backup's verification is its checksum.
    let keyless = backup.encrypted && crate::settings::identity_file().is_none();
    let read_path = if backup.encrypted {
        plan.decrypted = Some(source(backup)?.0);
        PathBuf::new()
    } else {
        plan.path.clone()
    };
    if is_archive && !keyless {
        plan.list = Some(pg_restore_list_argv(&ctx.bin_dir, &read_path).into());
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
        let compressed = backup.gzipped();
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
                    pg_restore_to_stdout_argv(&ctx.bin_dir, &read_path).into(),
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
        makes_database: test_restore,
        output: None,
        tool: "pg_restore",
        stderr_path: None,
        progress: ProgressTracker::default(),
        table_count: None,
    })
}
