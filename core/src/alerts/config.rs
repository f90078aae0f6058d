//! An alert as `add_alert()` accepts it: kind, target, events and options, checked strictly so
//! that a typo is an error at once rather than an alert that never arrives.

use std::net::IpAddr;
use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::error::{quoted, RequestError};

pub const ALERT_KINDS: &[&str] = &["webhook", "slack", "discord", "teams", "email"];
pub const EVENTS: &[&str] = &[
    "succeeded",
    "failed",
    "verify_failed",
    "stale",
    "copy_lagging",
    "guardrail",
];
const HTTP_OPTION_KEYS: &[&str] = &["secret_file", "timeout"];
const EMAIL_OPTION_KEYS: &[&str] = &[
    "host",
    "port",
    "tls",
    "from",
    "username",
    "password_file",
    "timeout",
];
/// Seconds a send may take when `options.timeout` is not given, and at most.
pub const DEFAULT_TIMEOUT: u64 = 10;
pub const MAX_TIMEOUT: u64 = 60;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertKind {
    Webhook,
    Slack,
    Discord,
    Teams,
    Email,
}

impl AlertKind {
    pub fn parse(text: &str) -> Result<AlertKind, RequestError> {
        Ok(match text {
            "webhook" => AlertKind::Webhook,
            "slack" => AlertKind::Slack,
            "discord" => AlertKind::Discord,
            "teams" => AlertKind::Teams,
            "email" => AlertKind::Email,
            other => {
                return Err(RequestError::invalid(
                    format!("alert kind {} is not known", quoted(other)),
                    format!("Use one of: {}.", ALERT_KINDS.join(", ")),
                ))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Webhook => "webhook",
            AlertKind::Slack => "slack",
            AlertKind::Discord => "discord",
            AlertKind::Teams => "teams",
            AlertKind::Email => "email",
        }
    }
}

/// What an alert reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Succeeded,
    Failed,
    VerifyFailed,
    Stale,
    CopyLagging,
    Guardrail,
    /// `test_alert()`: never stored in an alert's event list.
    Test,
}

impl Event {
    pub fn parse(text: &str) -> Result<Event, RequestError> {
        Ok(match text {
            "succeeded" => Event::Succeeded,
            "failed" => Event::Failed,
            "verify_failed" => Event::VerifyFailed,
            "stale" => Event::Stale,
            "copy_lagging" => Event::CopyLagging,
            "guardrail" => Event::Guardrail,
            other => {
                return Err(RequestError::invalid(
                    format!("alert event {} is not known", quoted(other)),
                    format!("Use any of: {}.", EVENTS.join(", ")),
                ))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Event::Succeeded => "succeeded",
            Event::Failed => "failed",
            Event::VerifyFailed => "verify_failed",
            Event::Stale => "stale",
            Event::CopyLagging => "copy_lagging",
            Event::Guardrail => "guardrail",
            Event::Test => "test",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    StartTls,
    Implicit,
    None,
}

/// The options of one alert, parsed; secrets are file paths read when sending.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertOptions {
    pub secret_file: Option<PathBuf>,
    pub timeout: Option<u64>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub tls: Option<TlsMode>,
    pub from: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
}

impl AlertOptions {
    /// Seconds one send may take.
    pub fn timeout_secs(&self) -> u64 {
        self.timeout.unwrap_or(DEFAULT_TIMEOUT)
    }
}

/// A checked alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertConfig {
    pub kind: AlertKind,
    pub target: String,
    pub events: Vec<Event>,
    pub options: AlertOptions,
}

impl AlertConfig {
    /// Checks what `add_alert()` was given. `allow_http` is `backup_ext.alert_allow_http`:
    /// without it, plain http (and SMTP without TLS) only to loopback.
    pub fn parse(
        kind: &str,
        target: &str,
        events: &[String],
        options: &Value,
        allow_http: bool,
    ) -> Result<AlertConfig, RequestError> {
        let kind = AlertKind::parse(kind)?;
        if events.is_empty() {
            return Err(RequestError::invalid(
                "an alert needs at least one event",
                format!("Use any of: {}.", EVENTS.join(", ")),
            ));
        }
        let mut parsed = Vec::new();
        for e in events {
            let e = Event::parse(e)?;
            if !parsed.contains(&e) {
                parsed.push(e);
            }
        }
        let options = parse_options(kind, options)?;
        if kind == AlertKind::Email {
            check_email_target(target, &options, allow_http)?;
        } else {
            check_url(target, allow_http)?;
        }
        Ok(AlertConfig {
            kind,
            target: target.to_string(),
            events: parsed,
            options,
        })
    }
}

/// Parses stored or given options for `kind`; unknown keys are refused.
pub fn parse_options(kind: AlertKind, options: &Value) -> Result<AlertOptions, RequestError> {
    let empty = Map::new();
    let map = match options {
        Value::Object(map) => map,
        Value::Null => &empty,
        _ => {
            return Err(RequestError::invalid(
                "alert options must be a JSON object",
                "Pass e.g. '{\"timeout\": 5}'::jsonb, or '{}'.",
            ))
        }
    };
    let keys = if kind == AlertKind::Email {
        EMAIL_OPTION_KEYS
    } else {
        HTTP_OPTION_KEYS
    };
    let mut o = AlertOptions::default();
    for (key, value) in map {
        if !keys.contains(&key.as_str()) {
            return Err(RequestError::invalid(
                format!(
                    "option {} is not known for {} alerts",
                    quoted(key),
                    kind.as_str()
                ),
                format!("Options of {} alerts: {}.", kind.as_str(), keys.join(", ")),
            ));
        }
        match key.as_str() {
            "secret_file" => o.secret_file = Some(absolute_path(key, value)?),
            "password_file" => o.password_file = Some(absolute_path(key, value)?),
            "timeout" => {
                o.timeout = Some(
                    value
                        .as_u64()
                        .filter(|t| (1..=MAX_TIMEOUT).contains(t))
                        .ok_or_else(|| {
                            RequestError::invalid(
                                format!("option \"timeout\" must be a number of seconds, not {value}"),
                                format!("Use 1 to {MAX_TIMEOUT} (default {DEFAULT_TIMEOUT})."),
                            )
                        })?,
                )
            }
            "host" => o.host = Some(text(key, value)?),
            "from" => o.from = Some(text(key, value)?),
            "username" => o.username = Some(text(key, value)?),
            "port" => {
                o.port = Some(
                    value
                        .as_u64()
                        .and_then(|p| u16::try_from(p).ok())
                        .filter(|p| *p > 0)
                        .ok_or_else(|| {
                            RequestError::invalid(
                                format!("option \"port\" must be a TCP port, not {value}"),
                                "Use e.g. 587 for STARTTLS, 465 for implicit TLS.",
                            )
                        })?,
                )
            }
            "tls" => {
                o.tls = Some(match value.as_str() {
                    Some("starttls") => TlsMode::StartTls,
                    Some("implicit") => TlsMode::Implicit,
                    Some("none") => TlsMode::None,
                    _ => {
                        return Err(RequestError::invalid(
                            format!("option \"tls\" must be starttls, implicit or none, not {value}"),
                            "Use 'starttls' (port 587), 'implicit' (port 465), or 'none' for a loopback relay.",
                        ))
                    }
                })
            }
            _ => unreachable!("every key listed is handled"),
        }
    }
    Ok(o)
}

fn text(key: &str, value: &Value) -> Result<String, RequestError> {
    value
        .as_str()
        .filter(|s| !s.is_empty() && !s.contains(['\r', '\n']))
        .map(str::to_string)
        .ok_or_else(|| {
            RequestError::invalid(
                format!("option {} must be a non-empty line of text", quoted(key)),
                "Give it as a JSON string.",
            )
        })
}

fn absolute_path(key: &str, value: &Value) -> Result<PathBuf, RequestError> {
    let path = text(key, value)?;
    if !path.starts_with('/') {
        return Err(RequestError::invalid(
            format!("option {} must be an absolute path", quoted(key)),
            "Name a file readable by the server's OS user, e.g. '/etc/backup_ext/webhook.secret'; its contents are read when sending and never stored.",
        ));
    }
    Ok(PathBuf::from(path))
}

/// Whether `host` names this machine: `localhost`, 127.0.0.0/8 or ::1.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn check_url(target: &str, allow_http: bool) -> Result<(), RequestError> {
    let hint = "Give the full URL, e.g. 'https://hooks.example.com/backup'.";
    let url = url::Url::parse(target).map_err(|e| {
        RequestError::invalid(
            format!("alert target {} is not a URL: {e}", quoted(target)),
            hint,
        )
    })?;
    let host = url.host_str().unwrap_or_default().to_string();
    if host.is_empty() || !url.username().is_empty() || url.password().is_some() {
        return Err(RequestError::invalid(
            format!(
                "alert target {} must name a host and no credentials",
                quoted(target)
            ),
            "Put a shared secret in options.secret_file, not in the URL.",
        ));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_http || is_loopback(&host) => Ok(()),
        "http" => Err(RequestError::invalid(
            format!(
                "alert target {} uses plain http to a host other than loopback",
                quoted(target)
            ),
            "Use https, or SET backup_ext.alert_allow_http = on to allow plain http.",
        )),
        other => Err(RequestError::invalid(
            format!("alert target scheme {} is not supported", quoted(other)),
            hint,
        )),
    }
}

fn check_email_target(
    target: &str,
    o: &AlertOptions,
    allow_http: bool,
) -> Result<(), RequestError> {
    check_address("target", target)?;
    let Some(host) = &o.host else {
        return Err(RequestError::invalid(
            "email alerts need options.host, the SMTP server",
            "Pass e.g. '{\"host\": \"smtp.example.com\", \"from\": \"backups@example.com\"}'.",
        ));
    };
    let Some(from) = &o.from else {
        return Err(RequestError::invalid(
            "email alerts need options.from, the sender address",
            "Pass e.g. '{\"host\": \"smtp.example.com\", \"from\": \"backups@example.com\"}'.",
        ));
    };
    check_address("from", from)?;
    if o.tls == Some(TlsMode::None) && !is_loopback(host) && !allow_http {
        return Err(RequestError::invalid(
            format!("SMTP without TLS to {} is not allowed", quoted(host)),
            "Use tls 'starttls' or 'implicit'; 'none' is for a relay on loopback, or SET backup_ext.alert_allow_http = on.",
        ));
    }
    if o.password_file.is_some() && o.username.is_none() {
        return Err(RequestError::invalid(
            "option \"password_file\" needs option \"username\"",
            "Give the SMTP user name too.",
        ));
    }
    Ok(())
}

fn check_address(what: &str, address: &str) -> Result<(), RequestError> {
    if address.parse::<lettre::Address>().is_err() {
        return Err(RequestError::invalid(
            format!("email {what} {} is not an email address", quoted(address)),
            "Give one address such as 'dba@example.com'.",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn events(e: &[&str]) -> Vec<String> {
        e.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn webhook_targets() {
        let ok =
            |t: &str| AlertConfig::parse("webhook", t, &events(&["failed"]), &json!({}), false);
        assert!(ok("https://hooks.example.com/x").is_ok());
        assert!(ok("http://127.0.0.1:8080/x").is_ok());
        assert!(ok("http://localhost/x").is_ok());
        assert!(ok("http://[::1]:9/x").is_ok());
        assert!(ok("http://hooks.example.com/x")
            .unwrap_err()
            .hint
            .contains("alert_allow_http"));
        assert!(ok("ftp://example.com/x").is_err());
        assert!(ok("https://user:pw@example.com/x").is_err());
        assert!(ok("not a url").is_err());
        assert!(AlertConfig::parse(
            "slack",
            "http://hooks.example.com/x",
            &events(&["failed"]),
            &json!({}),
            true
        )
        .is_ok());
    }

    #[test]
    fn kinds_events_and_options() {
        let e = AlertConfig::parse(
            "pager",
            "https://x.example",
            &events(&["failed"]),
            &json!({}),
            false,
        )
        .unwrap_err();
        assert!(e.hint.contains("webhook, slack, discord, teams, email"));
        let e = AlertConfig::parse(
            "webhook",
            "https://x.example",
            &events(&["fail"]),
            &json!({}),
            false,
        )
        .unwrap_err();
        assert!(e.message.contains("\"fail\""), "{}", e.message);
        assert!(
            AlertConfig::parse("webhook", "https://x.example", &[], &json!({}), false).is_err()
        );
        let e = AlertConfig::parse(
            "webhook",
            "https://x.example",
            &events(&["failed"]),
            &json!({"secret": "x"}),
            false,
        )
        .unwrap_err();
        assert_eq!(e.hint, "Options of webhook alerts: secret_file, timeout.");
        let c = AlertConfig::parse(
            "webhook",
            "https://x.example",
            &events(&["failed", "stale", "failed"]),
            &json!({"secret_file": "/etc/s", "timeout": 3}),
            false,
        )
        .unwrap();
        assert_eq!(c.events, vec![Event::Failed, Event::Stale]);
        assert_eq!(c.options.timeout_secs(), 3);
        assert!(parse_options(AlertKind::Webhook, &json!({"secret_file": "rel"})).is_err());
        assert!(parse_options(AlertKind::Webhook, &json!({"timeout": 0})).is_err());
        assert!(parse_options(AlertKind::Webhook, &json!({"timeout": 61})).is_err());
    }

    #[test]
    fn email_alerts() {
        let p = |t: &str, o: Value| AlertConfig::parse("email", t, &events(&["failed"]), &o, false);
        let local =
            json!({"host": "127.0.0.1", "port": 2525, "tls": "none", "from": "b@example.com"});
        assert!(p("dba@example.com", local.clone()).is_ok());
        assert!(p("not an address", local).is_err());
        assert!(p("dba@example.com", json!({"from": "b@example.com"})).is_err());
        assert!(p("dba@example.com", json!({"host": "smtp.example.com"})).is_err());
        let e = p(
            "dba@example.com",
            json!({"host": "smtp.example.com", "tls": "none", "from": "b@example.com"}),
        )
        .unwrap_err();
        assert!(e.message.contains("without TLS"));
        assert!(p(
            "dba@example.com",
            json!({"host": "smtp.example.com", "tls": "plain", "from": "b@example.com"})
        )
        .is_err());
        assert!(p(
            "dba@example.com",
            json!({"host": "smtp.example.com", "from": "b@example.com", "password_file": "/p"})
        )
        .is_err());
        let e = p(
            "dba@example.com",
            json!({"host": "h", "from": "b@example.com", "secret_file": "/s"}),
        )
        .unwrap_err();
        assert!(e
            .hint
            .contains("host, port, tls, from, username, password_file"));
    }
}
