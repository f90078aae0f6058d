//! Built-in schedules: a standard 5-field cron expression, evaluated in UTC,
//! and the backup command it runs, stored as JSON.
//!
//! Only standard (Vixie/POSIX) cron syntax is accepted. Extensions that some
//! schedulers add (a seconds or year field, `L`, `W`, `#`, `?`, `+`) are
//! refused rather than interpreted, so an expression copied from a Quartz or
//! systemd configuration fails loudly instead of running at unexpected times.
//! As in Vixie cron, when both day-of-month and day-of-week are restricted
//! (neither is `*`), a day matching either one matches.

use crate::dump::options::json_type;
use crate::dump::options::DumpOptions;
use crate::dump::request::{DumpRequest, GlobalsRequest};
use crate::error::{quoted, RequestError};
use crate::restore::argv::validate_database_name;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde_json::{Map, Value};

pub const CRON_HINT: &str = "Use 5 fields, minute hour day-of-month month day-of-week, in UTC: \
     e.g. '30 2 * * *' runs daily at 02:30; fields take *, lists (1,15), ranges (1-5), steps \
     (*/15, 0-30/10) and names (JAN-DEC, SUN-SAT); @hourly, @daily, @weekly, @monthly and \
     @yearly also work.";

const FIELD_NAMES: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];
const MONTH_NAMES: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// A parsed cron expression. All times are UTC.
#[derive(Clone)]
pub struct CronSchedule {
    expr: String,
    cron: Cron,
}

impl std::fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CronSchedule").field(&self.expr).finish()
    }
}

fn alias(expr: &str) -> Result<&'static str, RequestError> {
    match expr.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => Ok("0 0 1 1 *"),
        "@monthly" => Ok("0 0 1 * *"),
        "@weekly" => Ok("0 0 * * 0"),
        "@daily" | "@midnight" => Ok("0 0 * * *"),
        "@hourly" => Ok("0 * * * *"),
        "@reboot" => Err(RequestError::unsupported(
            "schedule \"@reboot\" is not supported",
            "Schedules run at clock times; use e.g. '@daily' or '30 2 * * *'.",
        )),
        _ => Err(RequestError::invalid(
            format!("unknown schedule shorthand {}", quoted(expr)),
            CRON_HINT,
        )),
    }
}

/// Whether `part` of a list has the standard shape: `*`, `V` or `V-V`,
/// optionally followed by `/N`, where V is a number or a name.
fn well_formed(part: &str) -> bool {
    let is_value = |v: &str| {
        !v.is_empty()
            && (v.bytes().all(|b| b.is_ascii_digit()) || v.bytes().all(|b| b.is_ascii_alphabetic()))
    };
    let (base, step) = match part.split_once('/') {
        Some((b, s)) => (b, Some(s)),
        None => (part, None),
    };
    if let Some(s) = step {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    match base.split_once('-') {
        _ if base == "*" => true,
        Some((a, b)) => is_value(a) && is_value(b),
        None => is_value(base),
    }
}

/// Checks one field for characters, names and shapes outside standard cron.
fn check_field(index: usize, field: &str, expr: &str) -> Result<(), RequestError> {
    let what = FIELD_NAMES.get(index).copied().unwrap_or("unknown");
    let names: &[&str] = match index {
        3 => &MONTH_NAMES,
        4 => &DAY_NAMES,
        _ => &[],
    };
    let mut word = String::new();
    let check_word = |word: &mut String| -> Result<(), RequestError> {
        if word.is_empty() {
            return Ok(());
        }
        let upper = word.to_ascii_uppercase();
        if !names.contains(&upper.as_str()) {
            let accepted = if names.is_empty() {
                format!("The {what} field takes numbers only.")
            } else {
                format!("Names in the {what} field: {}.", names.join(", "))
            };
            return Err(RequestError::invalid(
                format!(
                    "cron expression {} has {} in its {what} field, which standard cron does not accept",
                    quoted(expr),
                    quoted(word)
                ),
                format!("{accepted} {CRON_HINT}"),
            ));
        }
        word.clear();
        Ok(())
    };
    for ch in field.chars() {
        if ch.is_ascii_alphabetic() {
            word.push(ch);
            continue;
        }
        check_word(&mut word)?;
        if !(ch.is_ascii_digit() || matches!(ch, '*' | ',' | '-' | '/')) {
            return Err(RequestError::invalid(
                format!(
                    "cron expression {} uses {} in its {what} field, which standard cron does not accept",
                    quoted(expr),
                    quoted(&ch.to_string())
                ),
                CRON_HINT,
            ));
        }
    }
    check_word(&mut word)?;
    if let Some(part) = field.split(',').find(|p| !well_formed(p)) {
        return Err(RequestError::invalid(
            format!(
                "cron expression {} has a malformed {what} field: {} is not a value, a range or a step",
                quoted(expr),
                quoted(part)
            ),
            CRON_HINT,
        ));
    }
    Ok(())
}

/// Whether any day matches. Asking croner for the next occurrence of a
/// pattern that never matches walks forward to its year limit, which takes
/// seconds; checking each day of a 28-year span (every combination of date,
/// weekday and leap year) is instant and decides the same for standard
/// syntax.
fn matches_some_day(cron: &Cron) -> bool {
    let Some(mut day) = NaiveDate::from_ymd_opt(2000, 1, 1) else {
        return true;
    };
    let Some(end) = NaiveDate::from_ymd_opt(2028, 1, 1) else {
        return true;
    };
    while day < end {
        let month_ok = cron.pattern.month_match(day.month()).unwrap_or(false);
        if month_ok
            && cron
                .pattern
                .day_match(
                    day.year(),
                    day.month(),
                    day.day(),
                    croner::Weekday::from_days_from_sunday(day.weekday().num_days_from_sunday()),
                )
                .unwrap_or(false)
        {
            return true;
        }
        match day.succ_opt() {
            Some(next) => day = next,
            None => return true,
        }
    }
    false
}

impl CronSchedule {
    pub fn parse(expr: &str) -> Result<CronSchedule, RequestError> {
        let trimmed = expr.trim();
        if trimmed.is_empty() {
            return Err(RequestError::invalid("cron expression is empty", CRON_HINT));
        }
        if trimmed
            .chars()
            .any(|c| c.is_control() && !c.is_whitespace())
        {
            return Err(RequestError::invalid(
                format!(
                    "cron expression {} contains a control character",
                    quoted(expr)
                ),
                CRON_HINT,
            ));
        }
        let pattern = if trimmed.starts_with('@') {
            alias(trimmed)?.to_string()
        } else {
            let fields: Vec<&str> = trimmed.split_whitespace().collect();
            match fields.len() {
                5 => {}
                6 | 7 => {
                    return Err(RequestError::invalid(
                        format!(
                            "cron expression {} has {} fields; seconds and year fields are not supported",
                            quoted(expr),
                            fields.len()
                        ),
                        format!("Schedules have minute granularity. {CRON_HINT}"),
                    ))
                }
                n => {
                    return Err(RequestError::invalid(
                        format!("cron expression {} has {n} fields, not 5", quoted(expr)),
                        CRON_HINT,
                    ))
                }
            }
            for (i, field) in fields.iter().enumerate() {
                check_field(i, field, expr)?;
            }
            fields.join(" ")
        };
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(&pattern)
            .map_err(|e| {
                RequestError::invalid(
                    format!("invalid cron expression {}: {e}", quoted(expr)),
                    CRON_HINT,
                )
            })?;
        // "0 0 30 2 *" parses but never fires; better to say so now than to
        // have a schedule that silently never runs.
        let some_hour = (0..24).any(|h| cron.pattern.hour_match(h).unwrap_or(false));
        let some_minute = (0..60).any(|m| cron.pattern.minute_match(m).unwrap_or(false));
        if !(some_hour && some_minute && matches_some_day(&cron)) {
            return Err(RequestError::invalid(
                format!("cron expression {} never matches a date", quoted(expr)),
                format!("Check the day-of-month and month fields. {CRON_HINT}"),
            ));
        }
        Ok(CronSchedule {
            expr: trimmed.to_string(),
            cron,
        })
    }

    /// The expression as given (without surrounding whitespace).
    pub fn as_str(&self) -> &str {
        &self.expr
    }

    /// The first scheduled time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&t, false).ok()
    }

    /// The most recent scheduled time in `(last_run or created, now]`, if
    /// any. Several runs missed while the server was down collapse into
    /// this one: a backup schedule wants a fresh backup, not a backlog.
    pub fn due_runs(
        &self,
        last_run: Option<DateTime<Utc>>,
        created: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let since = last_run.unwrap_or(created);
        if now <= since {
            return None;
        }
        let latest = self.cron.find_previous_occurrence(&now, true).ok()?;
        (latest > since && latest <= now).then_some(latest)
    }
}

impl std::fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.expr)
    }
}

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
}

const DATABASE_KEYS: [&str; 7] = [
    "backup", "dbname", "format", "compress", "jobs", "label", "options",
];
const GLOBALS_KEYS: [&str; 3] = ["backup", "label", "no_role_passwords"];
const CLUSTER_KEYS: [&str; 4] = ["backup", "format", "label", "options"];
const KINDS_HINT: &str = "The \"backup\" key is one of: database, globals, cluster.";
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
            _ if kind != "cluster" => {
                return Err(RequestError::invalid(
                    format!("option {} only applies to cluster backups", quoted(key)),
                    format!(
                        "A {kind} schedule command takes the pg_dump options plus \"timeout\"."
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
    /// with the major version of the installed pg_dump.
    pub fn from_value(value: &Value) -> Result<ScheduleCommand, RequestError> {
        ScheduleCommand::from_value_for_tool(value, 15)
    }

    pub fn from_value_for_tool(
        value: &Value,
        tool_major: u32,
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
                let request = DumpRequest::validate(
                    format,
                    compress,
                    jobs,
                    &options(map, kind)?,
                    tool_major,
                )?;
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
                    DumpRequest::validate(format, None, None, &options(map, kind)?, tool_major)?;
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

    /// "database", "globals" or "cluster".
    pub fn kind(&self) -> &'static str {
        match self {
            ScheduleCommand::Database { .. } => "database",
            ScheduleCommand::Globals { .. } => "globals",
            ScheduleCommand::Cluster { .. } => "cluster",
        }
    }

    pub fn label(&self) -> Option<&str> {
        match self {
            ScheduleCommand::Database { label, .. }
            | ScheduleCommand::Globals { label, .. }
            | ScheduleCommand::Cluster { label, .. } => label.as_deref(),
        }
    }

    /// The stored form, in the same shape as the input so that it is read
    /// back through the same strict parser.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
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
        }
        Value::Object(map)
    }
}

fn insert_request(map: &mut Map<String, Value>, request: &DumpRequest) {
    map.insert("format".into(), Value::from(request.format.as_str()));
    if request.options != DumpOptions::default() {
        map.insert("options".into(), request.options.to_json());
    }
}

#[cfg(test)]
mod tests;
