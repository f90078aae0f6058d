//! `restore_plan()`: what `restore_backup()` with the same arguments would do, and what would
//! stop it, without a job and without changing anything. The facts about the target database
//! and this server are gathered here; the plan itself is `backup_core::build_plan`.

use std::collections::BTreeSet;
use std::path::Path;

use backup_core::{
    build_plan, estimate_restored_size, free_space, parse_toc, pg_restore_selected_list_argv,
    pg_restore_selected_schema_argv, script_grantees, use_list_for, use_list_to_write, Contents,
    Format, JobKind, PlanFacts, PlanRow, ServerFacts, SpaceFacts, TargetFacts, TocEntry, ToolFacts,
};
use pgrx::prelude::*;
use pgrx::JsonB;

use super::restore::{
    archive_format, call_work_dir, check_data_owners, check_restore_call, query_in_database,
    read_archive, read_contents, RestoreCall,
};
use crate::catalog;
use crate::error::{BackupError, OrReport};
use crate::settings;

/// The plan of a restore: one row per step, checks first (`tools`, `space`, `conflict`,
/// `missing role`, `missing extension`), then what runs in order (`create`, `drop` with
/// clean, `load data`, `replace data` with data_only, `run script` for a plain backup). A
/// row whose detail begins with `blocking: ` makes `restore_backup()` refuse the same call.
// The row type must be spelled out for the SQL generator.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn restore_plan(
    backup_id: i64,
    target_db: default!(Option<String>, "NULL"),
    create_db: default!(Option<bool>, "true"),
    jobs: default!(Option<i32>, "NULL"),
    options: default!(Option<JsonB>, "'{}'"),
) -> TableIterator<
    'static,
    (
        name!(step, i32),
        name!(action, String),
        name!(kind, Option<String>),
        name!(schema, Option<String>),
        name!(name, Option<String>),
        name!(detail, String),
    ),
> {
    let call = check_restore_call(backup_id, target_db, create_db, jobs, options);
    let rows = plan_rows(&call);
    TableIterator::new(
        rows.into_iter()
            .map(|r| (r.step, r.action, r.kind, r.schema, r.name, r.detail)),
    )
}

/// The plan of a checked call. Reads the archive's contents (checking, for a role that is
/// not a superuser, that it may read all of its data, as a restore does) unless the
/// configured tools cannot read the archive, which is then the plan's only blocking row.
pub(super) fn plan_rows(call: &RestoreCall) -> Vec<PlanRow> {
    let rec = &call.rec;
    let format = archive_format(rec);
    let is_script = rec.kind != Ok(JobKind::Database) || format == Format::Plain;
    let tools = tool_facts(call, is_script);
    let unreadable = matches!(
        (tools.archive_version, tools.reads_up_to),
        (Some(a), Some(r)) if a > r
    );
    let options = &call.request.options;
    let (entries, grantees) = if is_script {
        if rec.kind == Ok(JobKind::Database) {
            check_data_owners(rec, &call.source, None, &call.caller, "restore");
        }
        (Vec::new(), BTreeSet::new())
    } else if unreadable {
        (Vec::new(), BTreeSet::new())
    } else {
        selected_entries(call)
    };
    let target = call
        .target
        .as_deref()
        .map(|name| target_facts(call, name, &entries));
    let server = ServerFacts {
        roles: catalog::role_names().or_report(),
        available_extensions: catalog::available_extensions().or_report(),
    };
    let space = (rec.kind == Ok(JobKind::Database)).then(|| space_facts(call));
    let contents = if is_script {
        Contents::Script {
            globals: rec.kind != Ok(JobKind::Database),
        }
    } else {
        Contents::Archive(&entries)
    };
    build_plan(&PlanFacts {
        contents,
        options,
        target: target.as_ref(),
        requester: &call.caller.name,
        server: &server,
        grantees: &grantees,
        tools: &tools,
        space: space.as_ref(),
    })
}

/// The entries pg_restore selects for the request, in its order, and the roles the selected
/// privileges are granted to. The selection is pg_restore's own: `--list` with the restore's
/// options and the `--use-list` the worker would write.
fn selected_entries(call: &RestoreCall) -> (Vec<TocEntry>, BTreeSet<String>) {
    let rec = &call.rec;
    let request = &call.request;
    let (listing, all) = read_contents(rec, &call.source);
    if !request.options.toc_ids.is_empty() {
        use_list_for(&listing, &request.options.toc_ids).or_report();
    }
    check_data_owners(
        rec,
        &call.source,
        Some(all.as_slice()),
        &call.caller,
        "restore",
    );
    let use_list = use_list_to_write(&listing, &request.options.toc_ids, request.create_db)
        .or_report()
        .map(|list| ListFile::write(&list, rec.backup_id));
    let list_path = use_list.as_ref().map(|f| f.0.as_path());
    let bin_dir = settings::bin_dir();
    let selected = read_archive(rec, &call.source, "pg_restore --list", &|path| {
        pg_restore_selected_list_argv(&bin_dir, path, request, list_path)
    });
    let entries = parse_toc(&selected)
        .map_err(|e| BackupError::ToolFailed(format!("unexpected pg_restore --list output: {e}")))
        .or_report();
    let grants = !request.options.no_privileges
        && !request.options.data_only
        && entries
            .iter()
            .any(|e| e.kind == "ACL" || e.kind == "DEFAULT ACL");
    let grantees = if grants {
        let script = read_archive(rec, &call.source, "pg_restore --schema-only", &|path| {
            pg_restore_selected_schema_argv(&bin_dir, path, request, list_path)
        });
        script_grantees(&script)
    } else {
        BTreeSet::new()
    };
    (entries, grantees)
}

/// A `--use-list` file in the work directory, removed when dropped.
struct ListFile(std::path::PathBuf);

impl ListFile {
    fn write(list: &str, backup_id: i64) -> ListFile {
        let path = call_work_dir().join(format!("call-{}-{backup_id}.list", unsafe {
            pg_sys::MyProcPid
        }));
        std::fs::write(&path, list)
            .map_err(|e| BackupError::Internal(format!("cannot write {}: {e}", path.display())))
            .or_report();
        ListFile(path)
    }
}

impl Drop for ListFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn tool_facts(call: &RestoreCall, is_script: bool) -> ToolFacts {
    if is_script {
        return ToolFacts {
            tool: "psql".into(),
            major: crate::tools::tool_version(&settings::bin_dir(), "psql")
                .ok()
                .map(|(major, _)| major),
            archive_version: None,
            reads_up_to: None,
        };
    }
    let reads = crate::tools::restore_reads().ok();
    ToolFacts {
        tool: "pg_restore".into(),
        major: reads.map(|(major, _)| major),
        archive_version: call
            .source
            .archive_version(archive_format(&call.rec))
            .ok()
            .flatten(),
        reads_up_to: reads.map(|(_, up_to)| up_to),
    }
}

/// An existing target's owner, sessions and (when conflicts matter) objects.
fn target_facts(call: &RestoreCall, name: &str, entries: &[TocEntry]) -> TargetFacts {
    let create_db = call.request.create_db;
    let mut facts = TargetFacts {
        name: name.into(),
        create_db,
        ..TargetFacts::default()
    };
    if create_db {
        return facts;
    }
    let (owner, sessions) = catalog::target_sessions(name).or_report();
    facts.owner = owner;
    facts.active_connections = sessions;
    let options = &call.request.options;
    if !entries.is_empty() && !options.clean && !options.data_only {
        facts.existing = existing_objects(name);
    }
    facts
}

/// What exists in database `name`, read by psql (a backend sees only its own database).
fn existing_objects(name: &str) -> BTreeSet<(String, Option<String>, String)> {
    let out = query_in_database(name, catalog::TARGET_OBJECTS_QUERY, "the objects");
    serde_json::from_str::<Vec<(String, Option<String>, String)>>(out.trim())
        .map_err(|e| {
            BackupError::ToolFailed(format!(
                "unexpected list of the objects of database \"{name}\": {e}"
            ))
        })
        .or_report()
        .into_iter()
        .collect()
}

/// The restored size against the free space of the data directory's filesystem.
fn space_facts(call: &RestoreCall) -> SpaceFacts {
    let rec = &call.rec;
    let compressed = match archive_format(rec) {
        Format::Plain => rec.gzipped(),
        Format::Tar => false,
        // custom and directory archives are compressed unless asked not to be
        _ => !rec
            .compress
            .as_deref()
            .is_some_and(|c| c == "0" || c == "none"),
    };
    let source_size = catalog::source_size(rec.backup_id)
        .or_report()
        .and_then(|b| u64::try_from(b).ok());
    let (estimate, basis, firm) = estimate_restored_size(
        rec.size_bytes.unwrap_or(0).max(0) as u64,
        compressed,
        source_size,
    );
    let data_directory = catalog::data_directory().or_report();
    let free = free_space(Path::new(&data_directory))
        .map(|(free, _)| free)
        .map_err(|e| {
            BackupError::ToolFailed(format!(
                "cannot read the free space of {data_directory}: {e}"
            ))
        })
        .or_report();
    SpaceFacts {
        estimate,
        basis,
        free,
        // The path is a superuser's to know (like the setting itself).
        data_directory: if call.caller.superuser {
            data_directory
        } else {
            "the data directory".into()
        },
        firm,
    }
}
