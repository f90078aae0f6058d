//! What a schedule runs: the backup command, stored as JSON, and the
//! schedule's name.

use crate::dump::compress::DumpTool;
use crate::dump::options::json_type;
use crate::dump::options::DumpOptions;
use crate::dump::request::{DumpRequest, GlobalsRequest};
use crate::error::{quoted, RequestError};
use crate::restore::argv::validate_database_name;
use serde_json::{Map, Value};

/// Longest schedule name; the same as a PostgreSQL identifier.
pub const MAX_SCHEDULE_NAME_CHARS: usize = 63;
/// Longest label, the same limit as for backups requested directly.
pub const MAX_LABEL_CHARS: usize = 200;

pub fn validate_schedule_name(name: &str) -> Result<(), RequestError> {
    let chars = name.chars().count();
    if chars == 0 {
        return Err(RequestError::invalid(
            "schedule name is empty",
            format!("Give a name of 1 to {MAX_SCHEDULE_NAME_CHARS} characters, e.g. 'nightly'."),
        ));
    }
    if chars > MAX_SCHEDULE_NAME_CHARS {
        return Err(RequestError::invalid(
            format!("schedule name is {chars} characters long"),
            format!("Schedule names are at most {MAX_SCHEDULE_NAME_CHARS} characters."),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(RequestError::invalid(
            format!(
                "schedule name {} contains a control character",
                quoted(name)
            ),
            "Schedule names cannot contain control characters such as newlines or tabs.",
        ));
    }
    Ok(())
}

/// What a schedule runs, parsed strictly from its JSON form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleCommand {
    /// `{"backup": "database", "dbname": ..., "format": ..., "compress": ...,
    /// "jobs": n, "label": ..., "options": {...}}`
    Database {
        dbname: String,
        label: Option<String>,
        request: DumpRequest,
    },
    /// `{"backup": "globals", "label": ..., "no_role_passwords": bool}`
    Globals {
        label: Option<String>,
        request: GlobalsRequest,
    },
    /// `{"backup": "cluster", "format": ..., "label": ..., "options": {...}}`:
    /// every database with the same format and options, plus the globals.
    Cluster {
        label: Option<String>,
        request: DumpRequest,
    },
    /// `{"verify": "latest", "dbname": "app" | "*", "test_restore": bool}`: a restore drill,
    /// verifying the newest succeeded backup of one database or (`"*"`, `dbname` None) of each.
    Verify {
        dbname: Option<String>,
        test_restore: bool,
    },
}

const DATABASE_KEYS: [&str; 7] = [
    "backup", "dbname", "format", "compress", "jobs", "label", "options",
];
const GLOBALS_KEYS: [&str; 4] = ["backup", "label", "no_role_passwords", "options"];
const CLUSTER_KEYS: [&str; 4] = ["backup", "format", "label", "options"];
const VERIFY_KEYS: [&str; 3] = ["verify", "dbname", "test_restore"];
const KINDS_HINT: &str = "The \"backup\" key is one of: database, globals, cluster; or give \"verify\": \"latest\" for a restore drill.";
const VERIFY_EXAMPLE: &str =
    "{\"verify\": \"latest\", \"dbname\": \"app\", \"test_restore\": true}";
/// The format used when a command does not name one, as for backup_database().
const DEFAULT_FORMAT: &str = "custom";

/// An optional key: absent and JSON null both mean "use the default".
fn present<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|v| !v.is_null())
}

fn type_error(kind: &str, key: &str, expected: &str, got: &Value, example: &str) -> RequestError {
    RequestError::invalid(
        format!(
            "\"{key}\" in a {kind} schedule command must be {expected}, got {}",
            json_type(got)
        ),
        format!("For example {example}."),
    )
}

fn opt_text<'a>(
    map: &'a Map<String, Value>,
    kind: &str,
    key: &str,
    example: &str,
) -> Result<Option<&'a str>, RequestError> {
    match present(map, key) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .map(Some)
            .ok_or_else(|| type_error(kind, key, "text", v, example)),
    }
}

fn label(map: &Map<String, Value>, kind: &str) -> Result<Option<String>, RequestError> {
    let label = opt_text(map, kind, "label", "{\"label\": \"nightly\"}")?;
    if let Some(l) = label {
        let n = l.chars().count();
        if n > MAX_LABEL_CHARS {
            return Err(RequestError::invalid(
                format!("label is {n} characters long"),
                format!("Labels are at most {MAX_LABEL_CHARS} characters."),
            ));
        }
    }
    Ok(label.map(str::to_string))
}

/// `options.include_databases` / `options.exclude_databases`: arrays of database names.
fn database_list(key: &str, v: &Value) -> Result<(), RequestError> {
    let example = format!("For example {{\"{key}\": [\"app\", \"reports\"]}}.");
    let items = v.as_array().ok_or_else(|| {
        RequestError::invalid(
            format!(
                "options.{key} must be an array of database names, got {}",
                json_type(v)
            ),
            example.clone(),
        )
    })?;
    for item in items {
        let name = item.as_str().ok_or_else(|| {
            RequestError::invalid(
                format!(
                    "options.{key} must be an array of database names, but has a {}",
                    json_type(item)
                ),
                example.clone(),
            )
        })?;
        validate_database_name(name)?;
    }
    Ok(())
}

/// The pg_dump part of a command's options, after checking its run options by the rules of
/// backup_database() and backup_cluster(): `timeout` is text (whether it is an interval
/// takes a cast, done by schedule() on the SQL side), and only a cluster backup chooses
/// databases. A schedule that every run would refuse is refused when it is created.
fn options(map: &Map<String, Value>, kind: &str) -> Result<Value, RequestError> {
    let all = present(map, "options")
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));
    let (dump, run) = crate::dump::request::split_run_options(&all);
    for (key, v) in &run {
        match key.as_str() {
            "timeout" if !v.is_string() => {
                return Err(RequestError::invalid(
                    format!(
                        "options.timeout must be an interval given as text, got {}",
                        json_type(v)
                    ),
                    "For example {\"timeout\": \"2 hours\"}.",
                ))
            }
            "timeout" => {}
            "storage" if !v.is_string() => {
                return Err(RequestError::invalid(
                    format!(
                        "options.storage must be the name of a storage target, got {}",
                        json_type(v)
                    ),
                    "For example {\"storage\": \"offsite\"}.",
                ))
            }
            "storage" => {}
            _ if kind != "cluster" => {
                return Err(RequestError::invalid(
                    format!("option {} only applies to cluster backups", quoted(key)),
                    format!(
                        "A {kind} schedule command takes the pg_dump options plus \"timeout\" and \"storage\"."
                    ),
                ))
            }
            _ => database_list(key, v)?,
        }
    }
    Ok(dump)
}

fn dbname(map: &Map<String, Value>) -> Result<String, RequestError> {
    let example = "{\"backup\": \"database\", \"dbname\": \"app\"}";
    let name = opt_text(map, "database", "dbname", example)?.ok_or_else(|| {
        RequestError::invalid(
            "a database schedule command needs \"dbname\"",
            format!("For example {example}."),
        )
    })?;
    validate_database_name(name)?;
    Ok(name.to_string())
}

fn jobs(map: &Map<String, Value>) -> Result<Option<i32>, RequestError> {
    let Some(v) = present(map, "jobs") else {
        return Ok(None);
    };
    let example = "{\"jobs\": 4}";
    let n = v
        .as_i64()
        .ok_or_else(|| type_error("database", "jobs", "a whole number", v, example))?;
    // Out-of-range values are reported by DumpRequest::validate; anything
    // beyond i32 is out of that range too.
    Ok(Some(i32::try_from(n).unwrap_or(if n < 0 {
        i32::MIN
    } else {
        i32::MAX
    })))
}

fn check_keys(map: &Map<String, Value>, kind: &str, allowed: &[&str]) -> Result<(), RequestError> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => Err(RequestError::invalid(
            format!("unknown key {} in a {kind} schedule command", quoted(k)),
            format!("Keys for backup = {kind}: {}.", allowed.join(", ")),
        )),
    }
}

impl ScheduleCommand {
    /// Parses a command as pg_dump 15 understands it. A compression
    /// method other than a gzip level needs [`ScheduleCommand::from_value_for_tool`]
    /// with what the installed pg_dump accepts.
    pub fn from_value(value: &Value) -> Result<ScheduleCommand, RequestError> {
        ScheduleCommand::from_value_for_tool(value, DumpTool::by_version(15))
    }

    pub fn from_value_for_tool(
        value: &Value,
        tool: DumpTool,
    ) -> Result<ScheduleCommand, RequestError> {
        let map = value.as_object().ok_or_else(|| {
            RequestError::invalid(
                format!(
                    "schedule command must be a JSON object, got {}",
                    json_type(value)
                ),
                format!(
                    "For example {{\"backup\": \"database\", \"dbname\": \"app\"}}. {KINDS_HINT}"
                ),
            )
        })?;
        if map.contains_key("verify") {
            return verify_command(map);
        }
        let kind = match map.get("backup") {
            None => {
                return Err(RequestError::invalid(
                    "schedule command has no \"backup\" key",
                    KINDS_HINT,
                ))
            }
            Some(Value::String(s)) => s.as_str(),
            Some(other) => {
                return Err(RequestError::invalid(
                    format!(
                        "\"backup\" in a schedule command must be text, got {}",
                        json_type(other)
                    ),
                    KINDS_HINT,
                ))
            }
        };
        match kind {
            "database" => {
                check_keys(map, kind, &DATABASE_KEYS)?;
                let dbname = dbname(map)?;
                let format = opt_text(map, kind, "format", "{\"format\": \"custom\"}")?
                    .unwrap_or(DEFAULT_FORMAT);
                let compress = opt_text(map, kind, "compress", "{\"compress\": \"6\"}")?;
                let jobs = jobs(map)?;
                let request =
                    DumpRequest::validate(format, compress, jobs, &options(map, kind)?, tool)?;
                Ok(ScheduleCommand::Database {
                    dbname,
                    label: label(map, kind)?,
                    request,
                })
            }
            "globals" => {
                check_keys(map, kind, &GLOBALS_KEYS)?;
                let no_role_passwords = match present(map, "no_role_passwords") {
                    None => false,
                    Some(v) => v.as_bool().ok_or_else(|| {
                        type_error(
                            kind,
                            "no_role_passwords",
                            "a boolean",
                            v,
                            "{\"no_role_passwords\": true}",
                        )
                    })?,
                };
                let dump = options(map, kind)?;
                if let Some(key) = dump.as_object().and_then(|m| m.keys().next()) {
                    return Err(RequestError::invalid(
                        format!("option {} does not apply to globals backups", quoted(key)),
                        "A globals schedule command takes the options \"timeout\" and \"storage\".",
                    ));
                }
                Ok(ScheduleCommand::Globals {
                    label: label(map, kind)?,
                    request: GlobalsRequest { no_role_passwords },
                })
            }
            "cluster" => {
                check_keys(map, kind, &CLUSTER_KEYS)?;
                let format = opt_text(map, kind, "format", "{\"format\": \"custom\"}")?
                    .unwrap_or(DEFAULT_FORMAT);
                let request =
                    DumpRequest::validate(format, None, None, &options(map, kind)?, tool)?;
                Ok(ScheduleCommand::Cluster {
                    label: label(map, kind)?,
                    request,
                })
            }
            other => Err(RequestError::invalid(
                format!(
                    "unknown backup kind {} in a schedule command",
                    quoted(other)
                ),
                KINDS_HINT,
            )),
        }
    }

    /// "database", "globals", "cluster" or "verify".
    pub fn kind(&self) -> &'static str {
        match self {
            ScheduleCommand::Database { .. } => "database",
            ScheduleCommand::Globals { .. } => "globals",
            ScheduleCommand::Cluster { .. } => "cluster",
            ScheduleCommand::Verify { .. } => "verify",
        }
    }

    pub fn label(&self) -> Option<&str> {
        match self {
            ScheduleCommand::Database { label, .. }
            | ScheduleCommand::Globals { label, .. }
            | ScheduleCommand::Cluster { label, .. } => label.as_deref(),
            ScheduleCommand::Verify { .. } => None,
        }
    }

    /// The stored form, in the same shape as the input so that it is read
    /// back through the same strict parser.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        if let ScheduleCommand::Verify {
            dbname,
            test_restore,
        } = self
        {
            map.insert("verify".into(), Value::from("latest"));
            map.insert(
                "dbname".into(),
                Value::from(dbname.as_deref().unwrap_or("*")),
            );
            map.insert("test_restore".into(), Value::Bool(*test_restore));
            return Value::Object(map);
        }
        map.insert("backup".into(), Value::from(self.kind()));
        if let Some(l) = self.label() {
            map.insert("label".into(), Value::from(l));
        }
        match self {
            ScheduleCommand::Database {
                dbname, request, ..
            } => {
                map.insert("dbname".into(), Value::from(dbname.as_str()));
                insert_request(&mut map, request);
                if let Some(c) = &request.compress {
                    map.insert("compress".into(), Value::from(c.spec.as_str()));
                }
                if let Some(j) = request.jobs {
                    map.insert("jobs".into(), Value::from(j));
                }
            }
            ScheduleCommand::Globals { request, .. } => {
                map.insert(
                    "no_role_passwords".into(),
                    Value::Bool(request.no_role_passwords),
                );
            }
            ScheduleCommand::Cluster { request, .. } => insert_request(&mut map, request),
            ScheduleCommand::Verify { .. } => {}
        }
        Value::Object(map)
    }
}

/// `{"verify": "latest", "dbname": ..., "test_restore": ...}`.
fn verify_command(map: &Map<String, Value>) -> Result<ScheduleCommand, RequestError> {
    if map.contains_key("backup") {
        return Err(RequestError::invalid(
            "a schedule command has either \"backup\" or \"verify\", not both",
            format!("A restore drill is for example {VERIFY_EXAMPLE}."),
        ));
    }
    if let Some(k) = map.keys().find(|k| !VERIFY_KEYS.contains(&k.as_str())) {
        return Err(RequestError::invalid(
            format!("unknown key {} in a verify schedule command", quoted(k)),
            format!("Keys of a restore drill: {}.", VERIFY_KEYS.join(", ")),
        ));
    }
    let verify = map.get("verify").unwrap_or(&Value::Null);
    if verify.as_str() != Some("latest") {
        return Err(RequestError::invalid(
            format!(
                "\"verify\" in a schedule command must be \"latest\", got {}",
                match verify.as_str() {
                    Some(s) => quoted(s),
                    None => json_type(verify).to_string(),
                }
            ),
            format!("A restore drill verifies the newest backup: {VERIFY_EXAMPLE}."),
        ));
    }
    let name = opt_text(map, "verify", "dbname", VERIFY_EXAMPLE)?.ok_or_else(|| {
        RequestError::invalid(
            "a verify schedule command needs \"dbname\" (a database, or \"*\" for every one)",
            format!("For example {VERIFY_EXAMPLE}."),
        )
    })?;
    let dbname = if name == "*" {
        None
    } else {
        validate_database_name(name)?;
        Some(name.to_string())
    };
    let test_restore = match present(map, "test_restore") {
        None => false,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| type_error("verify", "test_restore", "a boolean", v, VERIFY_EXAMPLE))?,
    };
    Ok(ScheduleCommand::Verify {
        dbname,
        test_restore,
    })
}

fn insert_request(map: &mut Map<String, Value>, request: &DumpRequest) {
    map.insert("format".into(), Value::from(request.format.as_str()));
    if request.options != DumpOptions::default() {
        map.insert("options".into(), request.options.to_json());
    }
}

#[cfg(test)]
mod tests;
