//! A validated restore request: the `options jsonb` of the restore
//! functions and the rules that tie them to the backup's format.
//!
//! Parsing is as strict as for dumps: an unknown key is an error, because
//! a misspelled `tables` would silently restore everything.

use crate::dump::options::{boolean, json_type, text_list};
use crate::dump::request::MAX_JOBS;
use crate::error::{quoted, RequestError};
use crate::format::Format;
use crate::restore::table::TableTarget;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeSet;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreOptions {
    pub tables: Vec<String>,
    pub schemas: Vec<String>,
    pub exclude_schemas: Vec<String>,
    pub schema_only: bool,
    pub data_only: bool,
    pub no_owner: bool,
    pub no_privileges: bool,
    pub single_transaction: bool,
    pub clean: bool,
    /// Dump ids from `pg_restore --list`, deduplicated and sorted.
    pub toc_ids: Vec<i64>,
}

pub const RESTORE_OPTIONS_HINT: &str = "Option keys: tables, schemas, exclude_schemas (arrays of \
     text); schema_only, data_only, no_owner, no_privileges, single_transaction, clean \
     (booleans); toc_ids (array of positive integers).";

pub const PLAIN_RESTORE_HINT: &str = "A plain dump is replayed whole by psql; \
     tables/schemas/toc_ids need a custom, directory or tar backup.";

pub const PARALLEL_RESTORE_HINT: &str = "Parallel restore needs a custom or directory backup.";

fn toc_id_list(v: &Value) -> Result<Vec<i64>, RequestError> {
    let hint = "For example {\"toc_ids\": [215, 3359]}; see backup_ext.backup_contents(backup_id).";
    let items = v.as_array().ok_or_else(|| {
        RequestError::invalid(
            format!(
                "options.toc_ids must be an array of positive integers, got {}",
                json_type(v)
            ),
            hint,
        )
    })?;
    let mut ids = BTreeSet::new();
    for (i, item) in items.iter().enumerate() {
        match item.as_i64() {
            Some(id) if id > 0 => {
                ids.insert(id);
            }
            _ => {
                return Err(RequestError::invalid(
                    format!("options.toc_ids element {i} ({item}) is not a positive integer"),
                    hint,
                ))
            }
        }
    }
    Ok(ids.into_iter().collect())
}

impl RestoreOptions {
    pub fn from_value(value: &Value) -> Result<RestoreOptions, RequestError> {
        let map: &Map<String, Value> = value.as_object().ok_or_else(|| {
            RequestError::invalid(
                format!("options must be a JSON object, got {}", json_type(value)),
                format!("Pass '{{}}' for defaults. {RESTORE_OPTIONS_HINT}"),
            )
        })?;
        let mut o = RestoreOptions::default();
        for (key, v) in map {
            match key.as_str() {
                "tables" => o.tables = text_list(key, v)?,
                "schemas" => o.schemas = text_list(key, v)?,
                "exclude_schemas" => o.exclude_schemas = text_list(key, v)?,
                "schema_only" => o.schema_only = boolean(key, v)?,
                "data_only" => o.data_only = boolean(key, v)?,
                "no_owner" => o.no_owner = boolean(key, v)?,
                "no_privileges" => o.no_privileges = boolean(key, v)?,
                "single_transaction" => o.single_transaction = boolean(key, v)?,
                "clean" => o.clean = boolean(key, v)?,
                "toc_ids" => o.toc_ids = toc_id_list(v)?,
                other => {
                    return Err(RequestError::invalid(
                        format!("unknown restore option {}", quoted(other)),
                        RESTORE_OPTIONS_HINT,
                    ))
                }
            }
        }
        if o.schema_only && o.data_only {
            return Err(RequestError::invalid(
                "options.schema_only and options.data_only cannot both be true",
                "Set at most one of schema_only and data_only.",
            ));
        }
        Ok(o)
    }

    /// The options that are set and that only pg_restore can honour.
    fn archive_only_options(&self) -> Vec<&'static str> {
        let set = [
            ("tables", !self.tables.is_empty()),
            ("schemas", !self.schemas.is_empty()),
            ("exclude_schemas", !self.exclude_schemas.is_empty()),
            ("schema_only", self.schema_only),
            ("data_only", self.data_only),
            ("no_owner", self.no_owner),
            ("no_privileges", self.no_privileges),
            ("clean", self.clean),
            ("toc_ids", !self.toc_ids.is_empty()),
        ];
        set.iter()
            .filter(|(_, on)| *on)
            .map(|(key, _)| *key)
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    pub archive_format: Format,
    pub create_db: bool,
    pub jobs: Option<u32>,
    pub options: RestoreOptions,
    /// The storage target to read the backup from when it is not where the backup was
    /// written (a copy); chosen at call time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// Set for `restore_table()`: the one table restored, and where to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<TableTarget>,
}

impl RestoreRequest {
    /// `archive_format` is the format of the backup being restored;
    /// `is_globals` is true for a pg_dumpall globals backup (a plain script).
    pub fn validate(
        archive_format: Format,
        is_globals: bool,
        create_db: bool,
        jobs: Option<i32>,
        options: &Value,
    ) -> Result<RestoreRequest, RequestError> {
        let options = RestoreOptions::from_value(options)?;
        let plain = is_globals || archive_format == Format::Plain;
        if is_globals && create_db {
            return Err(RequestError::invalid(
                "create_db cannot be used when restoring a globals backup",
                "Roles and tablespaces are restored into the cluster, not into a database.",
            ));
        }
        let jobs = match jobs {
            None => None,
            Some(n) => {
                if plain || archive_format == Format::Tar {
                    let what = if is_globals {
                        "globals".to_string()
                    } else {
                        archive_format.to_string()
                    };
                    return Err(RequestError::invalid(
                        format!("jobs => {n} cannot be used with a {what} backup"),
                        PARALLEL_RESTORE_HINT,
                    ));
                }
                if !(1..=MAX_JOBS).contains(&n) {
                    return Err(RequestError::invalid(
                        format!("jobs => {n} is out of range"),
                        format!("Use a jobs value between 1 and {MAX_JOBS}."),
                    ));
                }
                u32::try_from(n).ok()
            }
        };
        if options.single_transaction && jobs.is_some_and(|j| j > 1) {
            return Err(RequestError::invalid(
                "options.single_transaction cannot be combined with jobs greater than 1",
                "Use jobs => 1 (or omit it) for a single-transaction restore.",
            ));
        }
        if plain {
            let extra = options.archive_only_options();
            if !extra.is_empty() {
                return Err(RequestError::unsupported(
                    format!(
                        "restore option(s) {} cannot be used with a {} backup",
                        extra.join(", "),
                        if is_globals { "globals" } else { "plain" }
                    ),
                    PLAIN_RESTORE_HINT,
                ));
            }
        }
        if options.clean && create_db {
            return Err(RequestError::invalid(
                "options.clean cannot be used with create_db => true",
                "The clean option drops objects in an existing database before recreating them; \
                 a newly created database is empty already.",
            ));
        }
        Ok(RestoreRequest {
            archive_format,
            create_db,
            jobs,
            options,
            storage: None,
            table: None,
        })
    }

    pub fn to_json(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(self)
    }

    /// Reads a request back from its job row through the same checks as
    /// [`RestoreRequest::validate`] (unknown keys, empty or NUL patterns, jobs, options that
    /// the format cannot honour), so that a row edited by hand cannot hand pg_restore what the
    /// API would refuse. Whether the backup is a globals one is not stored: the rules for a
    /// plain backup, which a globals backup is, apply.
    pub fn from_stored(value: &Value) -> Result<RestoreRequest, serde_json::Error> {
        let stored = RestoreRequest::deserialize(value)?;
        let jobs = stored.jobs.map(|j| i32::try_from(j).unwrap_or(i32::MAX));
        RestoreRequest::validate(
            stored.archive_format,
            false,
            stored.create_db,
            jobs,
            &serde_json::to_value(&stored.options)?,
        )
        .and_then(|request| {
            if let Some(table) = &stored.table {
                table.validate()?;
            }
            Ok(RestoreRequest {
                storage: stored.storage,
                table: stored.table,
                ..request
            })
        })
        .map_err(crate::dump::request::stored_error)
    }
}

/// The lines of `pg_restore --list` output to hand back through
/// `--use-list`: comment lines and the entries whose dump id is in `ids`.
pub fn use_list_for(listing: &str, ids: &[i64]) -> Result<String, RequestError> {
    let wanted: BTreeSet<i64> = ids.iter().copied().collect();
    let mut found = BTreeSet::new();
    let mut out = String::new();
    for line in listing.lines() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            continue;
        }
        if trimmed.starts_with(';') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let id = trimmed
            .split_once(';')
            .and_then(|(id, _)| id.trim().parse::<i64>().ok());
        if let Some(id) = id.filter(|id| wanted.contains(id)) {
            found.insert(id);
            out.push_str(line);
            out.push('\n');
        }
    }
    let missing: Vec<String> = wanted.difference(&found).map(|id| id.to_string()).collect();
    if !missing.is_empty() {
        return Err(RequestError::invalid(
            format!(
                "options.toc_ids {} not found in the backup",
                missing.join(", ")
            ),
            "See backup_ext.backup_contents(backup_id).",
        ));
    }
    Ok(out)
}

/// The `--use-list` a restore hands pg_restore, if any: the entries `toc_ids` names, and, for
/// a database just created from template0 (`fresh`), without the entry that creates schema
/// `public`, which it has already (see [`without_public_schema`]). The worker writes this
/// list for the restore and `restore_plan()` for its listing, so both select the same entries.
pub fn use_list_to_write(
    listing: &str,
    toc_ids: &[i64],
    fresh: bool,
) -> Result<Option<String>, RequestError> {
    let selected = if toc_ids.is_empty() {
        None
    } else {
        Some(use_list_for(listing, toc_ids)?)
    };
    let base = selected.as_deref().unwrap_or(listing);
    Ok(fresh
        .then(|| without_public_schema(base))
        .flatten()
        .or(selected))
}

/// Whether a `--list` line is the entry that creates schema `public`
/// (`<id>; <tableoid> <oid> SCHEMA - public <owner>`).
fn is_public_schema_entry(line: &str) -> bool {
    let Some((_, rest)) = line.trim_start().split_once(';') else {
        return false;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    matches!(fields.as_slice(), [_, _, "SCHEMA", "-", "public", ..])
}

/// A backup made with `schemas` naming `public` creates that schema, which a database made
/// from template0 already has ("schema \"public\" already exists"). Returns the use-list
/// to restore with that entry left out, or None when the archive has no such entry. The
/// entries for the schema's comment and privileges stay.
pub fn without_public_schema(listing: &str) -> Option<String> {
    let mut found = false;
    let mut out = String::with_capacity(listing.len() + 1);
    for line in listing.lines() {
        if is_public_schema_entry(line) && !line.trim_start().starts_with(';') {
            found = true;
            out.push(';');
        }
        out.push_str(line);
        out.push('\n');
    }
    found.then_some(out)
}

/// Bytes of a plain script read before deciding it does not create schema `public`: pg_dump
/// writes schemas before any table, so the statement is near the top when it is there at all.
const SCRIPT_HEAD_BYTES: u64 = 4 * 1024 * 1024;

/// Whether a plain script creates schema `public` (see [`without_public_schema`]); reads
/// only the head of the script, up to the first table or COPY.
pub fn script_creates_public_schema(script: impl std::io::Read) -> std::io::Result<bool> {
    use std::io::BufRead;
    let reader = std::io::BufReader::new(script.take(SCRIPT_HEAD_BYTES));
    for line in reader.lines() {
        let line = match line {
            Ok(line) => line,
            // Not text any more (or cut in the middle of a character): stop looking.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => return Ok(false),
            Err(e) => return Err(e),
        };
        if line == "CREATE SCHEMA public;" {
            return Ok(true);
        }
        if line.starts_with("CREATE TABLE ") || line.starts_with("COPY ") {
            return Ok(false);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests;
