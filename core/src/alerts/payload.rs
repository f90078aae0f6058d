//! What an alert says. The outbox stores one JSON document per delivery, the body a `webhook`
//! alert posts; Slack, Discord, Teams and email messages are rendered from it when sending.
//! Nothing here ever holds a secret: the events carry names, ids and error lines only.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;

use super::AlertKind;

/// Header of a signed webhook: `sha256=` and the hex HMAC-SHA256 of the body.
pub const SIGNATURE_HEADER: &str = "X-Backup-Ext-Signature";
/// Longest error line kept in a message.
const MAX_ERROR_CHARS: usize = 500;

/// One event as the webhook body documents it (README, "Alerts").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// `succeeded`, `failed`, `verify_failed`, `stale`, `copy_lagging`, `guardrail` or `test`.
    pub event: String,
    /// One line for people.
    pub message: String,
    pub database: Option<String>,
    pub job_id: Option<i64>,
    /// The job kind (`backup`, `verify`, `restore`, ...).
    pub kind: Option<String>,
    pub status: Option<String>,
    pub backup_id: Option<i64>,
    /// The first line of the job's error.
    pub error: Option<String>,
    /// When it happened, RFC 3339 UTC.
    pub time: String,
    /// `cluster_name` of the server (may be empty).
    pub cluster: String,
    pub system_identifier: String,
}

impl AlertEvent {
    /// The people's line for a job outcome (`message` is built from the other fields).
    pub fn describe_job(&mut self) {
        let kind = match self.kind.as_deref() {
            Some("database") => "backup",
            Some("globals") => "globals backup",
            Some("verify") => "verification",
            Some(other) => other,
            None => "",
        };
        let job = self.job_id.map(|j| format!(" {j}")).unwrap_or_default();
        let db = self
            .database
            .as_deref()
            .map(|d| format!(" of database \"{d}\""))
            .unwrap_or_default();
        let status = self.status.as_deref().unwrap_or(&self.event);
        let mut line = format!("{kind} job{job}{db} {status}")
            .trim_start()
            .to_string();
        // A failed backup's id names nothing usable; a verification's names what it checked.
        if let (Some(b), true) = (
            self.backup_id,
            status == "succeeded" || self.kind.as_deref() == Some("verify"),
        ) {
            line.push_str(&format!(" (backup {b})"));
        }
        if let Some(e) = &self.error {
            line.push_str(": ");
            line.push_str(e);
        }
        self.message = line;
    }
}

/// The first line of an error, trimmed and cut to a readable length.
pub fn first_line(error: &str) -> String {
    let line = error
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if line.chars().count() > MAX_ERROR_CHARS {
        let cut: String = line.chars().take(MAX_ERROR_CHARS).collect();
        format!("{cut}...")
    } else {
        line.to_string()
    }
}

/// A message ready to go out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rendered {
    Http { body: Vec<u8> },
    Email { subject: String, body: String },
}

/// The message of `kind` for the stored event.
pub fn render(kind: AlertKind, event: &AlertEvent) -> Rendered {
    let line = headline(event);
    let body = match kind {
        AlertKind::Webhook => serde_json::to_value(event).unwrap_or(Value::Null),
        AlertKind::Slack => json!({ "text": line }),
        AlertKind::Discord => json!({ "content": cut(&line, 2000) }),
        AlertKind::Teams => teams_card(event, &line),
        AlertKind::Email => {
            return Rendered::Email {
                subject: subject(event),
                body: email_body(event),
            }
        }
    };
    Rendered::Http {
        body: serde_json::to_vec(&body).unwrap_or_default(),
    }
}

/// `sha256=<hex>`: HMAC-SHA256 of `body` keyed with `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn cluster_label(event: &AlertEvent) -> String {
    if event.cluster.is_empty() {
        event.system_identifier.clone()
    } else {
        event.cluster.clone()
    }
}

fn headline(event: &AlertEvent) -> String {
    format!(
        "[backup_ext {}] {}: {} ({})",
        cluster_label(event),
        event.event,
        event.message,
        event.time
    )
}

fn subject(event: &AlertEvent) -> String {
    let about = match (&event.database, event.job_id) {
        (Some(db), Some(job)) => format!(" database \"{db}\", job {job}"),
        (Some(db), None) => format!(" database \"{db}\""),
        (None, Some(job)) => format!(" job {job}"),
        (None, None) => String::new(),
    };
    cut(
        &format!(
            "[backup_ext {}] {}:{about}",
            cluster_label(event),
            event.event
        ),
        200,
    )
}

fn email_body(event: &AlertEvent) -> String {
    let mut lines = vec![
        format!(
            "backup_ext on cluster {} (system identifier {}) reports: {}",
            cluster_label(event),
            event.system_identifier,
            event.event
        ),
        String::new(),
        event.message.clone(),
        String::new(),
    ];
    let dash = || "-".to_string();
    let mut field = |name: &str, value: String| lines.push(format!("{name:<10} {value}"));
    field("Database:", event.database.clone().unwrap_or_else(dash));
    field(
        "Job:",
        match (event.job_id, &event.kind) {
            (Some(j), Some(k)) => format!("{j} ({k})"),
            (Some(j), None) => j.to_string(),
            _ => dash(),
        },
    );
    field("Status:", event.status.clone().unwrap_or_else(dash));
    field(
        "Backup:",
        event.backup_id.map(|b| b.to_string()).unwrap_or_else(dash),
    );
    field("Time:", event.time.clone());
    field("Error:", event.error.clone().unwrap_or_else(dash));
    lines.push(String::new());
    lines.push("Check with: SELECT * FROM backup_ext.status();".into());
    lines.join("\n") + "\n"
}

/// Teams Workflows ("Post to a channel when a webhook request is received") take a message
/// with one Adaptive Card attachment.
fn teams_card(event: &AlertEvent, line: &str) -> Value {
    let facts: Vec<Value> = [
        ("Database", event.database.clone()),
        ("Job", event.job_id.map(|j| j.to_string())),
        ("Kind", event.kind.clone()),
        ("Status", event.status.clone()),
        ("Backup", event.backup_id.map(|b| b.to_string())),
        ("Time", Some(event.time.clone())),
    ]
    .into_iter()
    .filter_map(|(title, value)| value.map(|v| json!({ "title": title, "value": v })))
    .collect();
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    { "type": "TextBlock", "weight": "Bolder", "wrap": true, "text": line },
                    { "type": "FactSet", "facts": facts }
                ]
            }
        }]
    })
}

fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        text.chars().take(max - 3).collect::<String>() + "..."
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed() -> AlertEvent {
        let mut e = AlertEvent {
            event: "failed".into(),
            message: String::new(),
            database: Some("app".into()),
            job_id: Some(42),
            kind: Some("database".into()),
            status: Some("failed".into()),
            backup_id: Some(42),
            error: Some(first_line(
                "\n  pg_dump: error: connection refused\nmore detail\n",
            )),
            time: "2026-11-30T00:12:03Z".into(),
            cluster: "main".into(),
            system_identifier: "7312345678901234567".into(),
        };
        e.describe_job();
        e
    }

    #[test]
    fn webhook_body_is_the_event() {
        let e = failed();
        assert_eq!(
            e.message,
            "backup job 42 of database \"app\" failed: pg_dump: error: connection refused"
        );
        let Rendered::Http { body } = render(AlertKind::Webhook, &e) else {
            panic!()
        };
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["event"], "failed");
        assert_eq!(v["database"], "app");
        assert_eq!(v["job_id"], 42);
        assert_eq!(v["error"], "pg_dump: error: connection refused");
        assert_eq!(v["system_identifier"], "7312345678901234567");
        let back: AlertEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn chat_formats() {
        let e = failed();
        let body = |k| match render(k, &e) {
            Rendered::Http { body } => serde_json::from_slice::<Value>(&body).unwrap(),
            Rendered::Email { .. } => panic!(),
        };
        let text = "[backup_ext main] failed: backup job 42 of database \"app\" failed: \
                    pg_dump: error: connection refused (2026-11-30T00:12:03Z)";
        assert_eq!(body(AlertKind::Slack), json!({ "text": text }));
        assert_eq!(body(AlertKind::Discord), json!({ "content": text }));
        let teams = body(AlertKind::Teams);
        assert_eq!(teams["type"], "message");
        let card = &teams["attachments"][0]["content"];
        assert_eq!(card["body"][0]["text"], text);
        assert_eq!(
            card["body"][1]["facts"][0],
            json!({"title": "Database", "value": "app"})
        );
    }

    #[test]
    fn email_message() {
        let mut e = failed();
        let Rendered::Email { subject, body } = render(AlertKind::Email, &e) else {
            panic!()
        };
        assert_eq!(
            subject,
            "[backup_ext main] failed: database \"app\", job 42"
        );
        assert!(body.contains("\nDatabase:  app\n"), "{body}");
        assert!(body.contains("\nJob:       42 (database)\n"), "{body}");
        assert!(
            body.contains("\nError:     pg_dump: error: connection refused\n"),
            "{body}"
        );
        e.cluster.clear();
        let Rendered::Email { subject, .. } = render(AlertKind::Email, &e) else {
            panic!()
        };
        assert!(subject.starts_with("[backup_ext 7312345678901234567] failed"));
    }

    #[test]
    fn success_and_verification_lines_name_the_backup() {
        let mut e = failed();
        e.status = Some("succeeded".into());
        e.error = None;
        e.describe_job();
        assert_eq!(
            e.message,
            "backup job 42 of database \"app\" succeeded (backup 42)"
        );
        e.kind = Some("verify".into());
        e.job_id = Some(43);
        e.status = Some("failed".into());
        e.error = Some("table t1 has 3 rows, the archive 4".into());
        e.describe_job();
        assert_eq!(
            e.message,
            "verification job 43 of database \"app\" failed (backup 42): table t1 has 3 rows, the archive 4"
        );
    }

    #[test]
    fn long_errors_are_cut() {
        let long = "x".repeat(2000);
        assert_eq!(first_line(&long).len(), MAX_ERROR_CHARS + 3);
        assert_eq!(first_line(""), "");
    }

    #[test]
    fn signature() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
