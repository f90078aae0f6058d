//! Turning a validated request into job rows: database, globals and whole-cluster backups.
//! Used alike by the SQL functions (`api/backup.rs`) and the worker's scheduler; it checks the
//! request, not who asks (the SQL functions do that first).

use backup_core::{
    split_run_options, DumpRequest, DumpTool, GlobalsRequest, JobKind, RequestError,
};
use pgrx::prelude::*;
use serde_json::Value;

use crate::catalog::{self, NewBackup};
use crate::error::{BackupError, OrReport};
use crate::{tools, wake};

const MAX_LABEL_CHARS: usize = 200;
/// The oldest pg_dump this extension is built against; a bare `-Z` level means the same to all.
const BASE_TOOL_MAJOR: u32 = 15;

/// Where a request comes from, recorded on its job.
#[derive(Default, Clone, Copy)]
pub struct Origin<'a> {
    pub set_id: Option<i64>,
    pub schedule: Option<&'a str>,
    /// The role whose rights the job uses (the caller, or a schedule's creator).
    pub run_as: Option<&'a str>,
}

fn validate_label(label: Option<&str>) -> Result<(), BackupError> {
    match label {
        Some(l) if l.chars().count() > MAX_LABEL_CHARS => Err(RequestError::invalid(
            format!("label is {} characters long", l.chars().count()),
            format!("Labels are at most {MAX_LABEL_CHARS} characters."),
        )
        .into()),
        _ => Ok(()),
    }
}

/// The per-call `timeout` (an interval given as text) in seconds.
pub(crate) fn timeout_seconds(run: &serde_json::Map<String, Value>) -> Option<i32> {
    let timeout = run.get("timeout")?;
    let Some(text) = timeout.as_str() else {
        BackupError::Request(RequestError::invalid(
            "options.timeout must be an interval given as text",
            "For example {\"timeout\": \"2 hours\"}.",
        ))
        .report()
    };
    let seconds = crate::subxact::try_or_none(|| {
        Spi::get_one_with_args::<f64>(
            "SELECT extract(epoch FROM $1::interval)::float8",
            &[text.into()],
        )
    })
    .and_then(|r| r.ok().flatten())
    .unwrap_or_else(|| {
        BackupError::Request(RequestError::invalid(
            format!("options.timeout {text:?} is not an interval"),
            "For example {\"timeout\": \"2 hours\"} or {\"timeout\": \"90 min\"}.",
        ))
        .report()
    });
    if !(1.0..=i32::MAX as f64).contains(&seconds) {
        BackupError::Request(RequestError::invalid(
            format!("options.timeout {text:?} must be at least one second"),
            "Leave it out to use backup_ext.job_timeout.",
        ))
        .report();
    }
    Some(seconds as i32)
}

/// What the configured pg_dump accepts, probed only when `compress` names a method: a bare
/// gzip level means the same to every pg_dump.
fn dump_tool_for(compress: Option<&str>) -> DumpTool {
    match compress {
        Some(c) if !c.bytes().all(|b| b.is_ascii_digit()) => tools::dump_tool()
            .map_err(|e| {
                RequestError::unsupported(
                    format!("cannot tell which compression pg_dump supports: {e}"),
                    "Check backup_ext.bin_dir.",
                )
            })
            .or_report(),
        _ => DumpTool::by_version(BASE_TOOL_MAJOR),
    }
}

/// The storage target a backup goes to: `options.storage`, else `backup_ext.default_storage`.
/// It must exist now; a target dropped before the job starts fails the job.
pub(crate) fn storage_of(run: &serde_json::Map<String, Value>) -> String {
    let name = match run.get("storage") {
        None | Some(Value::Null) => crate::settings::default_storage(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => BackupError::Request(RequestError::invalid(
            "options.storage must be the name of a storage target",
            "For example {\"storage\": \"offsite\"}; see SELECT name FROM backup_ext.storages;",
        ))
        .report(),
    };
    if name != catalog::LOCAL_STORAGE && catalog::storage_target(&name).or_report().is_none() {
        BackupError::NoSuchStorage {
            name,
            known: catalog::storage_names().or_report(),
        }
        .report();
    }
    name
}

/// Refuses run options other than `allowed` (pg_dump's own options are checked elsewhere).
fn only_run_options(run: &serde_json::Map<String, Value>, allowed: &[&str], what: &str) {
    if let Some(key) = run.keys().find(|k| !allowed.contains(&k.as_str())) {
        BackupError::Request(RequestError::invalid(
            format!("option {key:?} only applies to backup_cluster()"),
            format!("{what} takes {}.", allowed.join(", ")),
        ))
        .report();
    }
}

pub fn check_database(dbname: &str) {
    match catalog::database_allows_connections(dbname).or_report() {
        None => BackupError::NoSuchDatabase(dbname.into()).report(),
        Some(false) => BackupError::DatabaseNotConnectable(dbname.into()).report(),
        Some(true) => {}
    }
}

/// Validates and enqueues one database dump; raises on a bad request.
pub fn enqueue_database(
    dbname: &str,
    format: &str,
    compress: Option<&str>,
    jobs: Option<i32>,
    label: Option<&str>,
    options: Value,
    origin: Origin,
) -> i64 {
    validate_label(label).or_report();
    let (options, run) = split_run_options(&options);
    only_run_options(
        &run,
        &["timeout", "storage"],
        "backup_database() takes the pg_dump options plus \"timeout\" and \"storage\"",
    );
    let timeout_seconds = timeout_seconds(&run);
    let storage = storage_of(&run);
    let request = DumpRequest::validate(format, compress, jobs, &options, dump_tool_for(compress))
        .or_report();
    check_database(dbname);
    let compress_spec = request.compress.as_ref().map(|c| c.spec.clone());
    let job_id = catalog::enqueue_backup(&NewBackup {
        kind: JobKind::Database,
        database: Some(dbname),
        format: request.format.as_str(),
        compress: compress_spec.as_deref(),
        label,
        request: request.to_json().unwrap_or_default(),
        set_id: origin.set_id,
        schedule: origin.schedule,
        run_as: origin.run_as,
        timeout_seconds,
        storage: &storage,
    })
    .or_report();
    wake::wake_worker_on_commit();
    job_id
}

/// Enqueues `pg_dumpall --globals-only`; `options` may hold `timeout` and `storage`.
pub fn enqueue_globals(
    label: Option<&str>,
    no_role_passwords: bool,
    options: Value,
    origin: Origin,
) -> i64 {
    validate_label(label).or_report();
    let (dump, run) = split_run_options(&options);
    if !dump.is_object() {
        BackupError::Request(RequestError::invalid(
            "options must be a JSON object",
            "For example {\"storage\": \"offsite\"}.",
        ))
        .report();
    }
    if let Some(key) = dump.as_object().and_then(|m| m.keys().next()) {
        BackupError::Request(RequestError::invalid(
            format!("option {key:?} does not apply to globals backups"),
            "backup_globals() takes the options \"timeout\" and \"storage\".",
        ))
        .report();
    }
    only_run_options(
        &run,
        &["timeout", "storage"],
        "backup_globals() takes \"timeout\" and \"storage\"",
    );
    let timeout_seconds = timeout_seconds(&run);
    let storage = storage_of(&run);
    let request = GlobalsRequest { no_role_passwords };
    let job_id = catalog::enqueue_backup(&NewBackup {
        kind: JobKind::Globals,
        database: None,
        format: "plain",
        compress: None,
        label,
        request: request.to_json().unwrap_or_default(),
        set_id: origin.set_id,
        schedule: origin.schedule,
        run_as: origin.run_as,
        timeout_seconds,
        storage: &storage,
    })
    .or_report();
    wake::wake_worker_on_commit();
    job_id
}

fn text_array(run: &serde_json::Map<String, Value>, key: &str) -> Vec<String> {
    match run.get(key) {
        None => Vec::new(),
        Some(Value::Array(items)) if items.iter().all(|i| i.is_string()) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        Some(_) => BackupError::Request(RequestError::invalid(
            format!("options.{key} must be an array of database names"),
            format!("For example {{\"{key}\": [\"app\", \"reports\"]}}."),
        ))
        .report(),
    }
}

/// Enqueues globals plus one dump per connectable, non-template database as one set. The
/// options are pg_dump's (applied to every database) plus include_databases,
/// exclude_databases and timeout.
pub fn enqueue_cluster(format: &str, label: Option<&str>, options: Value, origin: Origin) -> i64 {
    validate_label(label).or_report();
    let (dump_options, run) = split_run_options(&options);
    // Validate the shared part once, before anything is written.
    DumpRequest::validate(
        format,
        None,
        None,
        &dump_options,
        DumpTool::by_version(BASE_TOOL_MAJOR),
    )
    .or_report();
    timeout_seconds(&run);
    storage_of(&run);
    let include = text_array(&run, "include_databases");
    let exclude = text_array(&run, "exclude_databases");
    for name in include.iter().chain(&exclude) {
        if catalog::database_allows_connections(name)
            .or_report()
            .is_none()
        {
            BackupError::NoSuchDatabase(name.clone()).report();
        }
    }
    // Each member gets the run options that apply to one backup.
    let mut per_db = dump_options;
    let mut member_run = serde_json::Map::new();
    for key in ["timeout", "storage"] {
        if let Some(v) = run.get(key) {
            member_run.insert(key.into(), v.clone());
        }
    }
    if let Some(map) = per_db.as_object_mut() {
        map.extend(member_run.clone());
    }

    let set_id = catalog::create_set(format, label, &options).or_report();
    let origin = Origin {
        set_id: Some(set_id),
        ..origin
    };
    enqueue_globals(label, false, Value::Object(member_run), origin);
    for dbname in catalog::dumpable_databases().or_report() {
        let included = include.is_empty() || include.contains(&dbname);
        if included && !exclude.contains(&dbname) {
            enqueue_database(&dbname, format, None, None, label, per_db.clone(), origin);
        }
    }
    set_id
}

/// A restore drill: a verify job for the newest succeeded backup of `dbname`, or of every
/// database that has one and of the globals (`None`; roles cannot be restored into a scratch
/// database, so the globals backup is verified by its checksum). Returns the first job's id;
/// raises when there is nothing to verify.
pub fn enqueue_drill(dbname: Option<&str>, test_restore: bool, origin: Origin) -> i64 {
    let newest = catalog::newest_backups(dbname).or_report();
    if newest.is_empty() {
        BackupError::NothingToVerify(dbname.map(str::to_string)).report();
    }
    let mut first = None;
    for (backup_id, database) in &newest {
        let job_id = catalog::enqueue_job(&catalog::NewJob {
            kind: JobKind::Verify,
            database: database.as_deref(),
            run_as: origin.run_as.unwrap_or_default(),
            backup_id: *backup_id,
            request: serde_json::json!({ "test_restore": test_restore && database.is_some() }),
            timeout_seconds: None,
        })
        .or_report();
        if let Some(schedule) = origin.schedule {
            catalog::set_job_schedule(job_id, schedule).or_report();
        }
        first.get_or_insert(job_id);
    }
    wake::wake_worker_on_commit();
    first.unwrap_or_default()
}
