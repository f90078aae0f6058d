use super::*;
use crate::error::ErrorKind;
use crate::format::Format;
use chrono::TimeZone;
use serde_json::json;

fn t(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

fn cron(expr: &str) -> CronSchedule {
    CronSchedule::parse(expr).unwrap()
}

fn err(expr: &str) -> RequestError {
    CronSchedule::parse(expr).unwrap_err()
}

#[test]
fn parses_standard_expressions() {
    // 2024-03-04 is a Monday.
    let from = t(2024, 3, 4, 10, 7);
    let cases = [
        ("* * * * *", t(2024, 3, 4, 10, 8)),
        ("30 2 * * *", t(2024, 3, 5, 2, 30)),
        ("*/15 * * * *", t(2024, 3, 4, 10, 15)),
        ("0-30/10 11 * * *", t(2024, 3, 4, 11, 0)),
        ("5,50 * * * *", t(2024, 3, 4, 10, 50)),
        ("0 9-17 * * MON-FRI", t(2024, 3, 4, 11, 0)),
        ("0 0 * * sat,SUN", t(2024, 3, 9, 0, 0)),
        ("0 0 * * 7", t(2024, 3, 10, 0, 0)),
        ("0 0 1 JAN *", t(2025, 1, 1, 0, 0)),
        ("0 0 1 jun-aug *", t(2024, 6, 1, 0, 0)),
        ("0 0 29 2 *", t(2028, 2, 29, 0, 0)),
        ("  0 3 * * 0  ", t(2024, 3, 10, 3, 0)),
        ("@daily", t(2024, 3, 5, 0, 0)),
        ("@HOURLY", t(2024, 3, 4, 11, 0)),
        ("@weekly", t(2024, 3, 10, 0, 0)),
        ("@monthly", t(2024, 4, 1, 0, 0)),
        ("@yearly", t(2025, 1, 1, 0, 0)),
        ("@annually", t(2025, 1, 1, 0, 0)),
        ("@midnight", t(2024, 3, 5, 0, 0)),
    ];
    for (expr, next) in cases {
        assert_eq!(cron(expr).next_after(from), Some(next), "{expr}");
    }
    assert_eq!(cron("  0 3 * * 0  ").as_str(), "0 3 * * 0");
    assert_eq!(cron("0 3 * * 0").to_string(), "0 3 * * 0");
}

#[test]
fn day_of_month_or_day_of_week() {
    // Both restricted: the 15th or any Friday, as in Vixie cron.
    let s = cron("0 0 15 * FRI");
    let from = t(2024, 3, 4, 0, 0);
    assert_eq!(s.next_after(from), Some(t(2024, 3, 8, 0, 0)));
    assert_eq!(
        s.next_after(t(2024, 3, 13, 0, 0)),
        Some(t(2024, 3, 15, 0, 0))
    );
    assert_eq!(
        s.next_after(t(2024, 3, 15, 0, 0)),
        Some(t(2024, 3, 22, 0, 0))
    );
}

#[test]
fn next_after_is_strictly_after() {
    let s = cron("30 2 * * *");
    assert_eq!(
        s.next_after(t(2024, 3, 4, 2, 30)),
        Some(t(2024, 3, 5, 2, 30))
    );
    let just_before = t(2024, 3, 4, 2, 29) + chrono::Duration::milliseconds(59_999);
    assert_eq!(s.next_after(just_before), Some(t(2024, 3, 4, 2, 30)));
}

#[test]
fn refuses_seconds_and_year_fields() {
    for expr in ["0 30 2 * * *", "0 30 2 * * * 2025", "*/5 * * * * *"] {
        let e = err(expr);
        assert_eq!(e.kind, ErrorKind::InvalidParameter);
        assert!(
            e.message
                .contains("seconds and year fields are not supported"),
            "{}",
            e.message
        );
        assert!(e.hint.contains("minute granularity"), "{}", e.hint);
    }
    for expr in ["* * * *", "*", "1 2 3 4 5 6 7 8"] {
        let e = err(expr);
        assert!(e.message.contains("fields, not 5"), "{}", e.message);
        assert_eq!(e.hint, CRON_HINT);
    }
}

#[test]
fn refuses_non_standard_syntax() {
    for (expr, bad) in [
        ("0 0 L * *", "\"L\""),
        ("0 0 15W * *", "\"W\""),
        ("0 0 * * 5#2", "\"#\""),
        ("0 0 * * 5L", "\"L\""),
        ("0 0 ? * MON", "\"?\""),
        ("0 0 1 * +MON", "\"+\""),
        ("0 0 * * MONDAY", "\"MONDAY\""),
        ("0 0 * JAN MON-FRX", "\"FRX\""),
        ("0 0 * MON *", "\"MON\""),
        ("0 0 * * JAN", "\"JAN\""),
        ("MON 0 * * *", "\"MON\""),
        ("0 0 * * 1.5", "\".\""),
    ] {
        let e = err(expr);
        assert_eq!(e.kind, ErrorKind::InvalidParameter, "{expr}");
        assert!(
            e.message.contains(bad) && e.message.contains("standard cron"),
            "{expr}: {}",
            e.message
        );
    }
    assert!(err("0 0 * MON *").hint.contains("JAN, FEB"));
    assert!(err("MON 0 * * *").hint.contains("numbers only"));
}

#[test]
fn refuses_out_of_range_and_malformed_values() {
    for expr in [
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * 32 * *",
        "* * * 13 *",
        "* * * * 8",
        "*/0 * * * *",
        "0/10 * * * *",
        "1- * * * *",
        ", * * * *",
        "1,,2 * * * *",
        "1, * * * *",
        "-5 * * * *",
        "1-2-3 * * * *",
        "*/ * * * *",
        "1/2/3 * * * *",
        "** * * * *",
        "*-5 * * * *",
        "5-* * * * *",
        "0 0 * JAN- *",
    ] {
        let e = err(expr);
        assert_eq!(e.kind, ErrorKind::InvalidParameter, "{expr}");
        assert!(e.message.contains(&quoted(expr)), "{}", e.message);
    }
    let e = err("0 0 30 2 *");
    assert!(e.message.contains("never matches"), "{}", e.message);
    assert!(err("").message.contains("empty"));
    assert!(err("   ").message.contains("empty"));
    assert!(err("0 0 * * *\u{0}").message.contains("control"));
    assert_eq!(err("@reboot").kind, ErrorKind::FeatureNotSupported);
    assert!(err("@fortnightly")
        .message
        .contains("unknown schedule shorthand"));
}

#[test]
fn due_runs_collapses_missed_runs() {
    let s = cron("0 2 * * *");
    let created = t(2024, 3, 1, 12, 0);
    // Nothing scheduled yet.
    assert_eq!(s.due_runs(None, created, t(2024, 3, 2, 1, 59)), None);
    // First run due at exactly 02:00.
    assert_eq!(
        s.due_runs(None, created, t(2024, 3, 2, 2, 0)),
        Some(t(2024, 3, 2, 2, 0))
    );
    // Already ran at that time: not due again.
    let last = Some(t(2024, 3, 2, 2, 0));
    assert_eq!(s.due_runs(last, created, t(2024, 3, 2, 2, 0)), None);
    assert_eq!(s.due_runs(last, created, t(2024, 3, 3, 1, 0)), None);
    // Down for five days: one run, at the most recent scheduled time.
    assert_eq!(
        s.due_runs(last, created, t(2024, 3, 7, 9, 30)),
        Some(t(2024, 3, 7, 2, 0))
    );
    // Sub-second parts of now do not hide a run.
    let now = t(2024, 3, 3, 2, 0) + chrono::Duration::milliseconds(250);
    assert_eq!(s.due_runs(last, created, now), Some(t(2024, 3, 3, 2, 0)));
    // A last run recorded after the scheduled time (the run started late).
    let late = Some(t(2024, 3, 3, 2, 0) + chrono::Duration::seconds(5));
    assert_eq!(s.due_runs(late, created, t(2024, 3, 3, 23, 0)), None);
    // A clock that went backwards.
    assert_eq!(s.due_runs(last, created, t(2024, 3, 1, 0, 0)), None);
    // Created exactly on a scheduled time: that time is not in the window.
    assert_eq!(
        s.due_runs(None, t(2024, 3, 2, 2, 0), t(2024, 3, 2, 2, 30)),
        None
    );
}

#[test]
fn due_runs_after_a_long_outage() {
    let s = cron("0 0 1 1 *");
    assert_eq!(
        s.due_runs(
            Some(t(2019, 1, 1, 0, 0)),
            t(2018, 6, 1, 0, 0),
            t(2024, 3, 1, 0, 0)
        ),
        Some(t(2024, 1, 1, 0, 0))
    );
    let s = cron("*/5 * * * *");
    assert_eq!(
        s.due_runs(
            Some(t(2024, 1, 1, 0, 0)),
            t(2024, 1, 1, 0, 0),
            t(2024, 3, 1, 0, 3)
        ),
        Some(t(2024, 3, 1, 0, 0))
    );
}

#[test]
fn schedule_names() {
    assert!(validate_schedule_name("nightly").is_ok());
    assert!(validate_schedule_name("nächtlich – app").is_ok());
    assert!(validate_schedule_name(&"é".repeat(63)).is_ok());
    let e = validate_schedule_name(&"é".repeat(64)).unwrap_err();
    assert_eq!(e.message, "schedule name is 64 characters long");
    assert!(validate_schedule_name("")
        .unwrap_err()
        .message
        .contains("empty"));
    for bad in ["a\nb", "tab\t", "\u{7f}", "nul\u{0}"] {
        let e = validate_schedule_name(bad).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidParameter);
        assert!(e.message.contains("control character"), "{}", e.message);
    }
}

fn cmd(v: Value) -> Result<ScheduleCommand, RequestError> {
    ScheduleCommand::from_value(&v)
}

#[test]
fn database_command() {
    let c = cmd(json!({
        "backup": "database",
        "dbname": "app",
        "format": "directory",
        "compress": "5",
        "jobs": 4,
        "label": "nightly",
        "options": {"exclude_schemas": ["tmp"]},
    }))
    .unwrap();
    let ScheduleCommand::Database {
        dbname,
        label,
        request,
    } = &c
    else {
        panic!("{c:?}")
    };
    assert_eq!(dbname, "app");
    assert_eq!(label.as_deref(), Some("nightly"));
    assert_eq!(request.format, Format::Directory);
    assert_eq!(request.jobs, Some(4));
    assert_eq!(request.options.exclude_schemas, vec!["tmp"]);
    assert_eq!(c.kind(), "database");
    assert_eq!(c.label(), Some("nightly"));
    assert_eq!(ScheduleCommand::from_value(&c.to_json()).unwrap(), c);

    // Defaults: custom format, no options; nulls mean defaults.
    let c = cmd(json!({"backup": "database", "dbname": "app", "label": null,
                       "compress": null, "jobs": null, "options": null}))
    .unwrap();
    let ScheduleCommand::Database { request, label, .. } = &c else {
        panic!("{c:?}")
    };
    assert_eq!(request.format, Format::Custom);
    assert_eq!(request.options, DumpOptions::default());
    assert_eq!(*label, None);
    assert_eq!(
        c.to_json(),
        json!({"backup": "database", "dbname": "app", "format": "custom"})
    );
    assert_eq!(ScheduleCommand::from_value(&c.to_json()).unwrap(), c);
}

#[test]
fn database_command_errors() {
    let e = cmd(json!({"backup": "database"})).unwrap_err();
    assert!(e.message.contains("needs \"dbname\""), "{}", e.message);
    let e = cmd(json!({"backup": "database", "dbname": ""})).unwrap_err();
    assert!(e.message.contains("empty"));
    let e = cmd(json!({"backup": "database", "dbname": "x".repeat(64)})).unwrap_err();
    assert!(e.message.contains("64 bytes"), "{}", e.message);
    let e = cmd(json!({"backup": "database", "dbname": 5})).unwrap_err();
    assert_eq!(
        e.message,
        "\"dbname\" in a database schedule command must be text, got number"
    );
    let e = cmd(json!({"backup": "database", "dbname": "app", "db": "x"})).unwrap_err();
    assert_eq!(
        e.message,
        "unknown key \"db\" in a database schedule command"
    );
    for key in DATABASE_KEYS {
        assert!(e.hint.contains(key), "{}", e.hint);
    }
    // DumpRequest::validate runs on the parts.
    let e = cmd(json!({"backup": "database", "dbname": "app", "jobs": 2})).unwrap_err();
    assert!(e.hint.contains("directory"), "{}", e.hint);
    let e = cmd(
        json!({"backup": "database", "dbname": "app", "format": "directory",
                       "jobs": 1_000_000_000_000_i64}),
    )
    .unwrap_err();
    assert!(e.message.contains("out of range"), "{}", e.message);
    let e = cmd(json!({"backup": "database", "dbname": "app", "jobs": 1.5})).unwrap_err();
    assert!(e.message.contains("whole number"), "{}", e.message);
    let e = cmd(json!({"backup": "database", "dbname": "app", "compress": "zstd"})).unwrap_err();
    assert_eq!(e.kind, ErrorKind::FeatureNotSupported);
    let ok = ScheduleCommand::from_value_for_tool(
        &json!({"backup": "database", "dbname": "app", "compress": "zstd"}),
        16,
    );
    assert!(ok.is_ok(), "{ok:?}");
    let e = cmd(json!({"backup": "database", "dbname": "app", "format": "zip"})).unwrap_err();
    assert_eq!(e.hint, "Formats: custom, plain, directory, tar.");
    let e = cmd(json!({"backup": "database", "dbname": "app", "options": {"x": 1}})).unwrap_err();
    assert_eq!(e.message, "unknown option \"x\"");
    let e = cmd(json!({"backup": "database", "dbname": "app", "options": []})).unwrap_err();
    assert!(e.message.starts_with("options must be a JSON object"));
    let e =
        cmd(json!({"backup": "database", "dbname": "app", "label": "x".repeat(201)})).unwrap_err();
    assert_eq!(e.message, "label is 201 characters long");
}

#[test]
fn globals_command() {
    let c = cmd(json!({"backup": "globals", "no_role_passwords": true, "label": "g"})).unwrap();
    assert_eq!(
        c,
        ScheduleCommand::Globals {
            label: Some("g".into()),
            request: GlobalsRequest {
                no_role_passwords: true
            },
        }
    );
    assert_eq!(ScheduleCommand::from_value(&c.to_json()).unwrap(), c);
    let c = cmd(json!({"backup": "globals"})).unwrap();
    assert_eq!(c.label(), None);
    assert_eq!(c.kind(), "globals");
    let e = cmd(json!({"backup": "globals", "format": "plain"})).unwrap_err();
    assert_eq!(
        e.message,
        "unknown key \"format\" in a globals schedule command"
    );
    assert_eq!(
        e.hint,
        "Keys for backup = globals: backup, label, no_role_passwords."
    );
    let e = cmd(json!({"backup": "globals", "no_role_passwords": "yes"})).unwrap_err();
    assert!(e.message.contains("must be a boolean, got string"));
}

#[test]
fn cluster_command() {
    let c = cmd(json!({"backup": "cluster", "format": "directory",
                       "options": {"no_owner": true}}))
    .unwrap();
    let ScheduleCommand::Cluster { request, label } = &c else {
        panic!("{c:?}")
    };
    assert_eq!(request.format, Format::Directory);
    assert!(request.options.no_owner);
    assert_eq!(*label, None);
    assert_eq!(ScheduleCommand::from_value(&c.to_json()).unwrap(), c);
    let e = cmd(json!({"backup": "cluster", "jobs": 2})).unwrap_err();
    assert_eq!(
        e.hint,
        "Keys for backup = cluster: backup, format, label, options."
    );
    let e = cmd(json!({"backup": "cluster", "dbname": "app"})).unwrap_err();
    assert!(e.message.contains("\"dbname\""));
}

#[test]
fn command_shape_errors() {
    let e = cmd(json!([])).unwrap_err();
    assert_eq!(
        e.message,
        "schedule command must be a JSON object, got array"
    );
    let e = cmd(json!({})).unwrap_err();
    assert_eq!(e.message, "schedule command has no \"backup\" key");
    assert_eq!(e.hint, KINDS_HINT);
    let e = cmd(json!({"backup": 1})).unwrap_err();
    assert!(e.message.contains("must be text, got number"));
    let e = cmd(json!({"backup": "Database", "dbname": "app"})).unwrap_err();
    assert_eq!(
        e.message,
        "unknown backup kind \"Database\" in a schedule command"
    );
}

#[test]
fn run_options_are_checked_as_the_api_checks_them() {
    // Accepted by the API, so accepted here.
    let ok = cmd(json!({"backup": "cluster", "options": {
        "timeout": "2 hours", "include_databases": ["a"], "exclude_databases": [],
        "no_owner": true}}));
    assert!(ok.is_ok(), "{ok:?}");
    let ok = cmd(json!({"backup": "database", "dbname": "app", "options": {"timeout": "1 h"}}));
    assert!(ok.is_ok(), "{ok:?}");

    // Refused by backup_database(), so refused here instead of failing every run.
    for key in ["include_databases", "exclude_databases"] {
        let e = cmd(json!({"backup": "database", "dbname": "app", "options": {key: ["a"]}}))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidParameter);
        assert_eq!(
            e.message,
            format!("option \"{key}\" only applies to cluster backups")
        );
    }
    for timeout in [json!(5), json!(null), json!(["1 h"])] {
        for command in [
            json!({"backup": "database", "dbname": "app", "options": {"timeout": timeout}}),
            json!({"backup": "cluster", "options": {"timeout": timeout}}),
        ] {
            let e = cmd(command.clone()).unwrap_err();
            assert!(
                e.message
                    .starts_with("options.timeout must be an interval given as text"),
                "{command}: {}",
                e.message
            );
        }
    }
    for list in [json!("a"), json!([1]), json!([""]), json!(["a\nb"])] {
        let e =
            cmd(json!({"backup": "cluster", "options": {"include_databases": list}})).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidParameter, "{list}");
    }
}
