//! `add_alert()`, `drop_alert()` and `test_alert()`: where messages about outcomes go.
//! Superusers only: an alert sends facts about every database to a place of its choosing, and
//! names files the server reads.

use backup_core::alerts::{AlertConfig, AlertEvent, Event, EVENTS};
use backup_core::RequestError;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::json;

use crate::api::backup::require;
use crate::catalog::alerts;
use crate::error::{BackupError, OrReport};
use crate::{privileges, settings};

const ALERT_HINT: &str = "Alerts send facts about every database elsewhere; ask a superuser.";

/// Alert names: lower-case letters, digits and underscores, starting with a letter.
fn validate_name(name: &str) -> Result<(), RequestError> {
    let ok = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(RequestError::invalid(
            format!("alert name {name:?} is not valid"),
            "Use 1 to 63 lower-case letters, digits and underscores, starting with a letter, e.g. 'oncall'.",
        ))
    }
}

/// A file the server reads when sending must exist and be readable now, so that a wrong path
/// is found at once rather than at the first failure. Its contents are not looked at.
fn check_readable(option: &str, path: &std::path::Path) {
    if let Err(e) = std::fs::File::open(path) {
        BackupError::Request(RequestError::new(
            backup_core::ErrorKind::FileMissing,
            format!("cannot read option \"{option}\" file {}: {e}", path.display()),
            "The file must be readable by the server's OS user; it is read each time a message is sent.",
        ))
        .report();
    }
}

/// Adds an alert after checking its kind, target, events and options.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn add_alert(
    name: Option<String>,
    kind: Option<String>,
    target: Option<String>,
    events: default!(
        Option<Vec<Option<String>>>,
        "'{failed,stale,verify_failed}'"
    ),
    options: default!(Option<JsonB>, "'{}'"),
) {
    let name = require(name, "name");
    let kind = require(kind, "kind");
    let target = require(target, "target");
    let events: Vec<String> = require(events, "events")
        .into_iter()
        .map(|e| {
            e.unwrap_or_else(|| {
                BackupError::Request(RequestError::invalid(
                    "events must not contain NULL",
                    format!("Use any of: {}.", EVENTS.join(", ")),
                ))
                .report()
            })
        })
        .collect();
    let (caller, _owner) = privileges::enter();
    caller.require_superuser_for("add alerts", ALERT_HINT);
    validate_name(&name).or_report();
    let options = options.map(|o| o.0).unwrap_or_else(|| json!({}));
    let config = AlertConfig::parse(
        &kind,
        &target,
        &events,
        &options,
        settings::alert_allow_http(),
    )
    .or_report();
    for (option, path) in [
        ("secret_file", &config.options.secret_file),
        ("password_file", &config.options.password_file),
    ] {
        if let Some(path) = path {
            check_readable(option, path);
        }
    }
    let events: Vec<&str> = config.events.iter().map(|e| e.as_str()).collect();
    if !alerts::insert_alert(&name, config.kind.as_str(), &target, &events, &options).or_report() {
        BackupError::AlertExists(name).report();
    }
}

/// Removes an alert and its deliveries; false when there is none of that name.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn drop_alert(name: Option<String>) -> bool {
    let name = require(name, "name");
    let (caller, _owner) = privileges::enter();
    caller.require_superuser_for("drop alerts", ALERT_HINT);
    alerts::delete_alert(&name).or_report()
}

/// Sends a test message through the alert now and returns how it went: `delivered (HTTP 200)`
/// or `failed: <reason>`. Waits at most the alert's timeout (options.timeout, 10 s by default)
/// and a few seconds more; a cancel or statement_timeout interrupts the wait.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn test_alert(name: Option<String>) -> String {
    let name = require(name, "name");
    let (caller, _owner) = privileges::enter();
    caller.require_superuser_for("test alerts", ALERT_HINT);
    let Some((kind, target, options)) = alerts::alert(&name).or_report() else {
        let known = alerts::alert_names().or_report();
        BackupError::NoSuchAlert { name, known }.report();
    };
    let mut event: AlertEvent = alerts::new_event(
        Event::Test,
        None,
        &format!("test message of alert \"{name}\": alerts from backup_ext reach this place"),
    )
    .or_report();
    event.status = Some("test".into());
    let payload = serde_json::to_value(&event).unwrap_or_default();
    let delivery = alerts::delivery(0, &kind, target, &options, payload)
        .map_err(|e| BackupError::Internal(format!("alert \"{name}\" cannot be read: {e}")))
        .or_report();
    match backup_core::alerts::send_now(delivery, &mut check_interrupts) {
        Ok(answer) => format!("delivered ({answer})"),
        Err(e) => format!("failed: {e}"),
    }
}

/// A cancel or statement_timeout ends `test_alert()`'s wait with an ERROR.
fn check_interrupts() {
    pgrx::check_for_interrupts!();
}
