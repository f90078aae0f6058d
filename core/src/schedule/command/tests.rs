use super::*;
use crate::error::ErrorKind;
use crate::format::Format;
use serde_json::json;

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
        DumpTool::by_version(16),
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
        "Keys for backup = globals: backup, label, no_role_passwords, options."
    );
    let c = cmd(json!({"backup": "globals", "options": {"storage": "offsite", "timeout": "1 h"}}));
    assert!(c.is_ok(), "{c:?}");
    let e = cmd(json!({"backup": "globals", "options": {"schemas": ["a"]}})).unwrap_err();
    assert_eq!(
        e.message,
        "option \"schemas\" does not apply to globals backups"
    );
    let e =
        cmd(json!({"backup": "database", "dbname": "a", "options": {"storage": 1}})).unwrap_err();
    assert_eq!(
        e.message,
        "options.storage must be the name of a storage target, got number"
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

#[test]
fn restore_drills_verify_the_latest_backup() {
    let one = cmd(json!({"verify": "latest", "dbname": "app", "test_restore": true})).unwrap();
    assert_eq!(
        one,
        ScheduleCommand::Verify {
            dbname: Some("app".into()),
            test_restore: true
        }
    );
    assert_eq!(one.kind(), "verify");
    assert_eq!(one.label(), None);
    assert_eq!(cmd(one.to_json()).unwrap(), one);
    let all = cmd(json!({"verify": "latest", "dbname": "*"})).unwrap();
    assert_eq!(
        all,
        ScheduleCommand::Verify {
            dbname: None,
            test_restore: false
        }
    );
    assert_eq!(
        all.to_json(),
        json!({"verify": "latest", "dbname": "*", "test_restore": false})
    );

    let refused = [
        (
            json!({"verify": "oldest", "dbname": "app"}),
            "\"verify\" in a schedule command must be \"latest\", got \"oldest\"",
        ),
        (
            json!({"verify": true, "dbname": "app"}),
            "\"verify\" in a schedule command must be \"latest\", got boolean",
        ),
        (
            json!({"verify": "latest"}),
            "a verify schedule command needs \"dbname\" (a database, or \"*\" for every one)",
        ),
        (
            json!({"verify": "latest", "dbname": "app", "test_restore": "yes"}),
            "\"test_restore\" in a verify schedule command must be a boolean, got string",
        ),
        (
            json!({"verify": "latest", "dbname": "app", "format": "custom"}),
            "unknown key \"format\" in a verify schedule command",
        ),
        (
            json!({"verify": "latest", "backup": "database", "dbname": "app"}),
            "a schedule command has either \"backup\" or \"verify\", not both",
        ),
    ];
    for (command, message) in refused {
        let e = cmd(command.clone()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidParameter, "{command}");
        assert_eq!(e.message, message, "{command}");
        assert!(!e.hint.is_empty(), "{command}");
    }
    let e = cmd(json!({"verify": "latest", "dbname": "a\nb"})).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidParameter);
}
