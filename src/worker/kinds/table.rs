//! `restore_table()`'s restore step: one table's definition and rows from an archive, as a new
//! table (or into an existing empty one), in a single transaction run as the requester.
//!
//! pg_restore prints the script of the table's entries; `backup_core::table_definition`
//! rewrites it to create the new table, and the rows are streamed from a second pg_restore
//! through the filter that points their COPY at the new table. A plain script gives the same
//! entries from its header comments (`backup_core::read_script_entries`), and its rows are
//! streamed through the filter that keeps only the table's COPY. psql runs the definition, the
//! rows and then the indexes with ON_ERROR_STOP inside one transaction: a failure (the name
//! taken meanwhile, a row the CHECK refuses) leaves nothing behind.

use std::path::Path;

use backup_core::{
    act_as_owner_sql, data_only_check_sql, header_settings, list_archive, parse_toc,
    pg_restore_entries_argv, pg_restore_list_argv, plain_dump_reader, psql_table_argv,
    read_script_entries, set_role_sql, table_definition, table_entries, use_list_for, CopyInto,
    Format, RestoreStep, TableEntries, TableTarget, ToolCommand,
};

use super::restore::{RestoreTarget, Sandbox, LIST_TIMEOUT};
use super::{source, work_dir, Context};
use crate::catalog::{self, BackupRecord};

/// Writes `text` to `path`, failing the job's preparation when it cannot.
fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The table's entries among `entries`, which must hold its rows too.
fn find_table(
    backup: &BackupRecord,
    entries: &[backup_core::TocEntry],
    table: &TableTarget,
) -> Result<(TableEntries, i64), String> {
    let found = table_entries(entries, &table.schema, &table.name).ok_or_else(|| {
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
    Ok((found, data))
}

/// Writes the definition and index scripts made from `script` (the table's definition
/// entries) to `definition_sql` and `indexes_sql`; returns the header settings this server
/// does not know, which are left out.
fn write_definition(
    script: &str,
    table: &TableTarget,
    as_owner: &str,
    definition_sql: &Path,
    indexes_sql: &Path,
) -> Result<Vec<String>, String> {
    let skip_settings = header_settings(script.as_bytes())
        .map_err(|e| e.to_string())
        .and_then(|h| catalog::unknown_settings(&h).map_err(|e| e.to_string()))?;
    let (mut before, after) = if table.data_only {
        (data_only_check_sql(table), String::new())
    } else {
        let definition = table_definition(script, table, &skip_settings)?;
        (definition.before_script(), definition.after_script())
    };
    before += as_owner;
    write(definition_sql, &before)?;
    write(indexes_sql, &after)?;
    Ok(skip_settings)
}

/// For a superuser's restore, the statements that load the rows and build the indexes as the
/// table's owner (`act_as_owner_sql`): the role that owned it in the archive, when a role of
/// that name exists here. Empty for a restore that already runs as its (non-superuser)
/// requester.
fn as_owner(
    target: &RestoreTarget,
    table: &TableTarget,
    found: &TableEntries,
) -> Result<String, String> {
    if target.sandbox.and_then(Sandbox::run_as).is_some() {
        return Ok(String::new());
    }
    let owner = match found.owner.as_deref() {
        // Some(_) for any existing role, superuser or not.
        Some(owner) => catalog::role_is_superuser(owner)
            .map_err(|e| e.to_string())?
            .map(|_| owner),
        None => None,
    };
    Ok(act_as_owner_sql(table, owner))
}

/// psql running the definition, the rows on its stdin and the indexes in one transaction, as
/// the requester.
fn psql_command(
    target: &RestoreTarget,
    ctx: &Context,
    definition_sql: &Path,
    indexes_sql: &Path,
) -> ToolCommand {
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
    ToolCommand::from(psql_table_argv(
        &ctx.bin_dir,
        &conn,
        target.name,
        &before,
        definition_sql,
        indexes_sql,
    ))
    .with_env(env)
}

fn copy_into(table: &TableTarget) -> CopyInto {
    CopyInto {
        schema: table.schema.clone(),
        name: table.name.clone(),
        into: table.into_qualified(),
    }
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
    let (source, format) = source(backup)?;
    source
        .check_decryptable()
        .map_err(|e| format!("{e} ({})", e.hint()))?;
    let named = |ext: &str| files.with_extension(ext);
    let (definition_sql, indexes_sql) = (named("definition.sql"), named("indexes.sql"));
    if format == Format::Plain {
        // The script is read once for its entries and their statements (without the rows),
        // then streamed again through the filter that keeps only the table's rows.
        let compressed = backup.gzipped();
        let script = source
            .open()
            .map(|raw| plain_dump_reader(raw, compressed))
            .and_then(read_script_entries)
            .map_err(|e| format!("cannot read {}: {e}", source.describe()))?;
        let (found, _) = find_table(backup, &script.entries, table)?;
        let skip_settings = write_definition(
            &script.script_of(&found.definitions),
            table,
            &as_owner(target, table, &found)?,
            &definition_sql,
            &indexes_sql,
        )?;
        return Ok(RestoreStep::PsqlStdin {
            command: psql_command(target, ctx, &definition_sql, &indexes_sql),
            input: source,
            compressed,
            skip_settings,
            rows_of: Some(copy_into(table)),
        });
    }
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
    let (found, data) = find_table(backup, &entries, table)?;
    let (definition_list, data_list) = (named("definition.list"), named("data.list"));
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
    let skip_settings = write_definition(
        &script,
        table,
        &as_owner(target, table, &found)?,
        &definition_sql,
        &indexes_sql,
    )?;
    Ok(RestoreStep::PsqlFromTool {
        command: psql_command(target, ctx, &definition_sql, &indexes_sql),
        source: pg_restore_entries_argv(&ctx.bin_dir, &path, &data_list, true).into(),
        skip_settings,
        copy_into: Some(copy_into(table)),
    })
}
