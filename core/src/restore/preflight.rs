//! Restore preflight: what a restore would do, in order, and what would stop it. Built from
//! the archive's table of contents as pg_restore selects it for the request (`pg_restore
//! --list` with the restore's own selection options) and from facts about the target database
//! and this server, which the caller gathers. `restore_plan()` returns these rows and
//! `restore_backup()` refuses a request whose plan has a blocking row.

use std::collections::{BTreeMap, BTreeSet};

use crate::files::free_space::human;
use crate::process::capabilities::ArchiveVersion;
use crate::restore::request::RestoreOptions;
use crate::restore::toc::TocEntry;

/// How a blocking row's detail begins; nothing else starts with it.
pub const BLOCKING_PREFIX: &str = "blocking: ";

/// Why a restore would certainly fail: each maps to the SQLSTATE `restore_backup()` refuses
/// the request with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocker {
    /// A table, view, sequence or index of that name exists in the target (42P07).
    DuplicateRelation,
    /// Another object of that name exists in the target (42710).
    DuplicateObject,
    /// An owner or grantee the archive names is not a role of this server (42704).
    MissingRole,
    /// The archive creates an extension this server does not have (0A000).
    MissingExtension,
    /// The restored database would not fit on the data directory's filesystem (53100).
    Space,
    /// The configured tool cannot read the archive (0A000).
    Tools,
}

impl Blocker {
    pub fn sqlstate(self) -> &'static str {
        match self {
            Blocker::DuplicateRelation => "42P07",
            Blocker::DuplicateObject => "42710",
            Blocker::MissingRole => "42704",
            Blocker::MissingExtension | Blocker::Tools => "0A000",
            Blocker::Space => "53100",
        }
    }

    pub fn hint(self) -> &'static str {
        match self {
            Blocker::DuplicateRelation | Blocker::DuplicateObject => {
                "Restore into a new database (create_db => true), drop the objects first, or \
                 pass options {\"clean\": true} to drop and recreate them; \
                 backup_ext.restore_plan() lists every conflict."
            }
            Blocker::MissingRole => {
                "Restore the cluster's globals backup first, or pass options \
                 {\"no_owner\": true, \"no_privileges\": true}; backup_ext.restore_plan() \
                 lists every missing role."
            }
            Blocker::MissingExtension => {
                "Install the extension's package on this server, or leave the extension out \
                 with options tables, schemas or toc_ids; backup_ext.restore_plan() lists \
                 every missing extension."
            }
            Blocker::Space => {
                "Free space on the data directory's filesystem, or restore only part of the \
                 backup (options tables, schemas or toc_ids)."
            }
            Blocker::Tools => {
                "Set backup_ext.bin_dir to a directory with tools as new as the ones that \
                 wrote the backup."
            }
        }
    }
}

/// One row of a plan, as `restore_plan()` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRow {
    pub step: i32,
    pub action: String,
    pub kind: Option<String>,
    pub schema: Option<String>,
    pub name: Option<String>,
    /// Begins with [`BLOCKING_PREFIX`] when the row blocks the restore.
    pub detail: String,
    pub blocker: Option<Blocker>,
}

impl PlanRow {
    fn new(action: &str, kind: Option<&str>, schema: Option<&str>, name: Option<&str>) -> PlanRow {
        PlanRow {
            step: 0,
            action: action.into(),
            kind: kind.map(Into::into),
            schema: schema.map(Into::into),
            name: name.map(Into::into),
            detail: String::new(),
            blocker: None,
        }
    }

    fn detail(mut self, detail: impl Into<String>) -> PlanRow {
        self.detail = detail.into();
        self
    }

    fn blocking(mut self, blocker: Blocker, detail: impl AsRef<str>) -> PlanRow {
        self.detail = format!("{BLOCKING_PREFIX}{}", detail.as_ref());
        self.blocker = Some(blocker);
        self
    }

    /// The row as one line, for the DETAIL of a refused restore:
    /// `step 3: conflict TABLE public.t: blocking: ...`.
    pub fn describe(&self) -> String {
        let mut what = self.action.clone();
        if let Some(kind) = &self.kind {
            what.push(' ');
            what.push_str(kind);
        }
        if let Some(name) = &self.name {
            what.push(' ');
            if let Some(schema) = &self.schema {
                what.push_str(schema);
                what.push('.');
            }
            what.push_str(name);
        }
        format!("step {}: {what}: {}", self.step, self.detail)
    }
}

/// The first row that blocks the restore.
pub fn first_blocking(rows: &[PlanRow]) -> Option<&PlanRow> {
    rows.iter().find(|r| r.blocker.is_some())
}

/// What is restored.
#[derive(Debug, Clone, Copy)]
pub enum Contents<'a> {
    /// The entries pg_restore selects for the request, in the archive's order.
    Archive(&'a [TocEntry]),
    /// A plain script (`globals`: a pg_dumpall globals script), run whole by psql.
    Script { globals: bool },
}

/// An object that exists in the target database: its class (see [`object_class`]), schema
/// and name as pg_restore's listing prints them.
pub type ExistingObject = (String, Option<String>, String);

/// The database restored into.
#[derive(Debug, Clone, Default)]
pub struct TargetFacts {
    pub name: String,
    /// A new database is created for the restore.
    pub create_db: bool,
    /// The existing target's owner.
    pub owner: Option<String>,
    /// Other sessions connected to the existing target.
    pub active_connections: i64,
    /// What exists in the existing target (empty for a new one).
    pub existing: BTreeSet<ExistingObject>,
}

/// The tool that would run and what it reads.
#[derive(Debug, Clone)]
pub struct ToolFacts {
    /// `pg_restore` or `psql`.
    pub tool: String,
    /// Its major version, when it could be asked.
    pub major: Option<u32>,
    /// The archive's format version (None for a script or an unreadable header).
    pub archive_version: Option<ArchiveVersion>,
    /// The newest archive version the tool reads.
    pub reads_up_to: Option<ArchiveVersion>,
}

/// The restored size against the free space of the data directory's filesystem.
#[derive(Debug, Clone)]
pub struct SpaceFacts {
    pub estimate: u64,
    /// How the estimate was made.
    pub basis: String,
    pub free: u64,
    pub data_directory: String,
    /// The estimate is firm enough to block on (see [`estimate_restored_size`]).
    pub firm: bool,
}

/// What a restore needs to know about this server.
#[derive(Debug, Clone, Default)]
pub struct ServerFacts {
    pub roles: BTreeSet<String>,
    pub available_extensions: BTreeSet<String>,
}

/// Everything a plan is made from.
pub struct PlanFacts<'a> {
    pub contents: Contents<'a>,
    pub options: &'a RestoreOptions,
    /// None for a globals backup, replayed into the cluster.
    pub target: Option<&'a TargetFacts>,
    /// Who asks for the restore.
    pub requester: &'a str,
    pub server: &'a ServerFacts,
    /// Roles the archive's GRANT statements name (empty unless privileges are restored).
    pub grantees: &'a BTreeSet<String>,
    pub tools: &'a ToolFacts,
    pub space: Option<&'a SpaceFacts>,
}

/// The restored size: the source database's size when the backup recorded it, else the
/// backup's own size, times four when it is compressed (a rough ratio for table data). The
/// last element says whether the estimate is firm enough to refuse a restore on: a guessed
/// compression ratio is not.
pub fn estimate_restored_size(
    backup_bytes: u64,
    compressed: bool,
    source_database_bytes: Option<u64>,
) -> (u64, String, bool) {
    match source_database_bytes {
        Some(bytes) => (
            bytes,
            "the source database's size when it was backed up".into(),
            true,
        ),
        None if compressed => (
            backup_bytes.saturating_mul(4),
            "a guess: 4 times the compressed backup's size".into(),
            false,
        ),
        None => (backup_bytes, "the backup's size".into(), true),
    }
}

/// The class an entry's name is unique in, for finding conflicts; None for kinds whose
/// clashes are not predicted (constraints, comments, extensions created IF NOT EXISTS, ...).
pub fn object_class(kind: &str) -> Option<&'static str> {
    match kind {
        "SCHEMA" => Some("schema"),
        "TABLE" | "VIEW" | "MATERIALIZED VIEW" | "SEQUENCE" | "FOREIGN TABLE" | "INDEX" => {
            Some("relation")
        }
        "TYPE" | "DOMAIN" => Some("type"),
        "FUNCTION" | "PROCEDURE" | "AGGREGATE" => Some("function"),
        _ => None,
    }
}

/// Entry kinds that load rows or values rather than create definitions.
const DATA_KINDS: [&str; 5] = [
    "TABLE DATA",
    "SEQUENCE SET",
    "BLOBS",
    "LARGE OBJECTS",
    "MATERIALIZED VIEW DATA",
];

/// Entry kinds that set session state; not objects, left out of the plan.
const SETTING_KINDS: [&str; 3] = ["ENCODING", "STDSTRINGS", "SEARCHPATH"];

/// Entry kinds pg_restore --clean has no DROP for.
const NOT_DROPPED: [&str; 6] = [
    "ACL",
    "COMMENT",
    "DEFAULT ACL",
    "SECURITY LABEL",
    "DATABASE PROPERTIES",
    "SEQUENCE OWNED BY",
];

fn is_data(kind: &str) -> bool {
    DATA_KINDS.contains(&kind)
}

/// pg_restore's passes: privileges after everything else, then materialized view data and
/// event triggers (so that they run with the final privileges).
fn restore_pass(entry: &TocEntry) -> u8 {
    match entry.kind.as_str() {
        "ACL" | "DEFAULT ACL" => 1,
        "MATERIALIZED VIEW DATA" | "EVENT TRIGGER" => 2,
        "COMMENT" if entry.name.starts_with("EVENT TRIGGER ") => 2,
        _ => 0,
    }
}

/// The entries in the order pg_restore runs them (one process; a parallel restore runs
/// independent entries side by side in the same dependency order).
pub fn restore_order(entries: &[TocEntry]) -> Vec<&TocEntry> {
    let mut ordered: Vec<&TocEntry> = entries
        .iter()
        .filter(|e| !SETTING_KINDS.contains(&e.kind.as_str()))
        .collect();
    ordered.sort_by_key(|e| restore_pass(e));
    ordered
}

/// Roles named by the GRANT statements of a script (`GRANT ... TO role;`, also inside
/// `ALTER DEFAULT PRIVILEGES`); PUBLIC is not a role.
pub fn script_grantees(script: &str) -> BTreeSet<String> {
    let mut roles = BTreeSet::new();
    for line in script.lines() {
        let line = line.trim_end();
        let granting = line.starts_with("GRANT ") || line.starts_with("ALTER DEFAULT PRIVILEGES ");
        let Some(statement) = line.strip_suffix(';').filter(|_| granting) else {
            continue;
        };
        if !statement.contains("GRANT ") {
            continue;
        }
        let Some((_, grantee)) = statement.rsplit_once(" TO ") else {
            continue;
        };
        let grantee = grantee
            .split(" WITH GRANT OPTION")
            .next()
            .unwrap_or_default();
        let grantee = grantee.split(" GRANTED BY ").next().unwrap_or_default();
        if let Some(role) = unquote(grantee.trim()).filter(|r| r != "PUBLIC") {
            roles.insert(role);
        }
    }
    roles
}

/// An identifier as pg_dump prints it: quoted when it must be.
fn unquote(ident: &str) -> Option<String> {
    if ident.is_empty() {
        return None;
    }
    match ident
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    {
        Some(inner) => Some(inner.replace("\"\"", "\"")),
        None if ident.contains('"') || ident.contains(' ') => None,
        None => Some(ident.to_string()),
    }
}

fn qualified(entry: &TocEntry) -> String {
    match &entry.schema {
        Some(schema) => format!("{} {schema}.{}", entry.kind, entry.name),
        None => format!("{} {}", entry.kind, entry.name),
    }
}

fn entry_row(action: &str, entry: &TocEntry) -> PlanRow {
    PlanRow::new(
        action,
        Some(&entry.kind),
        entry.schema.as_deref(),
        Some(&entry.name),
    )
}

/// The plan: checks first (tools, space, conflicts, missing roles and extensions), then what
/// the restore does in order. Steps are numbered from 1.
pub fn build_plan(facts: &PlanFacts) -> Vec<PlanRow> {
    let mut rows = vec![tools_row(facts.tools)];
    if let Some(space) = facts.space {
        rows.push(space_row(space));
    }
    if let Some(target) = facts.target.filter(|t| !t.create_db) {
        rows.extend(target_rows(target, facts.requester));
    }
    let entries = match facts.contents {
        Contents::Archive(entries) => entries,
        Contents::Script { .. } => &[],
    };
    if let Some(target) = facts.target {
        rows.extend(conflict_rows(entries, target, facts.options));
    }
    rows.extend(missing_role_rows(entries, facts));
    rows.extend(missing_extension_rows(entries, facts.server));
    if let Some(target) = facts.target.filter(|t| t.create_db) {
        rows.push(
            PlanRow::new("create", Some("DATABASE"), None, Some(&target.name)).detail(
                "CREATE DATABASE ... TEMPLATE template0; dropped again if the restore fails",
            ),
        );
    }
    match facts.contents {
        Contents::Script { globals } => {
            let name = facts.target.map(|t| t.name.as_str());
            let detail = if globals {
                "psql runs the globals script as a whole: roles and tablespaces that exist already are reported and skipped"
            } else {
                "psql runs the script as a whole, stopping at the first error; its objects are not listed in advance"
            };
            rows.push(PlanRow::new("run script", Some("SCRIPT"), None, name).detail(detail));
        }
        Contents::Archive(entries) => {
            let ordered = restore_order(entries);
            if facts.options.clean {
                for entry in ordered.iter().rev() {
                    let kind = entry.kind.as_str();
                    if !is_data(kind) && !NOT_DROPPED.contains(&kind) {
                        rows.push(
                            entry_row("drop", entry).detail("DROP ... IF EXISTS (options.clean)"),
                        );
                    }
                }
            }
            for entry in ordered {
                rows.push(action_row(entry, facts.options));
            }
        }
    }
    for (i, row) in rows.iter_mut().enumerate() {
        row.step = i32::try_from(i + 1).unwrap_or(i32::MAX);
    }
    rows
}

fn action_row(entry: &TocEntry, options: &RestoreOptions) -> PlanRow {
    let owner = entry
        .owner
        .as_deref()
        .filter(|_| !options.no_owner)
        .map(|o| format!("; owner {o}"))
        .unwrap_or_default();
    let id = format!("toc_id {}", entry.toc_id);
    if is_data(&entry.kind) {
        if options.data_only {
            entry_row("replace data", entry).detail(format!(
                "{id}: rows loaded into the existing object (data_only: rows already there stay)"
            ))
        } else {
            entry_row("load data", entry).detail(id)
        }
    } else {
        entry_row("create", entry).detail(format!("{id}{owner}"))
    }
}

fn tools_row(tools: &ToolFacts) -> PlanRow {
    let version = tools.major.map(|m| format!(" {m}")).unwrap_or_default();
    let row = PlanRow::new("tools", Some(&tools.tool), None, None);
    match (tools.archive_version, tools.reads_up_to) {
        (Some(archive), Some(reads)) if archive > reads => row.blocking(
            Blocker::Tools,
            format!(
                "{}{version} reads archive versions up to {reads}; this archive is {archive} (written by {})",
                tools.tool,
                archive.readers()
            ),
        ),
        (Some(archive), Some(reads)) => row.detail(format!(
            "{}{version} reads this archive (version {archive}; it reads up to {reads})",
            tools.tool
        )),
        _ => row.detail(format!("{}{version} runs the restore", tools.tool)),
    }
}

fn space_row(space: &SpaceFacts) -> PlanRow {
    let row = PlanRow::new("space", None, None, None);
    let what = format!(
        "about {} after the restore ({}); {} free on the filesystem of {}",
        human(space.estimate),
        space.basis,
        human(space.free),
        space.data_directory
    );
    match (space.estimate > space.free, space.firm) {
        (true, true) => row.blocking(Blocker::Space, what),
        (true, false) => row.detail(format!("may not fit: {what}")),
        _ => row.detail(what),
    }
}

/// An existing target with other sessions in it, or owned by another role: worth knowing,
/// not a certain failure.
fn target_rows(target: &TargetFacts, requester: &str) -> Vec<PlanRow> {
    let mut rows = Vec::new();
    let db = || PlanRow::new("conflict", Some("DATABASE"), None, Some(&target.name));
    if target.active_connections > 0 {
        rows.push(db().detail(format!(
            "{} other session(s) connected to the target; the restore may wait for their locks \
             and they see its objects appear",
            target.active_connections
        )));
    }
    if let Some(owner) = target.owner.as_deref().filter(|o| *o != requester) {
        rows.push(db().detail(format!(
            "the target is owned by role \"{owner}\", not by \"{requester}\"; restored objects \
             keep the archive's owners"
        )));
    }
    rows
}

/// Objects the restore would create that already exist in the target.
fn conflict_rows(
    entries: &[TocEntry],
    target: &TargetFacts,
    options: &RestoreOptions,
) -> Vec<PlanRow> {
    if options.clean || options.data_only {
        return Vec::new();
    }
    entries
        .iter()
        .filter_map(|e| {
            let class = object_class(&e.kind)?;
            let key = (class.to_string(), e.schema.clone(), e.name.clone());
            target.existing.contains(&key).then(|| {
                let blocker = if class == "relation" {
                    Blocker::DuplicateRelation
                } else {
                    Blocker::DuplicateObject
                };
                entry_row("conflict", e).blocking(
                    blocker,
                    format!(
                        "{} already exists in database \"{}\" (toc_id {})",
                        qualified(e),
                        target.name,
                        e.toc_id
                    ),
                )
            })
        })
        .collect()
}

fn missing_role_rows(entries: &[TocEntry], facts: &PlanFacts) -> Vec<PlanRow> {
    // role -> (objects it owns, first of them)
    let mut owners: BTreeMap<&str, (usize, &TocEntry)> = BTreeMap::new();
    for e in entries {
        if let Some(owner) = e.owner.as_deref() {
            if !owner_is_a_role(e, owner, &facts.server.roles) {
                owners.entry(owner).or_insert((0, e)).0 += 1;
            }
        }
    }
    let mut rows = Vec::new();
    for (role, (count, first)) in owners {
        let what = format!(
            "role \"{role}\" owns {count} object(s) in the archive (first: {}) and does not exist on this server",
            qualified(first)
        );
        let row = PlanRow::new("missing role", Some("ROLE"), None, Some(role));
        rows.push(if facts.options.no_owner {
            row.detail(format!(
                "{what}; not needed: no_owner is set, so the objects are owned by the role restoring them"
            ))
        } else {
            row.blocking(
                Blocker::MissingRole,
                format!("{what}; restore the globals backup first, or restore with no_owner"),
            )
        });
    }
    for role in facts.grantees {
        if facts.server.roles.contains(role) {
            continue;
        }
        let what = format!(
            "role \"{role}\" is granted privileges in the archive and does not exist on this server"
        );
        let row = PlanRow::new("missing role", Some("ROLE"), None, Some(role));
        rows.push(if facts.options.no_privileges {
            row.detail(format!("{what}; not needed: no_privileges is set"))
        } else {
            row.blocking(
                Blocker::MissingRole,
                format!("{what}; restore the globals backup first, or restore with no_privileges"),
            )
        });
    }
    rows
}

/// Whether the owner of `e` is a role of this server. `pg_restore --list` does not quote names,
/// so the owner is read as the last word of the line: a role whose name has spaces in it
/// (`Ré Owner`) arrives as its last word (`Owner`) with the others at the end of the object's
/// name. Any such split that names an existing role counts as that role.
fn owner_is_a_role(e: &TocEntry, owner: &str, roles: &BTreeSet<String>) -> bool {
    if roles.contains(owner) {
        return true;
    }
    let mut candidate = owner.to_string();
    for word in e.name.rsplit(' ') {
        candidate = format!("{word} {candidate}");
        if roles.contains(&candidate) {
            return true;
        }
    }
    false
}

fn missing_extension_rows(entries: &[TocEntry], server: &ServerFacts) -> Vec<PlanRow> {
    entries
        .iter()
        .filter(|e| e.kind == "EXTENSION" && !server.available_extensions.contains(&e.name))
        .map(|e| {
            PlanRow::new("missing extension", Some("EXTENSION"), None, Some(&e.name)).blocking(
                Blocker::MissingExtension,
                format!(
                    "the archive creates extension \"{}\" (toc_id {}), which is not available on \
                     this server in any version (no {}.control in its extension directory)",
                    e.name, e.toc_id, e.name
                ),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests;
