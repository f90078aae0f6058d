//! Restore request validation and `--use-list` selection.

use super::*;
use crate::error::ErrorKind;
use serde_json::json;

fn v(
    format: Format,
    globals: bool,
    create_db: bool,
    jobs: Option<i32>,
    options: Value,
) -> Result<RestoreRequest, RequestError> {
    RestoreRequest::validate(format, globals, create_db, jobs, &options)
}

#[test]
fn parses_every_option() {
    let r = v(
        Format::Custom,
        false,
        false,
        Some(1),
        json!({
            "tables": ["t"], "schemas": ["s"], "exclude_schemas": ["-x"],
            "data_only": true, "no_owner": true, "no_privileges": true,
            "single_transaction": true, "clean": true, "toc_ids": [9, 3, 9, 1],
        }),
    )
    .unwrap();
    assert_eq!(r.jobs, Some(1));
    let o = &r.options;
    assert_eq!(o.tables, vec!["t"]);
    assert_eq!(o.schemas, vec!["s"]);
    assert_eq!(o.exclude_schemas, vec!["-x"]);
    assert!(o.data_only && o.no_owner && o.no_privileges && o.single_transaction && o.clean);
    assert!(!o.schema_only);
    assert_eq!(o.toc_ids, vec![1, 3, 9]);
    let stored = r.to_json().unwrap();
    assert_eq!(RestoreRequest::from_stored(&stored).unwrap(), r);
    assert_eq!(stored["archive_format"], json!("custom"));
}

#[test]
fn strict_keys_and_types() {
    let e = v(Format::Custom, false, false, None, json!({"table": ["t"]})).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidParameter);
    assert!(e.message.contains("\"table\""), "{}", e.message);
    assert_eq!(e.hint, RESTORE_OPTIONS_HINT);
    for bad in [
        json!({"tables": "t"}),
        json!({"tables": [""]}),
        json!({"tables": [1]}),
        json!({"clean": "yes"}),
        json!({"toc_ids": [0]}),
        json!({"toc_ids": [-3]}),
        json!({"toc_ids": [1.5]}),
        json!({"toc_ids": ["1"]}),
        json!({"toc_ids": 1}),
        json!([]),
        json!({"schema_only": true, "data_only": true}),
    ] {
        let e = v(Format::Custom, false, false, None, bad.clone()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidParameter, "{bad}");
    }
}

#[test]
fn jobs_rules() {
    assert_eq!(
        v(Format::Directory, false, true, Some(64), json!({}))
            .unwrap()
            .jobs,
        Some(64)
    );
    for n in [0, 65, -1] {
        let e = v(Format::Custom, false, false, Some(n), json!({})).unwrap_err();
        assert_eq!(e.hint, "Use a jobs value between 1 and 64.");
    }
    for f in [Format::Plain, Format::Tar] {
        let e = v(f, false, false, Some(2), json!({})).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidParameter);
        assert_eq!(e.hint, PARALLEL_RESTORE_HINT);
    }
    let e = v(Format::Plain, true, false, Some(1), json!({})).unwrap_err();
    assert!(e.message.contains("globals backup"), "{}", e.message);
    let e = v(
        Format::Custom,
        false,
        false,
        Some(4),
        json!({"single_transaction": true}),
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidParameter);
    assert!(e.message.contains("single_transaction"));
}

#[test]
fn clean_only_into_an_existing_database() {
    assert!(v(Format::Tar, false, false, None, json!({"clean": true})).is_ok());
    let e = v(Format::Tar, false, true, None, json!({"clean": true})).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidParameter);
    assert!(e.message.contains("create_db"));
    assert!(!e.hint.is_empty());
}

#[test]
fn plain_and_globals_accept_only_single_transaction() {
    for globals in [false, true] {
        let r = v(
            Format::Plain,
            globals,
            false,
            None,
            json!({"single_transaction": true, "no_owner": false, "tables": []}),
        )
        .unwrap();
        assert!(r.options.single_transaction);
        for opt in [
            json!({"tables": ["t"]}),
            json!({"schemas": ["s"]}),
            json!({"toc_ids": [5]}),
            json!({"no_owner": true}),
            json!({"clean": true}),
        ] {
            let e = v(Format::Plain, globals, false, None, opt.clone()).unwrap_err();
            assert_eq!(e.kind, ErrorKind::FeatureNotSupported, "{opt}");
            assert_eq!(e.hint, PLAIN_RESTORE_HINT);
        }
    }
    // A globals backup is a plain script whatever format is passed.
    let e = v(Format::Custom, true, false, None, json!({"tables": ["t"]})).unwrap_err();
    assert_eq!(e.kind, ErrorKind::FeatureNotSupported);
    let e = v(Format::Plain, true, true, None, json!({})).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidParameter);
    assert!(v(Format::Plain, false, true, None, json!({})).is_ok());
}

const LISTING: &str = ";
; Archive created at 2026-11-24 00:45:02 UTC
;
6; 2615 16385 SCHEMA - My Schema postgres
215; 1259 16386 TABLE My Schema my table ü postgres
216; 1259 16393 TABLE public t postgres
3359; 0 16386 TABLE DATA My Schema my table ü postgres
;3360; 0 16393 TABLE DATA public t postgres
3360; 0 16393 TABLE DATA public t postgres
";

#[test]
fn use_list_keeps_selected_entries() {
    let out = use_list_for(LISTING, &[3360, 215]).unwrap();
    let entries: Vec<&str> = out.lines().filter(|l| !l.starts_with(';')).collect();
    assert_eq!(
        entries,
        vec![
            "215; 1259 16386 TABLE My Schema my table ü postgres",
            "3360; 0 16393 TABLE DATA public t postgres",
        ]
    );
    assert!(out.contains("; Archive created at"));
    assert!(out.ends_with('\n'));
    // The commented-out line does not count as present.
    let e = use_list_for(LISTING, &[6, 7, 21]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidParameter);
    assert!(e.message.contains("7, 21"), "{}", e.message);
    assert_eq!(e.hint, "See backup_ext.backup_contents(backup_id).");
    assert!(use_list_for(LISTING, &[])
        .unwrap()
        .lines()
        .all(|l| l.starts_with(';')));
}

#[test]
fn public_schema_entry_is_left_out() {
    let listing = "\
;
; Archive created at 2026-11-29 15:00:00 UTC
5; 2615 2200 SCHEMA - public postgres
3345; 0 0 COMMENT - SCHEMA public postgres
215; 1259 16385 TABLE public t postgres
6; 2615 16400 SCHEMA - public2 postgres
";
    let list = without_public_schema(listing).unwrap();
    assert_eq!(
        list,
        "\
;
; Archive created at 2026-11-29 15:00:00 UTC
;5; 2615 2200 SCHEMA - public postgres
3345; 0 0 COMMENT - SCHEMA public postgres
215; 1259 16385 TABLE public t postgres
6; 2615 16400 SCHEMA - public2 postgres
"
    );
    // A table called public in schema "-"? pg_dump prints a schema there; a table
    // named SCHEMA is not the schema entry either.
    assert_eq!(
        without_public_schema("215; 1259 16385 TABLE public SCHEMA postgres\n"),
        None
    );
    assert_eq!(
        without_public_schema(";5; 2615 2200 SCHEMA - public postgres\n"),
        None
    );
}

#[test]
fn plain_script_creating_public() {
    let head = "SET client_encoding = 'UTF8';\n\nCREATE SCHEMA public;\n\nALTER SCHEMA public OWNER TO pg_database_owner;\n";
    assert!(script_creates_public_schema(head.as_bytes()).unwrap());
    let later = "CREATE TABLE public.t (a text);\nCOPY public.t (a) FROM stdin;\nCREATE SCHEMA public;\n\\.\n";
    assert!(!script_creates_public_schema(later.as_bytes()).unwrap());
    assert!(!script_creates_public_schema("CREATE SCHEMA sales;\n".as_bytes()).unwrap());
    assert!(!script_creates_public_schema(&[0xff, 0xfe, b'\n'][..]).unwrap());
}

#[test]
fn stored_requests_are_read_back_strictly() {
    let good = v(
        Format::Custom,
        false,
        false,
        Some(2),
        json!({"tables": ["t"]}),
    )
    .unwrap()
    .to_json()
    .unwrap();
    assert!(RestoreRequest::from_stored(&good).is_ok());
    let mut unknown = good.clone();
    unknown["bogus"] = json!(1);
    let mut unknown_option = good.clone();
    unknown_option["options"]["table"] = json!(["x"]);
    let mut empty = good.clone();
    empty["options"]["tables"] = json!([""]);
    let mut nul = good.clone();
    nul["options"]["schemas"] = json!(["a\u{0}b"]);
    let mut bad_id = good.clone();
    bad_id["options"]["toc_ids"] = json!([0]);
    let mut plain = good.clone();
    plain["archive_format"] = json!("plain");
    for (stored, expected) in [
        (unknown, "unknown field `bogus`"),
        (unknown_option, "unknown field `table`"),
        (empty, "empty string"),
        (nul, "NUL"),
        (bad_id, "positive integer"),
        (plain, "cannot be used with a plain backup"),
    ] {
        let e = RestoreRequest::from_stored(&stored)
            .unwrap_err()
            .to_string();
        assert!(e.contains(expected), "{stored}: {e}");
    }
}
