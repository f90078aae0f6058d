//! `restore_table()`'s restore step: one table's definition and rows from an archive, as a new
//! table (or into an existing empty one), in a single transaction run as the requester.
//!
//! pg_restore prints the script of the table's entries; `backup_core::table_definition`
//! rewrites it to create the new table, and the rows are streamed from a second pg_restore
//! through the filter that points their COPY at the new table. psql runs the definition, the
//! rows and then the indexes with ON_ERROR_STOP inside one transaction: a failure (the name
//! taken meanwhile, a row the CHECK refuses) leaves nothing behind.

use std::path::Path;

use backup_core::{
    data_only_check_sql, header_settings, list_archive, parse_toc, pg_restore_entries_argv,
    pg_restore_list_argv, psql_table_argv, set_role_sql, table_definition, table_entries,
    use_list_for, CopyInto, RestoreStep, TableTarget, ToolCommand,
};

use super::restore::{RestoreTarget, Sandbox, LIST_TIMEOUT};
use super::{source, work_dir, Context};
use crate::catalog::{self, BackupRecord};

/// Writes `text` to `path`, failing the job's preparation when it cannot.
fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The step that restores `table`; its scripts and `-L` lists are written to
/// `<files>.{definition,data}.list` and `<files>.{definition,indexes}.sql`.
pub(super) fn table_step(
    backup: &BackupRecord,
    target: &RestoreTarget,
    table: &TableTarget,
    ctx: &Context,
    files: &Path,
) -> Result<RestoreStep, String> {
    let (source, _) = source(backup)?;
    source
        .check_decryptable()
        .map_err(|e| format!("{e} ({})", e.hint()))?;
    let path = source.path().unwrap_or(Path::new("")).to_path_buf();
    let stdin = source.path().is_none().then_some(&source);
    let scratch = work_dir(ctx)?;
    let listing = list_archive(
        &pg_restore_list_argv(&ctx.bin_dir, &path).into(),
        stdin,
        &scratch,
        LIST_TIMEOUT,
    )?;
    let entries = parse_toc(&listing).map_err(|e| e.to_string())?;
    let found = table_entries(&entries, &table.schema, &table.name).ok_or_else(|| {
        format!(
            "backup {} holds no table {}",
            backup.backup_id,
            backup_core::quote_ident(&table.name)
        )
    })?;
    let data = found.data.ok_or_else(|| {
        format!(
            "backup {} holds the definition of table {} but not its rows",
            backup.backup_id,
            backup_core::quote_ident(&table.name)
        )
    })?;
    let named = |ext: &str| files.with_extension(ext);
    let (definition_list, data_list) = (named("definition.list"), named("data.list"));
    let (definition_sql, indexes_sql) = (named("definition.sql"), named("indexes.sql"));
    write(
        &definition_list,
        &use_list_for(&listing, &found.definitions).map_err(|e| e.message)?,
    )?;
    write(
        &data_list,
        &use_list_for(&listing, &[data]).map_err(|e| e.message)?,
    )?;
    let script = list_archive(
        &pg_restore_entries_argv(&ctx.bin_dir, &path, &definition_list, false).into(),
        stdin,
        &scratch,
        LIST_TIMEOUT,
    )?;
    let skip_settings = header_settings(script.as_bytes())
        .map_err(|e| e.to_string())
        .and_then(|h| catalog::unknown_settings(&h).map_err(|e| e.to_string()))?;
    if table.data_only {
        write(&definition_sql, &data_only_check_sql(table))?;
        write(&indexes_sql, "")?;
    } else {
        let definition = table_definition(&script, table, &skip_settings)?;
        write(&definition_sql, &definition.before_script())?;
        write(&indexes_sql, &definition.after_script())?;
    }
    let sandbox = target.sandbox.filter(|s| s.run_as().is_some());
    let conn = match sandbox {
        Some(sandbox) => sandbox.connection(ctx),
        None => ctx.connection.clone(),
    };
    let env = sandbox.map(Sandbox::env).unwrap_or_default();
    let before: Vec<String> = sandbox
        .and_then(Sandbox::run_as)
        .map(set_role_sql)
        .into_iter()
        .collect();
    let command = ToolCommand::from(psql_table_argv(
        &ctx.bin_dir,
        &conn,
        target.name,
        &before,
        &definition_sql,
        &indexes_sql,
    ))
    .with_env(env);
    Ok(RestoreStep::PsqlFromTool {
        command,
        source: pg_restore_entries_argv(&ctx.bin_dir, &path, &data_list, true).into(),
        skip_settings,
        copy_into: Some(CopyInto {
            schema: table.schema.clone(),
            name: table.name.clone(),
            into: table.into_qualified(),
        }),
    })
}
